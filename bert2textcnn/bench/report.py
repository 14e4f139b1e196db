"""Scoring the finished runs and writing the report folder: results.csv, report.md, the figures."""

from __future__ import annotations

import csv
import io
import json
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from bert2textcnn.bench.figures import draw_all
from bert2textcnn.bench.plan import DISTILLED, Run, first_seed_runs, old_models_of
from bert2textcnn.bench.sittings import EarlierRow, digest, with_earlier
from bert2textcnn.bench.speed import PATHS
from bert2textcnn.checkpoint import project_record
from bert2textcnn.data.records import Record
from bert2textcnn.distill.metrics import ClassificationMetrics, CompatibilityMetrics
from bert2textcnn.distill.schemes import SCHEMES
from bert2textcnn.files import atomic_write_text
from bert2textcnn.inference.predictor import StudentPredictor

# Two halves of the test file: choose among variants on one, quote the chosen one's score on the
# other, which no choice has seen (the Selection table of the report).
HALVES = {"odd_rows": slice(1, None, 2), "even_rows": slice(0, None, 2)}

SPEED_TEXTS = 512  # test texts each row's model is timed on


def score(record: dict[str, Any], labels: list[str], targets: torch.Tensor, positive: int, done: dict) -> dict:
    """One row of results.csv: the run's own model (the student; the teacher of a teacher run)
    in full, the teacher's macro-F1 beside it, and against the plain student of the same seed:
    coverage, NFR and the macro-F1 difference."""
    run = Run(**record["run"])
    row = own_row(record, labels, targets)
    for role, probs in record["probabilities"].items():
        if role != main_role(record):
            row[f"{role}_macro_f1"] = classification_scores(probs, labels, targets)["macro_f1"]
    if run.plain_run:
        plain = done[run.plain_run]["probabilities"]["student"]
        row |= compatibility_with_old(record["probabilities"]["student"], [
            done[key]["probabilities"]["student"] for key in old_models_of(run)
        ], targets, positive)  # fmt: skip
        row["macro_f1_minus_plain"] = row["macro_f1"] - classification_scores(plain, labels, targets)["macro_f1"]
        for half, rows in HALVES.items():
            row[f"macro_f1_minus_plain_{half}"] = (
                classification_scores(record["probabilities"]["student"][rows], labels, targets[rows])["macro_f1"]
                - classification_scores(plain[rows], labels, targets[rows])["macro_f1"]
            )
    seconds, epochs = record["train_seconds"], record["epochs"]
    return row | {"train_seconds": seconds, "epochs": epochs, "seconds_per_epoch": seconds / max(1, epochs)}


def own_row(record: dict[str, Any], labels: list[str], targets: torch.Tensor) -> dict[str, Any]:
    """The run's name, seed, digest and its own model's scores: what tells two sittings' runs apart."""
    run = Run(**record["run"])
    return {
        "name": run.name,
        "scheme": run.scheme,
        "seed": run.seed,
        "label_fraction": run.label_fraction,
        "probabilities_digest": digest(record["probabilities"]),
    } | classification_scores(record["probabilities"][main_role(record)], labels, targets)


def compatibility_with_old(new: list, old: list[list], targets: torch.Tensor, positive: int) -> dict[str, float]:
    """Coverage, flip rates and agreement against the old models' averaged probabilities (the one
    old model, when there is one); with several, also against each: ``negative_flip_rate_old1`` …"""
    references = {"": torch.tensor(old).mean(0)}
    if len(old) > 1:
        references |= {f"_old{k}": torch.tensor(probabilities) for k, probabilities in enumerate(old, start=1)}
    figures = {}
    for suffix, reference in references.items():
        compatibility = CompatibilityMetrics(positive)
        compatibility.update(torch.tensor(new).log(), reference.log(), targets)
        figures |= {f"{name}{suffix}": value.item() for name, value in compatibility.compute().items()}
    return figures


def classification_scores(probabilities: list, labels: list[str], targets: torch.Tensor) -> dict[str, float]:
    metrics = ClassificationMetrics(labels)
    metrics.update(torch.tensor(probabilities).log(), targets)
    return metrics.scalars(metrics.compute(), "")


