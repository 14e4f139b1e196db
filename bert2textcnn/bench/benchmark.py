"""Compare the schemes on one data set — every scheme × seed, scored on the test file — into a
report folder. Finished runs are skipped on a second call, so an interrupted benchmark resumes.

    python -m bert2textcnn benchmark --data.train_path train.csv --data.test_path dev.csv \\
        --schemes all --seeds 3 --output reports/sms_spam_zh [--label_fraction 0.05]

The teacher is fine-tuned once, with length-grouped batches (faster, and harmless to BERT here),
and reused by every seed: `offline` reads it through its logits cache, `multi_teacher` holds it
frozen beside its historical model. Each seed trains the plain `student`: the baseline, and the
"production" model that `multi_teacher` learns from and every student is compared with
(coverage, negative flip rate).
Every run trains for the same epochs (the full-label teacher may take fewer: ``--teacher_epochs``,
for data sets where one BERT epoch costs the better part of an hour) and is scored after its last
one — no checkpoint selection, so the test file is read once, after training.
``--label_fraction`` adds a low-label scenario: a teacher and a plain student on that stratified
share of the labels, and `offline` students that also learn the rest of the training file as
unlabelled text (soft targets; hard pseudo-labels).

The folder gets ``results.csv`` (a row per run), ``report.md`` (mean ± std per run name, and the
share of the plain → teacher gap each closes), ``macro_f1.png``, ``pr_curves.png``, ``speed.png``
and ``runs/`` (each run's metrics, test-set probabilities and checkpoint).
"""

from __future__ import annotations

import csv
import inspect
import io
import itertools
import json
import statistics
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import torch

from bert2textcnn.bench.figures import draw_all
from bert2textcnn.checkpoint import AtomicCheckpointIO, project_record
from bert2textcnn.data.augment import Augmentation
from bert2textcnn.data.datamodule import TextDataModule, demo_path
from bert2textcnn.data.records import Record, read_records
from bert2textcnn.distill.metrics import ClassificationMetrics, CompatibilityMetrics
from bert2textcnn.distill.schemes import SCHEMES
from bert2textcnn.distill.schemes.base import DistillationModule
from bert2textcnn.errors import UserError
from bert2textcnn.files import atomic_write_text
from bert2textcnn.inference.predictor import StudentPredictor
from bert2textcnn.models import STUDENT_KINDS
from bert2textcnn.models.protocol import logits_in_order
from bert2textcnn.seeding import EpochSeeding

DISTILLED = [name for name, scheme in SCHEMES.items() if scheme.distils]  # every scheme with a teacher
# Two halves of the test file: choose among variants on one, quote the chosen one's score on the
# other, which no choice has seen (the Selection table of the report).
HALVES = {"odd_rows": slice(1, None, 2), "even_rows": slice(0, None, 2)}
# Options that shape only what a student learns from a teacher: a teacher or a plain student
# trained under other values of them is the same run.
SPEED_TEXTS = 512  # test texts each row's model is timed on
KD_OPTIONS = ("alpha", "temperature", "unlabeled_target", "pseudo_label_threshold", "trust_labels", "kd_warmup",
              "teacher_gate")  # fmt: skip


@dataclass
class BenchmarkData:
    """Data options every run shares (as ``--data.*`` in ``fit``)."""

    train_path: str | None = None  # default: the bundled demo corpus
    test_path: str | None = None  # default: the bundled demo corpus
    text_column: str = "text"
    label_column: str = "label"
    tokenizer: str = "char"
    max_length: int = 128
    batch_size: int = 32


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

    @property
    def key(self) -> str:
        return "".join(c if c.isalnum() else "_" for c in self.name) + f"-seed{self.seed}"

    @property
    def label_fraction(self) -> float:
        return self.data.get("label_fraction", 1.0)


