"""FastBERT's speed/quality curve: at each speed s, macro-F1 on labelled texts, the layers run on
average, and texts per second end to end (raw text in) at batch 64 and at batch 1.

    python -m bert2textcnn speed --ckpt_path runs/fastbert/…/best.ckpt --texts dev.csv

s = 0 runs every layer: the plain BERT, the curve's reference. With n layers no speed-up can
pass n× (every text leaving after layer 1, its branch being far cheaper than a layer).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from bert2textcnn.bench.speed import latency_ms, length_sorted_batches, throughput
from bert2textcnn.data.records import Record
from bert2textcnn.distill.metrics import ClassificationMetrics
from bert2textcnn.inference.predictor import StudentPredictor
from bert2textcnn.models.fastbert import FastBert
from bert2textcnn.models.protocol import outputs_in_order

EXIT_SPEEDS = (0.0, 0.1, 0.2, 0.3, 0.5, 0.8)


def exit_curve(
    model: FastBert,
    texts: Sequence[str],
    labels: Sequence[str],
    targets: torch.Tensor | None,
    timed_texts: Sequence[str],
    speeds: Sequence[float] = EXIT_SPEEDS,
    latency_texts: int = 200,
    min_seconds: float = 1.0,
) -> list[dict[str, Any]]:
    """One row per speed. ``texts`` (with ``targets``, when labelled) are scored, ``timed_texts``
    timed: length-sorted batches of 64 for throughput, the first ``latency_texts`` one by one."""
    model.eval()
    batches = length_sorted_batches(timed_texts, 64)
    singles = [[text] for text in timed_texts[:latency_texts]]

    def run(batch: list[str]) -> torch.Tensor:
        return model(**model.encode(batch)).logits.softmax(-1)

    rows = []
    with torch.inference_mode():
        for speed in speeds:
            model.speed = speed
            scored = outputs_in_order(model, texts, lambda out, inputs: torch.cat([out.logits, exit_column(out)], 1))
            row: dict[str, Any] = {"speed": speed, "layers": model.layers, "avg_layers": scored[:, -1].mean().item()}
            if targets is not None:
                metrics = ClassificationMetrics(labels)
                metrics.update(scored[:, :-1], targets)
                row["macro_f1"] = metrics.compute()["macro_f1"].item()
            row["texts_per_s_b64"] = throughput(run, batches, len(timed_texts), min_seconds)
            row["ms_b1_p50"], row["ms_b1_p95"] = latency_ms(run, singles)
            rows.append(row)
    for row in rows:
        row["speedup_b64"] = row["texts_per_s_b64"] / rows[0]["texts_per_s_b64"]
    return rows


def exit_column(output: Any) -> torch.Tensor:
    return output.exit_layers.unsqueeze(1).to(output.logits.dtype)


def curve_table(rows: list[dict[str, Any]]) -> list[str]:
    """Markdown: one line per speed; the first row's rate (every layer run) is the 1× reference."""
    layers = rows[0]["layers"]
    lines = [
        f"| speed s | macro-F1 | layers run (of {layers}) | texts/s, batch 64 | × s = {rows[0]['speed']} "
        "| ms, batch 1 (p50) |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        f1 = f"{row['macro_f1']:.3f}" if "macro_f1" in row else "—"
        lines.append(
            f"| {row['speed']} | {f1} | {row['avg_layers']:.2f} | {row['texts_per_s_b64']:,.0f} "
            f"| {row['speedup_b64']:.2f}× | {row['ms_b1_p50']:.2f} |"
        )
    return lines


def measure_curve(
    ckpt_path: str,
    records: Sequence[Record],
    threads: int,
    speeds: Sequence[float] = EXIT_SPEEDS,
    latency_texts: int = 200,
    min_seconds: float = 1.0,
) -> dict[str, Any]:
    """``exit_curve`` of a FastBERT checkpoint on these records, scored where every one is labelled."""
    torch.set_num_threads(threads)
    predictor = StudentPredictor.from_checkpoint(ckpt_path)
    texts = [record.text for record in records]
    labelled = bool(records) and all(record.label in predictor.labels for record in records)
    targets = torch.tensor([predictor.labels.index(r.label) for r in records]) if labelled else None
    rows = exit_curve(predictor.student, texts, predictor.labels, targets, texts, speeds, latency_texts, min_seconds)
    setup = {
        "threads": threads,
        "texts": len(texts),
        "batch_size": 64,
        "labelled": labelled,
        "torch": torch.__version__,
    }
    return {"exit_curve": rows, "setup": setup}
