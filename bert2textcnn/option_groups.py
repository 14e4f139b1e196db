"""Options declared once, in typed groups that classes compose.

LightningCLI turns a class's ``__init__`` parameters into its options (``--model.alpha``). A
group is a frozen dataclass whose docstring documents its fields; ``@takes(GroupA, GroupB)`` lets
a class's ``__init__`` accept every field of those groups as a flat keyword parameter, with its
type, default and help, and hands it the values as group instances (``options[GroupA].field``).
So each scheme's ``--help`` lists only the groups it takes, a default is written in one place,
and a group's ``__post_init__`` checks its values once for every class that takes it.
"""

from __future__ import annotations

import dataclasses
import inspect
import typing
from collections.abc import Callable
from typing import Any, TypeVar

import docstring_parser

from bert2textcnn.errors import UserError

T = TypeVar("T")
_VARIADIC = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
C = TypeVar("C", bound=type)


class Options:
    """The values of a class's option groups, looked up by group (or a base of it)."""

    def __init__(self, groups: list[Any]) -> None:
        self.groups = groups

    def __getitem__(self, group: type[T]) -> T:
        for values in self.groups:
            if isinstance(values, group):
                return values
        raise KeyError(f"{group.__name__} is not one of this class's option groups")

    def __contains__(self, group: type) -> bool:
        return any(isinstance(values, group) for values in self.groups)

    def as_dict(self, saved_only: bool = False) -> dict[str, Any]:
        """Every option by name; ``saved_only`` leaves out groups marked ``hyperparameters = False``."""
        return {
            field.name: getattr(values, field.name)
            for values in self.groups
            if not saved_only or getattr(values, "hyperparameters", True)
            for field in dataclasses.fields(values)
        }


def takes(*groups: type) -> Callable[[C], C]:
    """Class decorator: ``__init__(self, …, options: Options)`` also accepts the groups' fields."""

    def decorate(cls: C) -> C:
        init = inspect.unwrap(cls.__init__)  # the class's own constructor, or the one it inherits
        hints = typing.get_type_hints(init)  # the annotations as types, not strings
        own = [
            p.replace(annotation=hints.get(p.name, p.annotation))
            for p in inspect.signature(init).parameters.values()
            if p.name != "options" and p.kind not in _VARIADIC
        ]
        explicit = {p.name for p in own}
        names = [field.name for group in groups for field in dataclasses.fields(group)]
        if len(set(names)) != len(names):
            raise TypeError(f"{cls.__name__}: two option groups declare the same field")

        def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
            values = [group(**{f.name: kwargs.pop(f.name) for f in dataclasses.fields(group) if f.name in kwargs})
                      for group in groups]  # fmt: skip
            unknown = sorted(set(kwargs) - explicit)
            if unknown:
                raise UserError(
                    f"{cls.__name__} has no option {', '.join(unknown)}; its options: {', '.join(sorted(names))}"
                )
            init(self, *args, options=Options(values), **kwargs)

        __init__.__wrapped__ = init  # type: ignore[attr-defined]
        __init__.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
            [*own, *(_parameter(group, field) for group in groups for field in dataclasses.fields(group))]
        )
        __init__.__doc__ = _merged_doc(init, groups)
        cls.__init__ = __init__
        cls.option_groups = groups
        return cls

    return decorate


def _default(field: dataclasses.Field) -> Any:
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return inspect.Parameter.empty if field.default is dataclasses.MISSING else field.default


def _parameter(group: type, field: dataclasses.Field) -> inspect.Parameter:
    annotation = typing.get_type_hints(group)[field.name]
    return inspect.Parameter(field.name, inspect.Parameter.KEYWORD_ONLY, default=_default(field), annotation=annotation)


def _merged_doc(init: Callable, groups: tuple[type, ...]) -> str:
    """One Google-style docstring: the constructor's summary and arguments, then each group's (a
    group that subclasses another inherits the descriptions it does not restate)."""
    docs = {}
    summary = ""
    for source in (init, *(base for group in groups for base in reversed(group.__mro__[:-1]))):
        parsed = docstring_parser.parse(source.__doc__ or "")
        summary = summary or parsed.short_description or ""
        docs.update({param.arg_name: " ".join((param.description or "").split()) for param in parsed.params})
    lines = [f"    {name}: {text}" for name, text in docs.items()]
    return f"{summary}\n\nArgs:\n" + "\n".join(lines) + "\n"