def test_targets(checkpoint: str, test: list[Record]) -> tuple[list[str], torch.Tensor, int]:
    """The labels in the model's order, the test texts' label indices, and the positive class."""
    labels = list(project_record(checkpoint)["labels"])
    targets = torch.tensor([labels.index(r.label) for r in test])
    return labels, targets, labels.index("spam") if "spam" in labels else len(labels) - 1


def main_role(record: dict[str, Any]) -> str:
    return "student" if "student" in record["probabilities"] else "teacher"


def write_report(
    folder: Path,
    runs: list[Run],
    done: dict,
    test: list[Record],
    speed: bool,
    threads: int,
    teacher: str | None,
    earlier: Sequence[EarlierRow] = (),
    reference: str | None = None,
) -> None:
    """The report of this folder's finished runs and of ``earlier`` rows from other sittings (in the
    tables and results.csv only: the pictures of runs and the timings need this folder's models)."""
    labels, targets, positive = test_targets(done[runs[0].key]["checkpoint"], test)
    here = [score(done[run.key], labels, targets, positive, done) for run in runs]
    if speed:
        timed = timed_runs(runs, done, [r.text for r in test][:SPEED_TEXTS], threads)
        here = [row | {"texts_per_s": timed[row["name"], row["seed"]]} if (row["name"], row["seed"]) in timed else row
                for row in here]  # fmt: skip
    rows = with_earlier(here, earlier)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, list(dict.fromkeys(key for row in rows for key in row)))
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(folder / "results.csv", buffer.getvalue())
    best = best_distilled(here)
    speed_figures = None
    if speed:
        from bert2textcnn.bench.speed import measure  # needs the `export` extra (ONNX Runtime)

        checkpoint = done[first_seed_runs(runs)[best or "student"].key]["checkpoint"]
        speed_figures = measure(checkpoint, [r.text for r in test], threads, min_seconds=1.0, teacher_dir=teacher)
        atomic_write_text(folder / "speed.json", json.dumps(speed_figures, indent=2))
    curve = exit_curve_of(runs, done, labels, targets, [r.text for r in test], threads) if speed else None
    if curve:
        atomic_write_text(folder / "exit_curve.json", json.dumps(curve, indent=2))
    compared = next((run for run in runs if len(run.old_runs) > 1), None)
    old_names = [done[key]["run"]["name"] for key in compared.old_runs] if compared else None
    text = report(rows, labels[positive], speed_figures, curve, old_names, reference)
    atomic_write_text(folder / "report.md", text)
    draw_all(folder, rows, runs, done, targets, positive, best, labels[positive], speed_figures, curve)
    print(f"\n{(folder / 'report.md').read_text(encoding='utf-8')}\nWritten to {folder}/")


def timed_runs(runs: list[Run], done: dict, texts: list[str], threads: int) -> dict[tuple[str, int], float]:
    """Texts per second, raw text in, of each row's model, timed once: on its first seed's checkpoint
    (the other seeds are the same network with other weights)."""
    from bert2textcnn.bench.speed import model_throughput

    return {
        (name, run.seed): model_throughput(done[run.key]["checkpoint"], texts, threads)
        for name, run in first_seed_runs(runs).items()
    }


def exit_curve_of(
    runs: list[Run], done: dict, labels: list[str], targets: torch.Tensor, texts: list[str], threads: int
) -> dict[str, Any] | None:
    """The speed/quality curve of the first full-label run whose model exits early (its first seed):
    scored on every test text, timed on the ``SPEED_TEXTS`` the other rows are timed on."""
    from bert2textcnn.bench.exit_curve import exit_curve

    run = next((r for r in runs if SCHEMES[r.scheme].exits_early and r.label_fraction == 1), None)
    if run is None:
        return None
    torch.set_num_threads(threads)
    model = StudentPredictor.from_checkpoint(done[run.key]["checkpoint"]).student
    rows = exit_curve(model, texts, labels, targets, texts[:SPEED_TEXTS])
    return {"run": run.name, "seed": run.seed, "rows": rows}


def best_distilled(rows: list[dict[str, Any]]) -> str | None:
    """The full-label distilled run name with the best mean macro-F1 (a model that exits early is
    the teacher's own BERT with branches, so it is not a candidate: it has its own curve)."""
    names = {
        row["name"]
        for row in rows
        if row["scheme"] in DISTILLED and row["label_fraction"] == 1 and not SCHEMES[row["scheme"]].exits_early
    }
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


