"""The benchmark's pictures: macro-F1 per run with the seeds' spread, positive-class
precision–recall curves of the teacher, the plain student and the best distilled student,
student vs teacher throughput, and every run's quality against its speed."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import torch
from torchmetrics.functional.classification import binary_precision_recall_curve

from bert2textcnn.bench.plan import first_seed_runs
from bert2textcnn.bench.speed import PATHS
from bert2textcnn.files import atomic_write


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _label(name: str) -> str:
    """A run name wrapped to a few short lines: variant names would squeeze the plot to a sliver."""
    return textwrap.fill(name, width=36)


def _save(figure, path: Path) -> None:
    figure.tight_layout()
    atomic_write(path, lambda tmp: figure.savefig(tmp, format="png", dpi=110, bbox_inches="tight"))
    _pyplot().close(figure)


def draw_all(
    folder: Path,
    rows: list[dict[str, Any]],
    runs: list,
    done: dict[str, dict[str, Any]],
    targets: torch.Tensor,
    positive: int,
    best: str | None,
    positive_label: str,
    speed: dict[str, Any] | None,
    curve: dict[str, Any] | None = None,
) -> None:
    macro_f1(folder / "macro_f1.png", rows)
    curves = {"teacher (BERT)": ("teacher", "teacher"), "plain student": ("student", "student")}
    if best:
        curves[f"best student: {best}"] = (best, "student")
    first = first_seed_runs(runs)
    probabilities = {label: done[first[name].key]["probabilities"][role] for label, (name, role) in curves.items()}
    pr_curves(folder / "pr_curves.png", probabilities, targets, positive, positive_label, first["student"].seed)
    if speed:
        throughput(folder / "speed.png", speed)
        quality_vs_speed(folder / "quality_vs_speed.png", rows, curve)


def macro_f1(path: Path, rows: list[dict[str, Any]]) -> None:
    plt = _pyplot()
    names = list(dict.fromkeys(row["name"] for row in rows))
    lines = sum(_label(name).count("\n") + 1 for name in names)
    figure, axes = plt.subplots(figsize=(7, 0.3 * lines + 0.2 * len(names) + 1.2))
    for y, name in enumerate(names):
        values = [row["macro_f1"] for row in rows if row["name"] == name]
        axes.scatter(values, [y] * len(values), color="tab:blue", alpha=0.6, s=18)
        axes.scatter([sum(values) / len(values)], [y], color="black", marker="|", s=250)
    axes.set_yticks(range(len(names)), [_label(name) for name in names])
    axes.invert_yaxis()
    axes.set_xlabel("macro-F1 on the test file (dots: seeds; bar: mean)")
    axes.grid(axis="x", alpha=0.3)
    _save(figure, path)


def pr_curves(
    path: Path, probabilities: dict[str, list], targets: torch.Tensor, positive: int, positive_label: str, seed: int
) -> None:
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(5.5, 4.5))
    for label, probs in probabilities.items():
        precision, recall, _ = binary_precision_recall_curve(torch.tensor(probs)[:, positive], targets == positive)
        axes.plot(recall.numpy(), precision.numpy(), label=_label(label))
    axes.set_xlabel(f"{positive_label} recall")
    axes.set_ylabel(f"{positive_label} precision")
    axes.set_title(f"Precision–recall for {positive_label!r} (seed {seed})")
    axes.legend(loc="lower left")
    axes.grid(alpha=0.3)
    _save(figure, path)


def throughput(path: Path, speed: dict[str, Any]) -> None:
    plt = _pyplot()
    models = [path for path in PATHS if path in speed]
    values = [speed[m]["texts_per_s_b64"] for m in models]
    figure, axes = plt.subplots(figsize=(5.5, 0.5 * len(models) + 1.5))
    bars = axes.barh(models, values, color=["tab:orange" if m == "teacher" else "tab:blue" for m in models])
    axes.bar_label(bars, [f"{v:,.0f}/s" for v in values], padding=3)
    axes.set_xscale("log")
    axes.set_xlabel(f"texts per second, raw text in, batch {speed['setup']['batch_size']} (log scale)")
    axes.invert_yaxis()
    _save(figure, path)


def quality_vs_speed(path: Path, rows: list[dict[str, Any]], curve: dict[str, Any] | None = None) -> None:
    """Mean macro-F1 against texts per second, one point per run: the trade every method makes; a
    model that exits early is a line through its speeds, the operating points to pick from."""
    plt = _pyplot()
    timed = {row["name"]: row["texts_per_s"] for row in rows if "texts_per_s" in row}
    figure, axes = plt.subplots(figsize=(7, 4.5))
    if curve:
        points = curve["rows"]
        rates, scores = [p["texts_per_s_b64"] for p in points], [p["macro_f1"] for p in points]
        axes.plot(
            rates,
            scores,
            "-o",
            color="tab:red",
            markersize=3,
            label=f"{curve['run']}, seed {curve['seed']}, by speed s",
        )
        for point in points:
            axes.annotate(f"s={point['speed']}", (point["texts_per_s_b64"], point["macro_f1"]), fontsize=6,
                          xytext=(3, -8), textcoords="offset points", color="tab:red")  # fmt: skip
        axes.legend(loc="lower left", fontsize=7)
        timed.pop(curve["run"], None)  # its s = 0 point is on the line
    for name, rate in timed.items():
        values = [row["macro_f1"] for row in rows if row["name"] == name]
        mean = sum(values) / len(values)
        axes.scatter([rate], [mean], s=22)
        axes.annotate(textwrap.shorten(name, 40), (rate, mean), fontsize=7, xytext=(4, 2), textcoords="offset points")
    axes.set_xscale("log")
    axes.xaxis.set_minor_formatter(plt.NullFormatter())  # 2×10², 3×10², … would overlap
    axes.set_xlabel("texts per second, raw text in, batch 64 (log scale)")
    axes.set_ylabel("macro-F1 on the test file (mean over seeds)")
    axes.grid(alpha=0.3)
    _save(figure, path)
