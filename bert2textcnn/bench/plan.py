"""What a benchmark trains: its runs, each run's settings, and whether a finished run is current."""

from __future__ import annotations

import inspect
import itertools
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, is_dataclass
from typing import Any

from bert2textcnn.data.datamodule import TextDataModule
from bert2textcnn.data.options import DataFiles
from bert2textcnn.distill.options import StudentOptions, TeacherTrainingOptions
from bert2textcnn.distill.schemes import SCHEMES
from bert2textcnn.errors import UserError
from bert2textcnn.models import kind_of

DISTILLED = [name for name in SCHEMES if name not in ("student", "teacher")]  # every scheme with a teacher


@dataclass(frozen=True)
class BenchmarkData(DataFiles):
    """As ``fit``'s data options, for every run. Each run trains on the training file (and, when it
    distils, the unlabelled file) and is scored on the test file; nothing is validated, so
    ``val_path`` and ``predict_path`` are refused.

    Args:
        batch_size: Texts per batch.
    """

    batch_size: int = 32

    def __post_init__(self) -> None:
        if self.val_path or self.predict_path:
            raise UserError(
                "benchmark scores every run on --data.test_path and validates none: "
                "drop --data.val_path and --data.predict_path"
            )


@dataclass
class Run:
    """One training run: a row of results.csv."""

    name: str  # the report's row, e.g. "offline" or "offline · 5% + pool (hard)"
    scheme: str
    seed: int
    data: dict[str, Any] = field(default_factory=dict)  # data-module options beyond the shared ones
    hparams: dict[str, Any] = field(default_factory=dict)
    teacher_run: str | None = None  # key of the run whose fine-tuned teacher is distilled, frozen
    plain_run: str | None = None  # key of the plain student this run is compared with
    epochs: int = 2
    # Keys of the old (production) models this run is compared with and `multi_teacher` learns
    # from; empty: the plain student alone.
    old_runs: list[str] = field(default_factory=list)

    @property
    def key(self) -> str:
        return "".join(c if c.isalnum() else "_" for c in self.name) + f"-seed{self.seed}"

    @property
    def label_fraction(self) -> float:
        return self.data.get("label_fraction", 1.0)


def settings(run: Run) -> dict[str, Any]:
    """Every constructor default of the run's scheme and data module, with the run's own options
    over them: kept in its record, so a run trained under defaults that have changed since is
    trained again rather than reported as if it were current. A run that does not distil takes no
    distillation option (``DistillOptions``), so a new KD default does not fine-tune the teacher again."""
    scheme = SCHEMES[run.scheme]
    model = defaults(scheme) | run.hparams
    if "student" in model and model["student_lr"] is None:  # the kind's own rate: what the run trains with
        model["student_lr"] = kind_of(model["student"]).default_lr
    resolved = {"model": model, "data": defaults(TextDataModule) | run.data}
    return json.loads(json.dumps(resolved, default=str))  # as a record read back from disk


def old_models_of(run: Run) -> list[str]:
    """Keys of the old models ``run`` is compared with: its ``old_runs``, else its plain student."""
    return run.old_runs or ([run.plain_run] if run.plain_run else [])


def same_run(recorded: dict[str, Any], run: Run) -> bool:
    """Whether a record was written for ``run``; a field ``Run`` gained since counts at its default."""
    return {**asdict(Run(run.name, run.scheme, run.seed)), **recorded} == asdict(run)


def same_settings(recorded: dict[str, Any] | None, current: dict[str, Any]) -> bool:
    """Whether a finished run was trained under today's settings, compared on the options both
    name. A record from before settings were kept counts as current, and so does one that lacks
    an option added since (a new option's default keeps the old behaviour, so a teacher is not
    fine-tuned again for an unrelated option) or names one ``settings`` now leaves out."""
    if recorded is None:
        return True
    return all(
        current[group][k] == recorded[group][k]
        for group in current
        for k in current[group].keys() & recorded.get(group, {}).keys()
    )


