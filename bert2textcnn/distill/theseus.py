"""BERT-of-Theseus (Xu et al. 2020; ``001``): module replacement between a frozen, fine-tuned BERT
(the predecessor) and a smaller one (the successor).

The predecessor's n layers form m modules of n/m consecutive layers; successor layer i stands in
for module i. During the replacement stage each module's output is mixed with its successor
layer's, fed the same input:

    bernoulli:     ε_i ~ Bernoulli(p) per module and step;  out_i = ε_i·S_i(x) + (1 − ε_i)·P_i(x)
    proportional:  out_i = k·P_i(x) + (1 − k)·S_i(x)        (``003``: stable where ε is not)

The predecessor runs its own forward (embeddings, pooler, classifier included); forward hooks on
each module's first and last layer capture the module's input and swap its output, so the
successor layer is called exactly as the predecessor's layers are, whatever the transformers
version's calling convention.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from bert2textcnn.distill.options import StudentOptions
from bert2textcnn.errors import UserError
from bert2textcnn.models.bert import layer_hidden


@dataclass(frozen=True)
class SuccessorOptions(StudentOptions):
    """BERT-of-Theseus's successor: a small BERT whose layers start from the fine-tuned teacher's.

    Args:
        student: Always ``bert`` here (the TextCNN sizes are unused).
        student_layers: Successor layers m; each stands in for a module of n/m consecutive teacher
            layers, so m must divide the teacher's n (m3e-small: 4, so 1, 2 or 4).
        student_init: Which of the fine-tuned teacher's layers the successor's start as: ``first``
            (BERT-of-Theseus), ``every_kth`` or ``random``. Its embeddings, pooler and classifier
            are the teacher's.
    """

    student: str = "bert"

    def __post_init__(self) -> None:
        if self.student != "bert":
            raise UserError(
                f"theseus compresses a BERT into a smaller BERT: --model.student must be bert, not {self.student}"
            )


@dataclass(frozen=True)
class TheseusOptions:
    """Module replacement (BERT-of-Theseus, ``001``) and its proportional variant (``003``).

    Args:
        replacement: ``bernoulli``: each step, each module's output is its successor layer's with
            probability p, else the teacher's; ``proportional``: every module's output is
            k·teacher + (1 − k)·successor.
        replace_rate: p, the replacement probability (``bernoulli``); with ``replace_slope``, its
            value at the first batch.
        replace_slope: Per-batch growth of p, the linear curriculum p = min(1, slope·t + rate); 0
            keeps p constant.
        proportion: k, the teacher's share of each module's output (``proportional``).
        anneal_proportion: Lower k linearly to 0 over the replacement stage.
        replace_epochs: Epochs of the replacement stage (only the successor layers train); the
            rest fine-tune the successor alone, embeddings and classifier included.
    """

    replacement: Literal["bernoulli", "proportional"] = "bernoulli"
    replace_rate: float = 0.5
    replace_slope: float = 0.0
    proportion: float = 0.5
    anneal_proportion: bool = False
    replace_epochs: int = 1

    def __post_init__(self) -> None:
        if not (0 <= self.replace_rate <= 1 and 0 <= self.proportion <= 1):
            raise UserError("--model.replace_rate and --model.proportion must lie in [0, 1]")
        if self.replace_epochs < 0 or self.replace_slope < 0:
            raise UserError("--model.replace_epochs and --model.replace_slope must not be negative")


def successor_shares(options: TheseusOptions, batches_done: int, stage_batches: int, modules: int) -> torch.Tensor:
    """Each module's successor share for this step: 1 = the successor's output alone, 0 = the
    predecessor's; Bernoulli draws use the global generator (seeded per epoch)."""
    if options.replacement == "proportional":
        k = options.proportion
        if options.anneal_proportion:
            k *= max(0.0, 1 - batches_done / max(1, stage_batches))
        return torch.full((modules,), 1 - k)
    p = replace_probability(options, batches_done)
    return (torch.rand(modules) < p).float()


def replace_probability(options: TheseusOptions, batches_done: int) -> float:
    """p = min(1, slope·t + rate): constant when the slope is 0."""
    return min(1.0, options.replace_slope * batches_done + options.replace_rate)


@contextmanager
def replaced_modules(
    predecessor_layers: Sequence[nn.Module], successor_layers: Sequence[nn.Module], shares: torch.Tensor
) -> Iterator[None]:
    """Within the block, the predecessor's forward mixes module i's output with successor layer i's:
    ``shares[i]``·S_i(x) + (1 − ``shares[i]``)·P_i(x). A share of 0 leaves the successor unrun."""
    size = module_size(len(predecessor_layers), len(successor_layers))
    handles = []
    for i, successor in enumerate(successor_layers):
        first, last = predecessor_layers[i * size], predecessor_layers[(i + 1) * size - 1]
        share = float(shares[i])
        seen: dict[str, Any] = {}

        def keep_input(module: nn.Module, args: tuple, kwargs: dict, seen: dict = seen) -> None:
            seen["args"], seen["kwargs"] = args, kwargs

        def mix_output(
            module: nn.Module, args: tuple, kwargs: dict, output: Any, seen: dict = seen, share: float = share,
            successor: nn.Module = successor,
        ) -> Any:  # fmt: skip
            if share == 0:
                return output
            replaced = layer_hidden(successor(*seen["args"], **seen["kwargs"]))
            mixed = replaced if share == 1 else share * replaced + (1 - share) * layer_hidden(output)
            return (mixed, *output[1:]) if isinstance(output, tuple) else mixed

        handles.append(first.register_forward_pre_hook(keep_input, with_kwargs=True))
        handles.append(last.register_forward_hook(mix_output, with_kwargs=True))
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def module_size(predecessor_layers: int, successor_layers: int) -> int:
    """Predecessor layers per module: m successor layers must divide the predecessor's n."""
    if successor_layers < 1 or predecessor_layers % successor_layers:
        raise UserError(
            f"--model.student_layers must divide the teacher's {predecessor_layers} layers (each successor "
            f"layer replaces a module of n/m of them), got {successor_layers}"
        )
    return predecessor_layers // successor_layers
