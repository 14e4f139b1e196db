"""Student vs teacher speed on the same texts in one process, end to end (raw text in,
probabilities out) and without tokenisation, every path side by side: the student in PyTorch as
trained, folded (a TextCNN, ``models/folded_textcnn.py``) and under bf16 where the CPU computes it
natively; through ONNX Runtime (the fp32 export, folded, and int8 when its export passes the
precision gate on these texts); the teacher in PyTorch.

    python -m bert2textcnn speed --ckpt_path runs/…/best.ckpt --threads 2 --output speed.json

Throughput uses length-sorted batches padded per batch — each model's best path. Latency is one
text per call, after a warm-up pass over the same texts, reported as the 50th and 95th percentiles.

A TextCNN student's ceiling is measured too, not estimated: one matrix multiply per batch that does
all its convolutions' multiply-adds at the same padded shapes. Nearly all of a TextCNN's work is
that product, so its rate on this machine bounds what any implementation of the student reaches.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch

from bert2textcnn.checkpoint import RECORD_KEY, load_trained_teacher, read_checkpoint, weights_of
from bert2textcnn.errors import UserError
from bert2textcnn.files import atomic_write_text
from bert2textcnn.inference.export import export_student
from bert2textcnn.inference.precision import cpu_has_bf16
from bert2textcnn.inference.predictor import StudentPredictor
from bert2textcnn.inference.serving import OnnxClassifier
from bert2textcnn.models import Classifier
from bert2textcnn.models.bert import BertClassifier
from bert2textcnn.models.textcnn import TextCNN

Run = Callable[[Any], Any]
PATHS = ("student", "student_folded", "student_bf16", "student_onnx", "student_onnx_int8", "teacher")  # as reported


def throughput(run: Run, batches: Sequence[Any], texts: int, min_seconds: float) -> float:
    """Texts per second over whole passes of ``batches``, repeated for at least ``min_seconds``,
    after a warm-up pass (``latency_ms``: ONNX Runtime's first call at each shape costs more)."""
    for batch in batches:
        run(batch)
    passes, start = 0, time.perf_counter()
    while passes == 0 or time.perf_counter() - start < min_seconds:
        for batch in batches:
            run(batch)
        passes += 1
    return passes * texts / (time.perf_counter() - start)


def length_sorted_batches(texts: Sequence[str], batch_size: int) -> list[list[str]]:
    """The texts in batches of similar length, each padded to its own longest: a model's best path."""
    by_length = sorted(texts, key=len)
    return [by_length[i : i + batch_size] for i in range(0, len(by_length), batch_size)]


def latency_ms(run: Run, items: Sequence[Any]) -> tuple[float, float]:
    """p50 and p95 of one call per item, after a warm-up pass over the same items: a server's
    steady state, where ONNX Runtime has already sized its buffers for each length it meets
    (its first call at a new length costs several times a later one)."""
    for item in items:
        run(item)
    timings = []
    for item in items:
        start = time.perf_counter()
        run(item)
        timings.append((time.perf_counter() - start) * 1000)
    percentiles = statistics.quantiles(timings, n=100, method="inclusive")
    return percentiles[49], percentiles[94]


def matmul_bound(student: TextCNN, encoded: Sequence[torch.Tensor], texts: int, min_seconds: float) -> float:
    """Texts per second of the student's convolutions alone, as one (batch·length × embedding) by
    (embedding × Σ width·filters) product per batch: the same multiply-adds as every window of
    every kernel (a few more: each kernel is counted over the whole length)."""
    dim = student.embedding.embedding_dim
    weight = torch.randn(dim, sum(conv.weight.numel() for conv in student.convs) // dim)  # (E, Σ F·k)
    inputs = [torch.randn(ids.numel(), dim) for ids in encoded]
    return throughput(lambda x: x @ weight, inputs, texts, min_seconds)


def model_throughput(ckpt_path: str, texts: Sequence[str], threads: int, batch_size: int = 64,
                     min_seconds: float = 0.5) -> float:  # fmt: skip
    """Texts per second, raw text in and probabilities out, of a checkpoint's own model — its
    student, or the teacher of a checkpoint without one — over length-sorted batches."""
    torch.set_num_threads(threads)
    checkpoint = read_checkpoint(ckpt_path)
    if weights_of(checkpoint, "student"):
        model = StudentPredictor.from_checkpoint(ckpt_path).student
    else:
        record = checkpoint[RECORD_KEY]
        model = load_trained_teacher(ckpt_path, record["labels"], int(record["max_length"]))
    batches = length_sorted_batches(texts, batch_size)
    with torch.inference_mode():
        return throughput(lambda b: model(**model.encode(b)).logits.softmax(-1), batches, len(texts), min_seconds)


def load_teacher(ckpt_path: str, labels: Sequence[str], max_length: int, teacher_dir: str | None) -> BertClassifier:
    """The checkpoint's own fine-tuned teacher when it has one, else the untrained head on
    ``teacher_dir`` (the default m3e-small): the same cost, which is all that is measured."""
    if weights_of(read_checkpoint(ckpt_path), "teacher"):
        return load_trained_teacher(ckpt_path, labels, max_length)
    return BertClassifier.from_directory(teacher_dir, len(labels), max_length).eval()


def measure(
    ckpt_path: str,
    texts: Sequence[str],
    threads: int,
    batch_size: int = 64,
    latency_texts: int = 200,
    min_seconds: float = 2.0,
    teacher_dir: str | None = None,
) -> dict[str, Any]:
    torch.set_num_threads(threads)
    student = StudentPredictor.from_checkpoint(ckpt_path)
    teacher = load_teacher(ckpt_path, student.labels, student.student.max_length, teacher_dir)
    batches = length_sorted_batches(texts, batch_size)
    singles = [[text] for text in texts[:latency_texts]]

    def forward_of(model: Classifier, dtype: torch.dtype | None = None) -> tuple[Run, Run, Run]:
        """(end to end, from encoded inputs, encoder) of one model, in ``dtype`` autocast if given."""

        def forward(inputs: dict[str, torch.Tensor]) -> torch.Tensor:
            return model(**inputs).logits.softmax(-1)

        def lower(inputs: dict[str, torch.Tensor]) -> torch.Tensor:
            with torch.autocast("cpu", dtype=dtype):
                return forward(inputs).float()

        timed = forward if dtype is None else lower  # no autocast context at all in fp32: µs count at batch 1
        return (lambda texts: timed(model.encode(texts))), timed, model.encode

    with tempfile.TemporaryDirectory() as export_dir:
        export_student(ckpt_path, f"{export_dir}/fp32", texts[:batch_size])
        onnx = OnnxClassifier(f"{export_dir}/fp32", threads=threads, batch_size=batch_size)
        models = {"student": forward_of(student.student)}  # (end to end, from encoded inputs, encoder)
        results: dict[str, Any] = {"unavailable": {}}
        if student.serving is not student.student:
            models["student_folded"] = forward_of(student.serving)
        if cpu_has_bf16():
            models["student_bf16"] = forward_of(student.student, torch.bfloat16)
        else:
            results["unavailable"]["student_bf16"] = "this CPU has no native bf16 (AVX-512 BF16 or AMX)"
        models["student_onnx"] = (lambda b: onnx.run(onnx.encode(b)), onnx.run, onnx.encode)
        try:  # the int8 export's own gate, on the timed texts: the same label as fp32 on 99.5 % of them
            export_student(ckpt_path, f"{export_dir}/int8", texts, "int8")
            int8 = OnnxClassifier(f"{export_dir}/int8", threads=threads, batch_size=batch_size)
            models["student_onnx_int8"] = (lambda b: int8.run(int8.encode(b)), int8.run, int8.encode)
        except UserError as refused:
            results["unavailable"]["student_onnx_int8"] = str(refused)
        models["teacher"] = forward_of(teacher)
        with torch.inference_mode():
            for name, (end_to_end, forward, encode) in models.items():
                encoded = [encode(batch) for batch in batches]
                p50, p95 = latency_ms(end_to_end, singles)
                results[name] = {
                    "texts_per_s_b64": throughput(end_to_end, batches, len(texts), min_seconds),
                    "texts_per_s_b64_encoded": throughput(forward, encoded, len(texts), min_seconds),
                    "ms_b1_p50": p50,
                    "ms_b1_p95": p95,
                }
            if isinstance(student.student, TextCNN):  # the ceiling of a convolutional student only
                student_ids = [student.student.encode(batch)["input_ids"] for batch in batches]
                results["student_matmul_bound"] = matmul_bound(student.student, student_ids, len(texts), min_seconds)
    results["ratio_b64"] = results["student"]["texts_per_s_b64"] / results["teacher"]["texts_per_s_b64"]
    results["ratio_b1"] = results["teacher"]["ms_b1_p50"] / results["student"]["ms_b1_p50"]
    results["ratio_b64_onnx"] = results["student_onnx"]["texts_per_s_b64"] / results["teacher"]["texts_per_s_b64"]
    results["ratio_b1_onnx"] = results["teacher"]["ms_b1_p50"] / results["student_onnx"]["ms_b1_p50"]
    paths = [name for name in models if name != "teacher"]
    results["best_b64"] = max(paths, key=lambda name: results[name]["texts_per_s_b64"])
    results["best_b1"] = min(paths, key=lambda name: results[name]["ms_b1_p50"])
    results["ratio_b64_best"] = results[results["best_b64"]]["texts_per_s_b64"] / results["teacher"]["texts_per_s_b64"]
    results["ratio_b1_best"] = results["teacher"]["ms_b1_p50"] / results[results["best_b1"]]["ms_b1_p50"]
    fp32 = [name for name in paths if name in ("student", "student_folded", "student_onnx")]
    fastest = results["best_fp32_b64"] = max(fp32, key=lambda name: results[name]["texts_per_s_b64"])
    row = results[fastest]
    # Two separate timings: where tokenising is a sliver of a BERT forward, their noise can make the
    # difference negative, which means "too small to measure", not a speed-up.
    results["tokenising_share"] = max(0.0, 1 - row["texts_per_s_b64"] / row["texts_per_s_b64_encoded"])
    if "student_matmul_bound" in results:
        results["ceiling_reached_end_to_end"] = row["texts_per_s_b64"] / results["student_matmul_bound"]
    results["setup"] = {"threads": threads, "texts": len(texts), "batch_size": batch_size, "torch": torch.__version__}
    return results


def report(results: dict[str, Any]) -> str:
    setup = results["setup"]
    lines = [
        f"{setup['texts']} texts, batch {setup['batch_size']}, torch.set_num_threads({setup['threads']})",
        "",
        f"{'model':<17} {'texts/s b64':>12} {'(no tokenising)':>16} {'ms b1 p50':>10} {'ms b1 p95':>10}",
    ]
    for name in PATHS:
        if name not in results:
            continue
        row = results[name]
        lines.append(
            f"{name:<17} {row['texts_per_s_b64']:>12,.0f} {row['texts_per_s_b64_encoded']:>16,.0f} "
            f"{row['ms_b1_p50']:>10.3f} {row['ms_b1_p95']:>10.3f}"
        )
    lines += [f"{name:<17} not timed: {why}" for name, why in results.get("unavailable", {}).items()]
    lines += [
        "",
        f"student / teacher: {results['ratio_b64']:.0f}× throughput at batch {setup['batch_size']}, "
        f"{results['ratio_b1']:.0f}× faster at batch 1 (ONNX: {results['ratio_b64_onnx']:.0f}×, "
        f"{results['ratio_b1_onnx']:.0f}×)",
    ]
    if "best_b64" in results:
        lines.append(
            f"best student path / teacher: {results['ratio_b64_best']:.0f}× at batch {setup['batch_size']} "
            f"({results['best_b64']}), {results['ratio_b1_best']:.0f}× at batch 1 ({results['best_b1']})"
        )
    if ceiling := results.get("student_matmul_bound"):
        reached = results["student"]["texts_per_s_b64_encoded"] / ceiling
        lines.append(
            f"student ceiling: {ceiling:,.0f} texts/s, its convolutions' multiply-adds as one matrix product per "
            f"batch; without tokenising the trained form reaches {reached:.0%} of that (the folded form does "
            "no such product)"
        )
    if "best_fp32_b64" in results:
        fastest = results["best_fp32_b64"]
        reached = f", {results['ceiling_reached_end_to_end']:.0%} of the ceiling" if ceiling else ""
        lines.append(
            f"fastest fp32 path ({fastest}): {results[fastest]['texts_per_s_b64']:,.0f} texts/s end to end{reached}; "
            f"tokenising takes {results['tokenising_share']:.0%} of its time"
        )
    return "\n".join(lines)


def write_json(results: dict[str, Any], path: str) -> None:
    atomic_write_text(path, json.dumps(results, indent=2))