def defaults(cls: type) -> dict[str, Any]:
    """Keyword defaults of ``cls.__init__``: its own parameters and its option groups' fields."""
    parameters = inspect.signature(cls.__init__).parameters.items()
    return {name: parameter.default for name, parameter in parameters if parameter.default is not parameter.empty}


def trains_bert_beside_student(scheme: str) -> bool:
    groups = SCHEMES[scheme].option_groups
    return StudentOptions in groups and TeacherTrainingOptions in groups


def seed_list(seeds: int | Sequence[int]) -> list[int]:
    """``N``: seeds 0 … N−1; a list: those seeds alone, e.g. a sitting that adds seeds 3 and 4 to an
    earlier sitting's 0–2 (``--earlier_results``)."""
    chosen = list(range(seeds)) if isinstance(seeds, int) else list(seeds)
    if not chosen or min(chosen) < 0 or len(set(chosen)) < len(chosen):
        raise UserError(f"--seeds {seeds!r}: give a count (3) or a list of distinct seeds from 0 ([3, 4])")
    return chosen


def first_seed_runs(runs: Sequence[Run]) -> dict[str, Run]:
    """Each run name's run of its first seed: the one a report times and draws (the other seeds are
    the same network with other weights)."""
    return {run.name: run for run in reversed(runs)}


def plan(
    schemes: Sequence[str],
    seeds: int | Sequence[int],
    epochs: int,
    label_fraction: float | None = None,
    low_label_epochs: int = 10,
    low_label_teacher_lr: float = 1e-4,
    historical_weight: float = 0.3,
    model: dict[str, Any] | list[dict[str, Any]] | None = None,
    teacher_length_grouping: int = 4,
    distilled_data: dict[str, Any] | None = None,
    teacher_epochs: int | None = None,
    teacher_model: dict[str, Any] | None = None,
    rco_anchors: int = 3,
    old_models: list[dict[str, Any]] | None = None,
) -> list[Run]:
    """Every run, each after the runs it builds on. ``model`` overrides the distilled runs'
    hyper-parameters (a list: one set of runs per entry) and ``distilled_data`` their data-module
    options (e.g. an augmented transfer set); both show in the runs' names, so variants share a
    folder and a report with the teacher and the plain students they are compared with.
    ``old_models`` are the production models of each seed (``old_model_runs``).

    The schemes that train a BERT beside the student take most of the time: they come last,
    seed by seed, so an interrupted benchmark already holds every other row for every seed."""
    data_overrides = dict(distilled_data or {})
    variants = [
        (dict(overrides), variant_name(overrides | data_overrides))
        for overrides in (model if isinstance(model, list) else [model or {}])
    ]
    if unknown := sorted(set(schemes) - set(DISTILLED)):
        raise UserError(f"--schemes: unknown {unknown}; choose from {DISTILLED}, or all")
    taken = {option for scheme in schemes for option in defaults(SCHEMES[scheme])}
    if unknown := sorted({option for overrides, _ in variants for option in overrides} - taken):
        raise UserError(f"--model: no scheme of {list(schemes)} takes {unknown}")
    teacher_data = {"length_grouping": teacher_length_grouping}
    routed = [scheme for scheme in schemes if "teacher_route" in defaults(SCHEMES[scheme])]
    anchors = {"save_anchors": rco_anchors} if routed else {}  # the teachers keep the route rco follows
    teacher_options = dict(teacher_model or {}) | anchors
    seed_numbers = seed_list(seeds)
    teacher = Run("teacher", "teacher", 0, teacher_data, teacher_options, epochs=teacher_epochs or epochs)
    runs = [teacher]
    for seed in seed_numbers:
        plain = Run("student", "student", seed, epochs=epochs)
        old = old_model_runs(old_models or [{}], plain)
        runs += [plain, *(run for run in old if run is not plain)]
        old_runs = [] if old == [plain] else [run.key for run in old]  # [] keeps the records of before
        for scheme in schemes:
            takes = defaults(SCHEMES[scheme]).keys()
            # The old models share the historical weight: BERT keeps 1 - historical_weight, however many.
            shares = [historical_weight / len(old)] * len(old)
            hparams = {"historical_weights": shares} if "historical_weights" in takes else {}
            teacher_run = teacher.key if {"teacher_checkpoint", "teacher_route"} & takes else None
            shared = {"teacher_run": teacher_run, "plain_run": plain.key, "epochs": epochs, "old_runs": old_runs}
            scheme_data = {name: as_plain(value) for name, value in SCHEMES[scheme].data_defaults.items()}
            runs += [
                Run(scheme + variant, scheme, seed, scheme_data | data_overrides, hparams | overrides, **shared)
                for overrides, variant in variants
                if runs_variant(scheme, overrides)
            ]
    if label_fraction is not None:
        share = f"{label_fraction:.0%}"
        for seed in seed_numbers:
            low = {"label_fraction": label_fraction, "sample_seed": seed}
            low_teacher = Run(
                f"teacher · {share}",
                "teacher",
                seed,
                low | teacher_data,
                {"teacher_lr": low_label_teacher_lr} | anchors,
                epochs=low_label_epochs,
            )
            low_plain = Run(f"student · {share}", "student", seed, low, epochs=low_label_epochs)
            runs += [low_teacher, low_plain]
            for scheme, (overrides, variant), target in itertools.product(
                ("offline", *routed), variants, ("soft", "hard")
            ):
                if runs_variant(scheme, overrides):
                    name = f"{scheme} · {share} + pool" + (" (hard)" if target == "hard" else "") + variant
                    hparams = {"unlabeled_target": target} | overrides
                    runs.append(Run(name, scheme, seed, low, hparams, low_teacher.key, low_plain.key, low_label_epochs))
    return sorted(runs, key=lambda run: trains_bert_beside_student(run.scheme))


