"""The frozen teacher's logits on a list of texts, computed once and kept on disk.

A cache file is named by a fingerprint of the texts (in order), the teacher checkpoint's bytes and
the max length, so any change to them builds a new one; a file that does not read back as a tensor
of the expected shape is rebuilt, never trusted.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from pathlib import Path

import torch

from bert2textcnn.checkpoint import load_trained_teacher
from bert2textcnn.errors import UserError
from bert2textcnn.files import atomic_write
from bert2textcnn.models.protocol import logits_in_order

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
    if not checkpoint:
        raise UserError("--model.teacher_checkpoint is required by the offline scheme")
    if not Path(checkpoint).is_file():
        raise UserError(f"{checkpoint}: teacher checkpoint not found")
    path = cache_dir / f"teacher_logits_{fingerprint(texts, checkpoint, max_length)}.pt"
    if path.is_file():
        cached = _read_cache(path, (len(texts), len(labels)))
        if cached is not None:
            log.info("Reusing cached teacher logits %s", path)
            return cached
    log.info("Computing teacher logits over %d texts (cached to %s)", len(texts), path)
    logits = logits_in_order(load_trained_teacher(checkpoint, labels, max_length), texts, len(labels), batch_size)
    atomic_write(path, lambda tmp: torch.save(logits, tmp))
    return logits


def _read_cache(path: Path, shape: tuple[int, int]) -> torch.Tensor | None:
    """The cached logits, or None (with a warning) when the file is unreadable, holds anything but
    a tensor (it is never unpickled beyond tensors), or has the wrong shape: it is then rebuilt."""
    try:
        logits = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated, corrupt or planted files all end here
        log.warning("Cached teacher logits %s are unreadable (%s); recomputing them", path, type(err).__name__)
        return None
    if not isinstance(logits, torch.Tensor) or tuple(logits.shape) != shape:
        log.warning("Cached teacher logits %s do not match the data (expected shape %s); recomputing them", path, shape)
        return None
    return logits