def settings(run: Run) -> dict[str, Any]:
    """Every constructor default of the run's scheme and data module, with the run's own options
    over them: kept in its record, so a run trained under defaults that have changed since is
    trained again rather than reported as if it were current. A run that does not distil leaves
    out ``KD_OPTIONS``, so a new KD default does not fine-tune the teacher again."""
    scheme = SCHEMES[run.scheme]
    model = defaults(scheme) | run.hparams
    if model.get("student_lr") is None:  # the kind's own rate: what the run trains with
        model["student_lr"] = STUDENT_KINDS[model["student"]].default_lr
    if not scheme.distils:
        model = {k: v for k, v in model.items() if k not in KD_OPTIONS}
    resolved = {"model": model, "data": defaults(TextDataModule) | run.data}
    return json.loads(json.dumps(resolved, default=str))  # as a record read back from disk


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
    """Keyword defaults of ``cls.__init__`` and of every base's, the subclass's winning."""
    found: dict[str, Any] = {}
    for klass in reversed(cls.__mro__):
        if "__init__" in vars(klass):
            for name, parameter in inspect.signature(klass.__init__).parameters.items():
                if parameter.default is not inspect.Parameter.empty:
                    found[name] = parameter.default
    return found


def plan(
    schemes: Sequence[str],
    seeds: int,
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
) -> list[Run]:
    """Every run, each after the runs it builds on. ``model`` overrides the distilled runs'
    hyper-parameters (a list: one set of runs per entry) and ``distilled_data`` their data-module
    options (e.g. an augmented transfer set); both show in the runs' names, so variants share a
    folder and a report with the teacher and the plain students they are compared with.

    The schemes that train a BERT beside the student take most of the time: they come last,
    seed by seed, so an interrupted benchmark already holds every other row for every seed."""
    data_overrides = dict(distilled_data or {})
    variants = [
        (dict(overrides), variant_name(overrides | data_overrides))
        for overrides in (model if isinstance(model, list) else [model or {}])
    ]
    if unknown := sorted(set(schemes) - set(DISTILLED)):
        raise UserError(f"--schemes: unknown {unknown}; choose from {DISTILLED}, or all")
    teacher_data = {"length_grouping": teacher_length_grouping}
    teacher = Run("teacher", "teacher", 0, teacher_data, dict(teacher_model or {}), epochs=teacher_epochs or epochs)
    runs = [teacher]
    for seed in range(seeds):
        plain = Run("student", "student", seed, epochs=epochs)
        runs.append(plain)
        for scheme in schemes:
            takes_historical = "historical_weights" in defaults(SCHEMES[scheme])
            hparams = {"historical_weights": [historical_weight]} if takes_historical else {}
            teacher_run = teacher.key if "teacher_checkpoint" in defaults(SCHEMES[scheme]) else None
            runs += [
                Run(scheme + variant, scheme, seed, data_overrides, hparams | overrides, teacher_run, plain.key, epochs)
                for overrides, variant in variants
            ]
    if label_fraction is not None:
        share = f"{label_fraction:.0%}"
        for seed in range(seeds):
            low = {"label_fraction": label_fraction, "sample_seed": seed}
            low_teacher = Run(
                f"teacher · {share}",
                "teacher",
                seed,
                low | teacher_data,
                {"teacher_lr": low_label_teacher_lr},
                epochs=low_label_epochs,
            )
            low_plain = Run(f"student · {share}", "student", seed, low, epochs=low_label_epochs)
            runs += [low_teacher, low_plain]
            for (overrides, variant), target in itertools.product(variants, ("soft", "hard")):
                name = f"offline · {share} + pool" + (" (hard)" if target == "hard" else "") + variant
                hparams = {"unlabeled_target": target} | overrides
                runs.append(Run(name, "offline", seed, low, hparams, low_teacher.key, low_plain.key, low_label_epochs))
    return sorted(runs, key=lambda run: SCHEMES[run.scheme].has_teacher and SCHEMES[run.scheme].has_student)