def spread_table(rows: list[dict[str, Any]], reference: str | None) -> list[str]:
    """Macro-F1 over the seeds — mean, std, min, max — for claims about a method's stability; with
    ``reference`` (a run name), each run minus the reference run of the same seed; and training
    seconds as median and fastest run, which a run on shared cores inflates less than the mean."""
    if reference is not None:
        by_seed = {row["seed"]: row["macro_f1"] for row in rows if row["name"] == reference}
        rows = [row | {"macro_f1_minus_reference": row["macro_f1"] - by_seed[row["seed"]]}
                if row["name"] != reference and row["seed"] in by_seed else row for row in rows]  # fmt: skip
    paired = [f"Δ vs {reference}, paired"] if reference is not None else []
    header = ["run", "seeds", "mean", "std", "min", "max", *paired, "train s: median (fastest)"]
    lines = [
        "",
        "## Spread over seeds",
        "",
        "Macro-F1 over the seeds."
        + (f" Δ: macro-F1 minus that of `{reference}` of the same seed, mean ± standard error." if paired else ""),
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    for name in dict.fromkeys(row["name"] for row in rows):
        scores = [row["macro_f1"] for row in rows if row["name"] == name]
        seconds = [row["train_seconds"] for row in rows if row["name"] == name]
        std = f"{statistics.stdev(scores):.4f}" if len(scores) > 1 else "—"
        cells = [name, str(len(scores)), f"{statistics.fmean(scores):.4f}", std, f"{min(scores):.4f}",
                 f"{max(scores):.4f}", *(cell(rows, name, "macro_f1_minus_reference") for _ in paired),
                 f"{statistics.median(seconds):.0f} ({min(seconds):.0f})"]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def old_models_table(rows: list[dict[str, Any]], old_names: list[str]) -> list[str]:
    """NFR against each of several old models and against their average, per run compared with them."""
    names = list(dict.fromkeys(row["name"] for row in rows if "negative_flip_rate_old1" in row))
    if not names:
        return []
    columns = [f"negative_flip_rate_old{k}" for k in range(1, len(old_names) + 1)] + ["negative_flip_rate"]
    lines = [
        "",
        "## Old models",
        "",
        "Negative flip rate (old right, new wrong, over all test rows) against each old model of the same "
        "seed and against their averaged probabilities; coverage of the average's spam hits.",
        "",
        "| run | " + " | ".join(f"NFR vs {name}" for name in old_names) + " | NFR vs average | coverage |",
        "|" + "---|" * (len(old_names) + 3),
    ]
    for name in names:
        lines.append(f"| {name} | " + " | ".join(cell(rows, name, c) for c in [*columns, "coverage"]) + " |")
    return lines


def report(
    rows: list[dict[str, Any]],
    positive: str,
    speed: dict[str, Any] | None,
    curve: dict[str, Any] | None = None,
    old_names: list[str] | None = None,
    reference: str | None = None,
) -> str:
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
        "coverage / NFR: against the old model "
        "of the same seed — the plain student unless `--old_models` names others; several: their averaged "
        "probabilities (each alone under Old models). × teacher epoch: training time per epoch against the "
        "teacher's own fine-tuning; the first run that reads the teacher's logits cache (`offline`'s first seed) "
        "includes the one teacher pass that fills it. "
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
    lines += spread_table(rows, reference) + selection_table(rows) + old_models_table(rows, old_names or [])
    if speed:
        setup = speed["setup"]
        lines += [
            "",
            f"## Speed ({setup['texts']} test texts, batch {setup['batch_size']}, {setup['threads']} threads)",
            "",
            "| model | texts/s, batch 64 | ms, batch 1 (p50) | ms, batch 1 (p95) |",
            "|---|---|---|---|",
        ]
        for model in (path for path in PATHS if path in speed):
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
    if curve:
        from bert2textcnn.bench.exit_curve import curve_table

        lines += [
            "",
            f"## Early exit: {curve['run']} (seed {curve['seed']})",
            "",
            "macro-F1 on every test text at each speed s (a text leaves at the first layer whose branch's "
            f"normalised entropy is below s); texts/s and batch-1 latency on the {SPEED_TEXTS} texts the rows "
            "above are timed on.",
            "",
            *curve_table(curve["rows"]),
        ]
    return "\n".join(lines) + "\n"
