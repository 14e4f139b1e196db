"""`offline` (方案1): distil from an already fine-tuned, frozen teacher through cached logits.

The teacher's logits over the training set are computed once and saved under ``cache_dir``,
keyed by a fingerprint of the training texts, the teacher checkpoint's bytes and the max length;
later runs with the same inputs skip the teacher entirely.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from bert2textcnn.checkpoint import load_trained_teacher
from bert2textcnn.distill.losses import student_loss
from bert2textcnn.distill.schemes.base import DistillationModule
from bert2textcnn.errors import UserError
from bert2textcnn.files import atomic_write
from bert2textcnn.models.protocol import logits_in_order

log = logging.getLogger(__name__)
CACHE_FORMAT = 1


class OfflineScheme(DistillationModule):
    """Student learns α·KD + (1−α)·CE from a frozen fine-tuned teacher's cached logits."""

    name = "offline"

    def __init__(
        self,
        teacher_checkpoint: str | None = None,
        cache_dir: str = "runs/logits_cache",
        trust_labels: bool = False,
        **kwargs: Any,
    ) -> None:
        """
        Args:
            teacher_checkpoint: A bert2textcnn checkpoint holding a fine-tuned teacher (from
                ``--scheme teacher`` or a joint scheme). Required to train.
            cache_dir: Where teacher logits are cached between runs.
            trust_labels: As in every scheme, but off by default here: the rows where a fully
                trained teacher disagrees with the label are noisy or hard ones, where its view
                carries the most (on COLD, on 5.5 % of the training rows: dropping them cost
                most of KD's gain; on sms_spam_zh it cost 0.0035 macro-F1; README, Results).
        """
        super().__init__(trust_labels=trust_labels, **kwargs)
        # Plain attributes on the CPU, not buffers: DDP would broadcast a buffer at every step.
        self.cached_logits = torch.empty(0)
        self.cached_rows: dict[str, int] = {}  # text → its row in cached_logits

    def setup(self, stage: str) -> None:
        super().setup(stage)
        if stage == "fit":
            data = self.trainer.datamodule
            val_texts, val_labels = data.texts_and_labels("val")
            where = (self.hparams.teacher_checkpoint, self.labels, self.max_length, Path(self.hparams.cache_dir))
            # Several processes (DDP): the first builds the cache, the others wait, then read it.
            texts = data.train_texts()
            if self.trainer.is_global_zero:
                self.check_frozen_teacher(teacher_logits_cache(val_texts, *where), val_labels, where[0])
                self.cached_logits = teacher_logits_cache(texts, *where)
            self.trainer.strategy.barrier("teacher logits cache")
            if not self.trainer.is_global_zero:
                self.cached_logits = teacher_logits_cache(texts, *where)
            self.cached_rows = {text: row for row, text in enumerate(texts)}

    def cached_teacher_logits(self, batch: dict[str, Any]) -> torch.Tensor:
        """The cached logits of the batch's texts, looked up by text: whatever order the data
        module gives its rows in, a row gets its own text's logits (a text the cache lacks is an
        error, never another row's logits)."""
        missing = [text for text in batch["text"] if text not in self.cached_rows]
        if missing:
            raise UserError(f"{len(missing)} training texts have no cached teacher logits, e.g. {missing[0][:40]!r}")
        rows = torch.tensor([self.cached_rows[text] for text in batch["text"]])
        return self.cached_logits[rows].to(batch["label"].device)

    def loss_terms(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        teacher_logits = self.cached_teacher_logits(batch)
        terms = student_loss(self.student_logits(batch), teacher_logits, batch["label"], self.student_targets)
        return {**terms, "loss": terms["loss_student"]}


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