def variant_name(options: dict[str, Any]) -> str:
    """The suffix that tells a variant's runs apart, e.g. `` (alpha=0.9, temperature=4.0)``."""
    return " (" + ", ".join(f"{k}={v}" for k, v in options.items()) + ")" if options else ""


def train(run: Run, data: BenchmarkData, teacher: str | None, folder: Path, done: dict) -> dict[str, Any]:
    """Fit one run, save its checkpoint, and keep its models' probabilities on the test file.

    As ``fit`` trains (the same scheme and data module classes, epoch seeding, atomic checkpoint
    writes), with two differences on purpose: nothing is validated, because the test file must not
    choose a checkpoint, so the last epoch's weights are scored; and there is no TensorBoard log."""
    L.seed_everything(run.seed, verbose=False)
    scheme = SCHEMES[run.scheme]
    shared = {k: v for k, v in asdict(data).items() if k != "test_path"}
    # The test file doubles as a validation file that is never evaluated (limit_val_batches=0).
    options = dict(run.data)
    if isinstance(options.get("augment"), dict):
        options["augment"] = Augmentation(**options["augment"])
    datamodule = TextDataModule(**shared, val_path=data.test_path, learn_from_unlabeled=scheme.distils, **options)
    hparams = {"teacher": teacher, **run.hparams}
    declared = defaults(scheme)  # what the scheme takes decides what it is given
    if run.teacher_run:  # the benchmark's fine-tuned teacher, frozen
        hparams["teacher_checkpoint"] = done[run.teacher_run]["checkpoint"]
    if "cache_dir" in declared:
        hparams["cache_dir"] = str(folder / "cache")
    if "historical" in declared:  # the plain student of the same seed plays the production model
        hparams["historical"] = [done[run.plain_run]["checkpoint"]]
    model = scheme(labels=datamodule.labels, vocab=datamodule.vocab, max_length=datamodule.max_length, **hparams)
    trainer = L.Trainer(
        max_epochs=run.epochs,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        default_root_dir=folder / "lightning",
        callbacks=[EpochSeeding()],
        plugins=[AtomicCheckpointIO()],
    )
    start = time.perf_counter()
    trainer.fit(model, datamodule=datamodule)
    seconds = time.perf_counter() - start
    checkpoint = folder / "runs" / f"{run.key}.ckpt"
    trainer.save_checkpoint(checkpoint)  # atomic, through the plugin
    texts = [r.text for r in read_records(data.test_path, data.text_column, data.label_column)]
    return {
        "run": asdict(run),
        "settings": settings(run),
        "checkpoint": str(checkpoint),
        "train_seconds": seconds,
        "epochs": trainer.current_epoch,
        "probabilities": probabilities_on(model, texts),
    }


@torch.inference_mode()
def probabilities_on(model: DistillationModule, texts: list[str], batch_size: int = 64) -> dict[str, list]:
    """Each trained model's class probabilities on the test texts, in file order."""
    probabilities: dict[str, list] = {}
    if model.student is not None:
        probabilities["student"] = StudentPredictor(model.student, model.labels).probabilities(texts).tolist()
    if model.teacher is not None:
        teacher_logits = logits_in_order(model.teacher.eval(), texts, len(model.labels), batch_size)
        probabilities["teacher"] = teacher_logits.softmax(-1).tolist()
    return probabilities


