"""When a teacher is good enough to teach, and how fast the student's KD weight grows.

The yardstick is balanced accuracy (the mean of the per-class recalls): any constant guess —
"every text is normal" — scores exactly 1/C on it, whatever the class balance, so a teacher at
or near 1/C has learnt nothing worth distilling. A frozen teacher is checked once, on validation,
before training starts (``check_teacher``); a teacher that trains beside the student is watched
on the training batches it has not been updated on yet, and the student's KD waits until it
clears the bar (``KDSchedule``), then ramps in.
"""

from __future__ import annotations

from typing import Any

import torch

from bert2textcnn.distill.losses import UNLABELED
from bert2textcnn.errors import UserError


def balanced_accuracy(logits: torch.Tensor, labels: torch.Tensor, num_classes: int) -> float:
    """Mean per-class recall over the labelled rows; classes absent from ``labels`` are skipped."""
    correct, seen = class_counts(logits, labels, num_classes)
    present = seen > 0
    return float((correct[present] / seen[present]).mean()) if present.any() else 0.0


def class_counts(logits: torch.Tensor, labels: torch.Tensor, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(rows predicted right, rows) per true class, over the labelled rows."""
    labelled = labels != UNLABELED
    truth, hit = labels[labelled], (logits.argmax(-1) == labels)[labelled].float()
    seen = torch.bincount(truth, minlength=num_classes).float()
    correct = torch.zeros(num_classes).index_add_(0, truth.cpu(), hit.cpu())
    return correct, seen.cpu()


def bar(num_classes: int, margin: float) -> float:
    """The balanced accuracy a teacher must exceed: a constant guess's 1/C, plus ``margin``."""
    return 1 / num_classes + margin


def check_teacher(logits: torch.Tensor, labels: torch.Tensor, num_classes: int, margin: float, source: str) -> float:
    """The frozen teacher's balanced accuracy on validation; stops the run when it does not clear the bar."""
    score = balanced_accuracy(logits, labels, num_classes)
    if score <= bar(num_classes, margin):
        predicted = torch.bincount(logits.argmax(-1), minlength=num_classes).tolist()
        raise UserError(
            f"{source}: the teacher is no better than a constant guess on validation (balanced accuracy "
            f"{score:.3f}, a constant guess scores {1 / num_classes:.3f}; it predicts {predicted} rows per class), "
            "so there is nothing to distil. Train it longer or faster (more --trainer.max_epochs, a higher "
            "--model.teacher_lr: 1e-4 for a few hundred labelled rows), or, to distil it anyway, "
            "--model.teacher_gate null."
        )
    return score


class KDSchedule:
    """The factor (0 … 1) on the student's KD at each training batch.

    With a gate, a teacher that trains beside the student is watched: per class, the share of
    labelled rows it gets right, decayed by ``decay`` per batch so it follows the teacher's recent
    state. The factor is 0 until that balanced accuracy exceeds the bar (the gate then stays open),
    then rises linearly to 1 over ``warmup`` × the run's batches (at once when ``warmup`` is 0).
    Without a gate the ramp starts at the first batch.
    """

    def __init__(self, num_classes: int, warmup: float, gate: float | None, decay: float = 0.95) -> None:
        if not 0 <= warmup <= 1:
            raise UserError(f"--model.kd_warmup is a share of the run's batches, in [0, 1]; got {warmup}")
        if gate is not None and not 0 <= gate < 1 - 1 / num_classes:
            raise UserError(f"--model.teacher_gate must lie in [0, {1 - 1 / num_classes:.2f}), got {gate}")
        self.num_classes, self.warmup, self.gate, self.decay = num_classes, warmup, gate, decay
        self.correct = torch.zeros(num_classes)
        self.seen = torch.zeros(num_classes)
        self.opened_at: int | None = None if gate is not None else 0  # the batch the gate opened at

    @property
    def teacher_score(self) -> float:
        """The watched teacher's recent balanced accuracy (0 until every class has been seen)."""
        if not bool((self.seen > 0).all()):
            return 0.0
        return float((self.correct / self.seen).mean())

    def observe(self, teacher_logits: torch.Tensor, labels: torch.Tensor, batch: int) -> None:
        """Count a batch the teacher has not been updated on yet; open the gate when it clears the bar."""
        if self.opened_at is not None:
            return
        correct, seen = class_counts(teacher_logits.detach(), labels, self.num_classes)
        self.correct = self.decay * self.correct + correct
        self.seen = self.decay * self.seen + seen
        if self.teacher_score > bar(self.num_classes, self.gate):
            self.opened_at = batch

    def factor(self, batch: int, run_batches: int | None) -> float:
        if self.opened_at is None:
            return 0.0
        if self.warmup == 0:
            return 1.0
        if run_batches is None:
            raise UserError("--model.kd_warmup needs the run's length; it applies during fit only")
        return min(1.0, (batch - self.opened_at + 1) / max(1.0, self.warmup * run_batches))

    def state_dict(self) -> dict[str, Any]:
        return {"correct": self.correct, "seen": self.seen, "opened_at": self.opened_at}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.correct, self.seen, self.opened_at = state["correct"], state["seen"], state["opened_at"]
