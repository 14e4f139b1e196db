"""Class probabilities → labelled predictions. Needs no torch: the PyTorch predictor and the
ONNX classifier share it (a torch tensor and a numpy array both offer argmax and tolist)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def labelled(probs: Any, labels: Sequence[str]) -> list[tuple[str, list[float]]]:
    """(most probable label, probabilities) per row of a (batch, classes) array."""
    return [(labels[best], row) for best, row in zip(probs.argmax(-1).tolist(), probs.tolist(), strict=True)]


def predictions(probs: Any, labels: Sequence[str]) -> list[tuple[str, dict[str, float]]]:
    """(most probable label, {label: probability}) per row."""
    return [(label, dict(zip(labels, row, strict=True))) for label, row in labelled(probs, labels)]