def score(record: dict[str, Any], labels: list[str], targets: torch.Tensor, positive: int, done: dict) -> dict:
    """One row of results.csv: the run's own model (the student; the teacher of a teacher run)
    in full, the teacher's macro-F1 beside it, and against the plain student of the same seed:
    coverage, NFR and the macro-F1 difference."""
    run = Run(**record["run"])
    row: dict[str, Any] = {
        "name": run.name,
        "scheme": run.scheme,
        "seed": run.seed,
        "label_fraction": run.label_fraction,
    }
    for role, probs in record["probabilities"].items():
        values = classification_scores(probs, labels, targets)
        if role == main_role(record):
            row |= values
        else:
            row[f"{role}_macro_f1"] = values["macro_f1"]
    if run.plain_run:
        plain = done[run.plain_run]["probabilities"]["student"]
        compatibility = CompatibilityMetrics(positive)
        compatibility.update(torch.tensor(record["probabilities"]["student"]).log(), torch.tensor(plain).log(), targets)
        row |= {k: v.item() for k, v in compatibility.compute().items()}
        row["macro_f1_minus_plain"] = row["macro_f1"] - classification_scores(plain, labels, targets)["macro_f1"]
        for half, rows in HALVES.items():
            row[f"macro_f1_minus_plain_{half}"] = (
                classification_scores(record["probabilities"]["student"][rows], labels, targets[rows])["macro_f1"]
                - classification_scores(plain[rows], labels, targets[rows])["macro_f1"]
            )
    seconds, epochs = record["train_seconds"], record["epochs"]
    return row | {"train_seconds": seconds, "epochs": epochs, "seconds_per_epoch": seconds / max(1, epochs)}


def classification_scores(probabilities: list, labels: list[str], targets: torch.Tensor) -> dict[str, float]:
    metrics = ClassificationMetrics(labels)
    metrics.update(torch.tensor(probabilities).log(), targets)
    return metrics.scalars(metrics.compute(), "")


def main_role(record: dict[str, Any]) -> str:
    return "student" if "student" in record["probabilities"] else "teacher"


def run_all(
    data: BenchmarkData,
    output: str,
    runs: list[Run],
    teacher: str | None,
    speed: bool,
    threads: int,
    train_missing: bool = True,
) -> Path:
    """Train every run not finished earlier (or, without ``train_missing``, leave it out), then
    write the report folder."""
    if data.train_path is None and data.test_path is None:
        data.train_path, data.test_path = demo_path("train"), demo_path("test")
    if not data.train_path or not data.test_path:
        raise UserError("benchmark needs --data.train_path and --data.test_path (or neither: the demo corpus)")
    test = read_records(data.test_path, data.text_column, data.label_column)  # a bad file stops us before training
    folder = Path(output)
    done: dict[str, dict[str, Any]] = {}
    trained_now: set[str] = set()
    for number, run in enumerate(runs, start=1):
        path = folder / "runs" / f"{run.key}.json"
        where = f"[{number}/{len(runs)}] {run.name} · seed {run.seed}"
        if path.is_file():
            record = json.loads(path.read_text(encoding="utf-8"))
            retrained_inputs = sorted({run.teacher_run, run.plain_run} & trained_now)
            if record["run"] != asdict(run) or not same_settings(record.get("settings"), settings(run)):
                print(f"{where}: trained earlier with other settings, training again", flush=True)
            elif retrained_inputs:
                print(f"{where}: {', '.join(retrained_inputs)} trained again since, training again", flush=True)
            elif Path(record["checkpoint"]).is_file():
                done[run.key] = record
                print(f"{where}: finished earlier, skipped", flush=True)
                continue
        if not train_missing:
            print(f"{where}: not trained, left out of the report", flush=True)
            continue
        print(f"{where}: training …", flush=True)
        done[run.key] = train(run, data, teacher, folder, done)
        trained_now.add(run.key)
        atomic_write_text(path, json.dumps(done[run.key]))
        print(f"{where}: done in {done[run.key]['train_seconds']:.0f} s", flush=True)
    finished = [run for run in runs if run.key in done]
    if runs[0] not in finished:
        raise UserError(f"{folder}: the {runs[0].name} run has not finished; there is nothing to report yet")
    write_report(folder, finished, done, test, speed, threads, teacher)
    return folder