def as_plain(value: Any) -> Any:
    """A data option as a run records it: an options dataclass as its dict."""
    return asdict(value) if is_dataclass(value) and not isinstance(value, type) else value


def chooses_on_validation(run: Run) -> bool:
    """Whether the run picks among KD settings on validation rows (a joint scheme's tail)."""
    model = settings(run)["model"]
    return model.get("tail_epochs", 0) > 0 and len(model.get("tail_kd", ())) > 1


def old_model_runs(recipes: list[dict[str, Any]], plain: Run) -> list[Run]:
    """The old (production) models of ``plain``'s seed, one per recipe: ``{}`` is the plain student
    itself; ``{data: {tokenizer: jieba}}`` or ``{model: {student: bert, student_layers: 1}}`` a
    plain student trained with those ``--data.*`` / ``--model.*`` options, named by them."""
    old = []
    for recipe in recipes:
        if unknown := sorted(set(recipe) - {"data", "model"}):
            raise UserError(f"--old_models: {unknown} in {recipe}; an old model takes `data` and `model` options")
        if not recipe.get("data") and not recipe.get("model"):
            old.append(plain)
            continue
        data, hparams = dict(recipe.get("data") or {}), dict(recipe.get("model") or {})
        if unknown := sorted(hparams.keys() - defaults(SCHEMES["student"]).keys()):
            raise UserError(f"--old_models: the plain student takes no {unknown}")
        name = "old" + variant_name(data | hparams)
        old.append(Run(name, "student", plain.seed, data, hparams, plain_run=plain.key, epochs=plain.epochs))
    return old


def runs_variant(scheme: str, overrides: dict[str, Any]) -> bool:
    """A variant runs for the schemes that take all its options; one naming a student kind, not for
    those whose kind is fixed (``theseus`` trains a BERT, ``fastbert`` its own model)."""
    groups = SCHEMES[scheme].option_groups
    fixed_kind = StudentOptions not in groups
    return overrides.keys() <= defaults(SCHEMES[scheme]).keys() and not ("student" in overrides and fixed_kind)


def variant_name(options: dict[str, Any]) -> str:
    """The suffix that tells a variant's runs apart, e.g. `` (alpha=0.9, temperature=4.0)``."""
    return " (" + ", ".join(f"{k}={v}" for k, v in options.items()) + ")" if options else ""
