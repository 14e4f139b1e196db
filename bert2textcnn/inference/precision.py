"""Lower-precision exports, kept only when they predict as the fp32 export does.

int8: ONNX Runtime's static quantisation (QDQ: int8 weights, uint8 activations calibrated on the
check texts) of the convolutions and matrix products. Measured on 2 CPU cores with AVX-512 VNNI,
dynamic quantisation ran a TextCNN 3× slower than fp32 (its ConvInteger kernels), static 2.6×
faster, so static it is.

bf16: ONNX Runtime's CPU provider has no bf16 convolutions, so bf16 is not an export; ``speed``
times PyTorch under bf16 autocast where the CPU computes bf16 natively (AVX-512 BF16 or AMX),
and says so where it does not.

The gate of a lower precision: the same label as fp32 on at least ``AGREEMENT_GATE`` of the check
texts, and, where they are labelled, a macro-F1 within ``MACRO_F1_GATE`` of fp32's.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from bert2textcnn.data.vocab import Vocab
from bert2textcnn.distill.metrics import ClassificationMetrics
from bert2textcnn.errors import UserError

Precision = Literal["fp32", "bf16", "int8"]
AGREEMENT_GATE = 0.995
MACRO_F1_GATE = 0.002
BF16_EXPORT = (
    "bf16 is not an export: ONNX Runtime's CPU provider has no bf16 convolutions. `speed` times the "
    "PyTorch student under bf16 where this CPU computes bf16 natively; --precision int8 is the "
    "export's lower precision"
)


def cpu_has_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX-512 BF16 or AMX), from its flags (Linux);
    oneDNN's own check also says yes where it only emulates bf16 on AVX-512, which is slower."""
    try:
        flags = Path("/proc/cpuinfo").read_text(encoding="utf-8")
    except OSError:
        return False
    return re.search(r"\b(avx512_bf16|amx_bf16)\b", flags) is not None


def quantize_int8(fp32: Path, int8: Path, encode: Callable[[Sequence[str]], dict[str, np.ndarray]],
                  texts: Sequence[str]) -> None:  # fmt: skip
    """Static int8 quantisation of ``fp32`` into ``int8``, calibrated on ``texts`` in length-sorted batches."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Batches(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter([encode([texts[i] for i in rows]) for rows in Vocab.length_sorted_rows(texts, 64)])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.batches, None)

    # The quantiser warns through the root logger ("consider pre-processing"), which would give the
    # root logger a handler for good and print every later log line twice: a handler for the call.
    quiet = logging.NullHandler()
    logging.getLogger().addHandler(quiet)
    try:
        quantize_static(str(fp32), str(int8), Batches(), quant_format=QuantFormat.QDQ,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        op_types_to_quantize=["Conv", "MatMul", "Gemm"])  # fmt: skip
    finally:
        logging.getLogger().removeHandler(quiet)


def macro_f1(probabilities: np.ndarray, targets: torch.Tensor, labels: Sequence[str]) -> float:
    metrics = ClassificationMetrics(labels)
    metrics.update(torch.from_numpy(probabilities).clamp_min(1e-12).log(), targets)
    return metrics.compute()["macro_f1"].item()


def precision_gate(
    precision: str,
    fp32: np.ndarray,
    lower: np.ndarray,
    labels: Sequence[str],
    targets: torch.Tensor | None,
) -> dict[str, float]:
    """The figures of a lower precision against fp32 on the check texts; raises if it misses a gate."""
    figures = {"label_agreement": float((fp32.argmax(1) == lower.argmax(1)).mean())}
    misses = []
    if figures["label_agreement"] < AGREEMENT_GATE:
        short = AGREEMENT_GATE - figures["label_agreement"]
        misses.append(f"the same label as fp32 on {figures['label_agreement']:.2%} of the check texts, "
                      f"{short:.2%} short of {AGREEMENT_GATE:.1%}")  # fmt: skip
    if targets is not None:
        figures["macro_f1_fp32"], figures["macro_f1"] = (
            macro_f1(fp32, targets, labels),
            macro_f1(lower, targets, labels),
        )
        lost = figures["macro_f1_fp32"] - figures["macro_f1"]
        if lost > MACRO_F1_GATE:
            misses.append(f"macro-F1 {figures['macro_f1']:.4f} against fp32's {figures['macro_f1_fp32']:.4f}, "
                          f"{lost - MACRO_F1_GATE:.4f} past the {MACRO_F1_GATE} allowed")  # fmt: skip
    if misses:
        raise UserError(f"{precision} export refused, nothing written: " + "; ".join(misses))
    return figures