def write_report(
    folder: Path, runs: list[Run], done: dict, test: list[Record], speed: bool, threads: int, teacher: str | None
) -> None:
    labels = list(project_record(done[runs[0].key]["checkpoint"])["labels"])
    targets = torch.tensor([labels.index(r.label) for r in test])
    positive = labels.index("spam") if "spam" in labels else len(labels) - 1
    rows = [score(done[run.key], labels, targets, positive, done) for run in runs]
    if speed:
        timed = timed_runs(runs, done, [r.text for r in test][:SPEED_TEXTS], threads)
        rows = [row | {"texts_per_s": timed[row["name"], row["seed"]]} if (row["name"], row["seed"]) in timed else row
                for row in rows]  # fmt: skip
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, list(dict.fromkeys(key for row in rows for key in row)))
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(folder / "results.csv", buffer.getvalue())
    best = best_distilled(rows)
    speed_figures = None
    if speed:
        from bert2textcnn.bench.speed import measure  # needs the `export` extra (ONNX Runtime)

        checkpoint = done[next(r.key for r in runs if r.name == (best or "student") and r.seed == 0)]["checkpoint"]
        speed_figures = measure(checkpoint, [r.text for r in test], threads, min_seconds=1.0, teacher_dir=teacher)
        atomic_write_text(folder / "speed.json", json.dumps(speed_figures, indent=2))
    atomic_write_text(folder / "report.md", report(rows, labels[positive], speed_figures))
    draw_all(folder, rows, runs, done, targets, positive, best, labels[positive], speed_figures)
    print(f"\n{(folder / 'report.md').read_text(encoding='utf-8')}\nWritten to {folder}/")


def timed_runs(runs: list[Run], done: dict, texts: list[str], threads: int) -> dict[tuple[str, int], float]:
    """Texts per second, raw text in, of each row's model, timed once: on its first seed's checkpoint
    (the other seeds are the same network with other weights)."""
    from bert2textcnn.bench.speed import model_throughput

    first = {run.name: run for run in reversed(runs)}  # reversed: the first seed wins
    return {
        (name, run.seed): model_throughput(done[run.key]["checkpoint"], texts, threads) for name, run in first.items()
    }


def best_distilled(rows: list[dict[str, Any]]) -> str | None:
    """The full-label distilled run name with the best mean macro-F1."""
    names = {row["name"] for row in rows if row["scheme"] in DISTILLED and row["label_fraction"] == 1}
    return max(sorted(names), key=lambda n: mean(rows, n, "macro_f1"), default=None)


def mean(rows: list[dict[str, Any]], name: str, column: str) -> float:
    return statistics.fmean(row[column] for row in rows if row["name"] == name)


def cell(rows: list[dict[str, Any]], name: str, column: str) -> str:
    """Mean ± std over seeds: scores to 3 decimals, seconds whole; a paired difference, ``*_minus_*``,
    to 4 decimals ± its standard error (std / √seeds)."""
    values = [row[column] for row in rows if row["name"] == name and column in row and row[column] == row[column]]
    if not values:
        return "—"
    paired = "_minus_" in column
    digits = 0 if column.startswith(("seconds", "texts_per_s")) else 4 if paired else 3
    text = f"{statistics.fmean(values):+.{digits}f}" if paired else f"{statistics.fmean(values):.{digits}f}"
    if len(values) > 1:
        spread = statistics.stdev(values) / (len(values) ** 0.5 if paired else 1)
        text += f" ± {spread:.{digits}f}"
    return text


def selection_table(rows: list[dict[str, Any]]) -> list[str]:
    """Δ vs plain on each half of the test file, for the runs compared with a plain student: pick
    a variant by the odd rows and quote the even rows, and the choice has not flattered the figure."""
    names = list(dict.fromkeys(row["name"] for row in rows if "macro_f1_minus_plain_odd_rows" in row))
    if not names:
        return []
    lines = [
        "",
        "## Selection",
        "",
        "Δ vs plain, paired, on each half of the test file. Choosing among these runs by the odd rows "
        "and quoting the chosen run's even rows gives a figure the choice has not flattered.",
        "",
        "| run | Δ, odd rows (choose) | Δ, even rows (quote) |",
        "|---|---|---|",
    ]
    for name in names:
        odd, even = (cell(rows, name, f"macro_f1_minus_plain_{half}") for half in HALVES)
        lines.append(f"| {name} | {odd} | {even} |")
    return lines


