"""Export a trained student for serving: ``student.onnx`` (dynamic batch and length, outputs
probabilities) beside ``student.json`` (the student's description — kind, vocabulary or tokenizer,
max length — and the label map). Any student kind: its own ``encode`` names the graph's inputs.

    python -m bert2textcnn export --ckpt_path runs/…/best.ckpt --output exports/student

The export is checked before it is kept: ONNX Runtime and PyTorch must agree on real texts to
``PARITY_TOLERANCE`` in every probability, else nothing is written. The graph is the student's
fastest exact form (``StudentPredictor.serving``: a TextCNN's convolutions folded into its
embedding), checked against the student as trained; an int8 export quantises the trained form,
whose convolutions are where int8 pays.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from bert2textcnn.errors import UserError
from bert2textcnn.inference.precision import BF16_EXPORT, Precision, precision_gate, quantize_int8
from bert2textcnn.inference.predictor import StudentPredictor
from bert2textcnn.inference.serving import EXPORT_FORMAT, METADATA_FILE, MODEL_FILE, OnnxClassifier
from bert2textcnn.models import Classifier
from bert2textcnn.models.protocol import logits_in_order

log = logging.getLogger(__name__)
PARITY_TOLERANCE = 1e-5
NOT_EXPORTED = {
    "fastbert": "FastBERT is not exported to ONNX: its early exit is a loop whose batch shrinks layer by layer, "
    "which one static graph cannot hold. Serve it with StudentPredictor or `predict --model.speed S` "
    "(README, FastBERT); a teacher or small-BERT checkpoint exports as usual.",
}


class _Probabilities(nn.Module):
    """The served graph: the student's encoded inputs, in ``names`` order, in; probabilities out."""

    def __init__(self, student: Classifier, names: Sequence[str]) -> None:
        super().__init__()
        self.student, self.names = student, list(names)

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.student(**dict(zip(self.names, inputs, strict=True))).logits.softmax(dim=-1)


def export_student(
    ckpt_path: str | Path,
    output: str | Path,
    check_texts: Sequence[str],
    precision: Precision = "fp32",
    check_labels: Sequence[str] | None = None,
) -> dict[str, float]:
    """Write the export folder and return the parity figures; raise if the runtimes disagree. An
    int8 export is the fp32 one quantised, kept only when it passes ``precision_gate`` on the check
    texts (macro-F1 too when ``check_labels`` gives their labels)."""
    if not check_texts:
        raise UserError("export needs at least one text for the parity check")
    if precision == "bf16":
        raise UserError(BF16_EXPORT)
    predictor = StudentPredictor.from_checkpoint(ckpt_path)
    student, output = predictor.student.eval(), Path(output)
    if not getattr(student, "exportable", True):
        raise UserError(NOT_EXPORTED.get(student.kind, f"a {student.kind} student is not exported to ONNX"))
    output.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=output, prefix=".export-") as tmp:
        staging = Path(tmp)
        _write_onnx(student if precision == "int8" else predictor.serving, check_texts, staging / MODEL_FILE)
        metadata = {
            "format": EXPORT_FORMAT,
            "student": student.describe(),
            "labels": predictor.labels,
            "precision": precision,
            "source_checkpoint": str(ckpt_path),
        }
        (staging / METADATA_FILE).write_text(json.dumps(metadata, ensure_ascii=False), encoding="utf-8")
        fp32 = OnnxClassifier(staging)
        served = fp32.probabilities(check_texts)
        reference = logits_in_order(student, check_texts, len(predictor.labels)).softmax(-1).numpy()
        max_diff = float(abs(served - reference).max())
        if max_diff > PARITY_TOLERANCE:
            raise UserError(f"ONNX and PyTorch disagree by {max_diff:.2e} (> {PARITY_TOLERANCE}); nothing exported")
        figures = {"max_abs_diff": max_diff, "texts": len(check_texts)}
        if precision == "int8":
            try:
                quantize_int8(staging / MODEL_FILE, staging / "int8.onnx", fp32.encode, check_texts)
            except Exception as err:  # the quantiser raises many kinds, on graphs it cannot handle
                raise UserError(f"int8 quantisation of a {student.kind} student failed: {err}") from None
            os.replace(staging / "int8.onnx", staging / MODEL_FILE)
            lower = OnnxClassifier(staging).probabilities(check_texts)
            targets = None if check_labels is None else torch.tensor([predictor.labels.index(y) for y in check_labels])
            figures |= precision_gate(precision, served, lower, predictor.labels, targets)
        for name in (MODEL_FILE, METADATA_FILE):
            os.replace(staging / name, output / name)  # same filesystem: each file appears whole
    gate = f"; int8 gives fp32's label on {figures['label_agreement']:.2%}" if precision == "int8" else ""
    log.info("Exported %s to %s (%s; parity of the fp32 graph on %d texts: max |Δp| = %.1e%s)", ckpt_path, output,
             precision, len(check_texts), max_diff, gate)  # fmt: skip
    return figures


def _write_onnx(student: Classifier, texts: Sequence[str], path: Path) -> None:
    """Traced on two real texts; every input's batch and length axes stay dynamic, from the
    shortest input the student's encoder produces (an empty text's)."""
    example = student.encode(list(texts[:2]) * (2 if len(texts) == 1 else 1))
    shortest = min(value.size(1) for value in student.encode([""]).values())
    batch, length = torch.export.Dim("batch"), torch.export.Dim("length", min=max(2, shortest))
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)  # optional torchvision ops it cannot find
    torch.onnx.export(
        _Probabilities(student, list(example)).eval(),
        tuple(example.values()),
        str(path),
        input_names=list(example),
        output_names=["probabilities"],
        dynamic_shapes=(tuple({0: batch, 1: length} for _ in example),),  # one entry: forward's *inputs
        dynamo=True,
        external_data=False,  # one self-contained file (a small BERT too is far below protobuf's 2 GB)
        verbose=False,
    )
