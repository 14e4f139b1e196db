"""The frozen teacher's logits (and, for hints, its sentence vectors) on a list of texts, computed
once and kept on disk.

A cache file is named by a fingerprint of the texts (in order), the teacher checkpoint's bytes and
the max length, so any change to them builds a new one; a file that does not read back as a tensor
of the expected shape is rebuilt, never trusted.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from bert2textcnn.checkpoint import load_trained_teacher
from bert2textcnn.errors import UserError
from bert2textcnn.files import atomic_write
from bert2textcnn.models.bert import masked_mean
from bert2textcnn.models.protocol import ModelOutput, outputs_in_order

log = logging.getLogger(__name__)
CACHE_FORMAT = 1


def fingerprint(texts: Sequence[str], checkpoint: str, max_length: int) -> str:
    digest = hashlib.sha256(f"format={CACHE_FORMAT};max_length={max_length};n={len(texts)}\n".encode())
    for text in texts:
        digest.update(text.encode())
        digest.update(b"\x00")
    with open(checkpoint, "rb") as file:
        for chunk in iter(lambda: file.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()[:24]


def teacher_logits_cache(
    texts: Sequence[str],
    checkpoint: str | None,
    labels: Sequence[str],
    max_length: int,
    cache_dir: Path,
    batch_size: int = 64,
) -> torch.Tensor:
    """The teacher's logits for ``texts`` in order: from the cache, or computed once and cached."""
    return _cached("logits", texts, checkpoint, labels, max_length, cache_dir, lambda out, _: out.logits, batch_size)


def teacher_hints_cache(
    texts: Sequence[str],
    checkpoint: str | None,
    labels: Sequence[str],
    max_length: int,
    cache_dir: Path,
    layer: int,
    batch_size: int = 64,
) -> torch.Tensor:
    """The teacher's sentence-level hint vectors (layer ``layer``, mask-aware mean) for ``texts``."""

    def hint(output: ModelOutput, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        return masked_mean(output.hidden_states[layer], inputs["attention_mask"])

    return _cached(f"hints_layer{layer}", texts, checkpoint, labels, max_length, cache_dir, hint, batch_size)


def _cached(
    what: str,
    texts: Sequence[str],
    checkpoint: str | None,
    labels: Sequence[str],
    max_length: int,
    cache_dir: Path,
    pick: Callable[[ModelOutput, dict[str, torch.Tensor]], torch.Tensor],
    batch_size: int,
) -> torch.Tensor:
    if not checkpoint:
        raise UserError("--model.teacher_checkpoint is required by the offline scheme")
    if not Path(checkpoint).is_file():
        raise UserError(f"{checkpoint}: teacher checkpoint not found")
    path = cache_dir / f"teacher_{what}_{fingerprint(texts, checkpoint, max_length)}.pt"
    if path.is_file():
        cached = _read_cache(path, len(texts), len(labels) if what == "logits" else None)
        if cached is not None:
            log.info("Reusing cached teacher %s %s", what, path)
            return cached
    log.info("Computing teacher %s over %d texts (cached to %s)", what, len(texts), path)
    teacher = load_trained_teacher(checkpoint, labels, max_length)
    values = outputs_in_order(teacher, texts, pick, batch_size)
    values = values if values is not None else torch.empty(0, len(labels))
    atomic_write(path, lambda tmp: torch.save(values, tmp))
    return values


def _read_cache(path: Path, rows: int, width: int | None) -> torch.Tensor | None:
    """The cached values, or None (with a warning) when the file is unreadable, holds anything but
    a tensor (it is never unpickled beyond tensors), or has the wrong shape: it is then rebuilt."""
    try:
        values = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated, corrupt or planted files all end here
        log.warning("Cached teacher values %s are unreadable (%s); recomputing them", path, type(err).__name__)
        return None
    if (
        not isinstance(values, torch.Tensor)
        or values.ndim != 2
        or values.shape[0] != rows
        or (width is not None and values.shape[1] != width)
    ):
        log.warning("Cached teacher values %s do not match the data (expected %d rows); recomputing them", path, rows)
        return None
    return values