def report(rows: list[dict[str, Any]], positive: str, speed: dict[str, Any] | None) -> str:
    columns = ["macro_f1", "macro_f1_minus_plain", f"precision_{positive}", f"recall_{positive}",
               "teacher_macro_f1", "coverage", "negative_flip_rate", "seconds_per_epoch", "texts_per_s"]  # fmt: skip
    header = ["run", "seeds", "macro-F1", "Δ vs plain, paired", f"{positive} P", f"{positive} R", "teacher macro-F1",
              "coverage", "NFR", "s / epoch", "texts/s", "× teacher epoch", "gap closed"]  # fmt: skip
    lines = [
        "# Benchmark",
        "",
        "Each run scored on the test file after its last epoch; mean ± std over seeds. The teacher row is "
        "the fine-tuned BERT; every other row is a student (a TextCNN unless its name says `student=bert`). "
        "texts/s: the row's model on raw test texts, batch 64, timed once (first seed). "
        "coverage / NFR: against the plain "
        "student of the same seed. × teacher epoch: training time per epoch against the teacher's own "
        "fine-tuning; `offline`'s first seed includes the one teacher pass that fills its logits cache. "
        "gap closed = (student − plain) / (teacher − plain), on macro-F1. Δ vs plain, paired: macro-F1 minus "
        "that of the plain student of the same seed, mean ± standard error over seeds; a difference within "
        "about two standard errors of 0 is one the seeds alone could make.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    full_labels_first = sorted(rows, key=lambda row: row["label_fraction"] != 1)
    for name in dict.fromkeys(row["name"] for row in full_labels_first):
        group = next(row for row in rows if row["name"] == name)
        suffix = name.split(" · ", 1)[1].split(" ", 1)[0] if " · " in name else ""
        plain, teacher = ("student", "teacher") if not suffix else (f"student · {suffix}", f"teacher · {suffix}")
        gap, cost = "—", "—"
        if any(r["name"] == teacher for r in rows):
            cost = f"{mean(rows, name, 'seconds_per_epoch') / mean(rows, teacher, 'seconds_per_epoch'):.2f}×"
            spread = mean(rows, teacher, "macro_f1") - mean(rows, plain, "macro_f1")
            if group["scheme"] != "teacher" and spread:
                gap = f"{(mean(rows, name, 'macro_f1') - mean(rows, plain, 'macro_f1')) / spread:.2f}"
        seeds = sum(row["name"] == name for row in rows)
        lines.append("| " + " | ".join([name, str(seeds), *(cell(rows, name, c) for c in columns), cost, gap]) + " |")
    lines += selection_table(rows)
    if speed:
        setup = speed["setup"]
        lines += [
            "",
            f"## Speed ({setup['texts']} test texts, batch {setup['batch_size']}, {setup['threads']} threads)",
            "",
            "| model | texts/s, batch 64 | ms, batch 1 (p50) | ms, batch 1 (p95) |",
            "|---|---|---|---|",
        ]
        for model in ("student", "student_onnx", "teacher"):
            row = speed[model]
            lines.append(
                f"| {model} | {row['texts_per_s_b64']:,.0f} | {row['ms_b1_p50']:.3f} | {row['ms_b1_p95']:.3f} |"
            )
        ratios = f"Student / teacher: {speed['ratio_b64']:.0f}× at batch 64, {speed['ratio_b1']:.0f}× at batch 1."
        if "student_matmul_bound" in speed:  # a TextCNN student
            ratios += (
                " Student ceiling (its convolutions' multiply-adds as one matrix product per batch): "
                f"{speed['student_matmul_bound']:,.0f} texts/s."
            )
        lines += ["", ratios]
    return "\n".join(lines) + "\n"
