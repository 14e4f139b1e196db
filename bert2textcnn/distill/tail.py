"""The tail of a joint run: the finished teacher's logits, cached once, teach copies of the student
under several KD settings side by side, and validation picks the one that becomes the student.

The student is cheap next to the teacher (a TextCNN epoch over COLD's training texts and three
augmented copies takes about a minute once the logits are cached), so trying two KD settings costs
little, and no single setting served both data sets measured: α 1, T 2 pays where the teacher
clearly leads and the classes are balanced; on an imbalanced set with a lukewarm teacher it costs
the rare class recall (README, "Results"). The choice reads the validation rows only.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from bert2textcnn.distill.losses import StudentTargets, student_loss
from bert2textcnn.distill.metrics import ClassificationMetrics
from bert2textcnn.models.protocol import logits_in_order

log = logging.getLogger(__name__)


def setting_name(setting: dict[str, float]) -> str:
    return f"alpha={setting['alpha']:g}, T={setting['temperature']:g}"


class StudentTail(nn.Module):
    """Copies of the student, one per KD setting (``candidates``, checkpointed with the module), the
    frozen teacher's cached logits, and which copy leads on validation."""

    def __init__(self, student: nn.Module, settings: Sequence[dict[str, float]]) -> None:
        super().__init__()
        self.settings = [dict(setting) for setting in settings]
        self.candidates = nn.ModuleList(copy.deepcopy(student) for _ in self.settings)
        # Plain tensors, not buffers: filled when the tail starts, saved by ``state`` (a buffer
        # of changing shape would not load into a module built before the tail).
        self.train_logits = torch.empty(0)
        self.val_logits = torch.empty(0)
        self.choice: int | None = None
        self.scores: list[float] = []

    @property
    def started(self) -> bool:
        return self.train_logits.numel() > 0

    @torch.no_grad()
    def start(self, student: nn.Module, teacher: Any, train_texts: list[str], val_texts: list[str],
              num_classes: int, batch_size: int) -> None:  # fmt: skip
        """Every copy starts from the student as the joint epochs left it; the teacher scores each
        training text and transfer row, and the validation texts, once."""
        for candidate in self.candidates:
            candidate.load_state_dict(student.state_dict())
        teacher.eval()
        log.info("Tail: the finished teacher scores %d training texts and %d validation texts, once",
                 len(train_texts), len(val_texts))  # fmt: skip
        self.train_logits = logits_in_order(teacher, train_texts, num_classes, batch_size)
        self.val_logits = logits_in_order(teacher, val_texts, num_classes, batch_size)

    def teacher_logits(self, batch: dict[str, Any], training: bool) -> torch.Tensor:
        """The cached teacher logits of the batch's rows (``index``: the row in its split)."""
        cached = self.train_logits if training else self.val_logits
        return cached[batch["index"].cpu()].to(batch["label"].device)

    def loss_terms(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """``loss_tail<i>`` for each copy: α·KD + (1−α)·CE against the finished teacher at its own
        α and T, every row distilled (a finished teacher's disagreements with the labels are what it
        has to teach, as in ``offline``)."""
        teacher_logits = self.teacher_logits(batch, training=True)
        terms: dict[str, torch.Tensor] = {}
        for i, (candidate, setting) in enumerate(zip(self.candidates, self.settings, strict=True)):
            targets = StudentTargets(setting["alpha"], setting["temperature"], trust_labels=False)
            logits = candidate(**batch["student_inputs"]).logits
            terms[f"loss_tail{i}"] = student_loss(logits, teacher_logits, batch["label"], targets)["loss_student"]
        return terms

    @torch.no_grad()
    def choose(self, student: nn.Module, texts: list[str], labels: torch.Tensor, names: list[str],
               batch_size: int) -> dict[str, float]:  # fmt: skip
        """Score every copy on the validation rows; the best (the first on a tie) becomes ``student``.
        A single copy needs no scoring."""
        if len(self.candidates) == 1:
            self.choice = 0
            student.load_state_dict(self.candidates[0].state_dict())
            return {"val/tail_choice": 0}
        self.scores = []
        for candidate in self.candidates:
            training = candidate.training  # scored without dropout, then left as it was
            metrics = ClassificationMetrics(names, synchronised=False)
            metrics.update(logits_in_order(candidate.eval(), texts, len(names), batch_size), labels)
            candidate.train(training)
            self.scores.append(float(metrics.compute()["macro_f1"]))
        self.choice = max(range(len(self.scores)), key=lambda i: (self.scores[i], -i))
        student.load_state_dict(self.candidates[self.choice].state_dict())
        log.info(
            "Tail: validation macro-F1 %s → the student learns with %s",
            ", ".join(f"{setting_name(s)}: {score:.4f}" for s, score in zip(self.settings, self.scores, strict=True)),
            setting_name(self.settings[self.choice]),
        )
        scores = {f"val/tail{i}_macro_f1": score for i, score in enumerate(self.scores)}
        return scores | {"val/tail_choice": self.choice}

    def state(self) -> dict[str, Any]:
        """What a checkpoint keeps besides the copies' weights; ``chosen`` says it in words."""
        chosen = self.settings[self.choice] if self.choice is not None else None
        return {"train_logits": self.train_logits, "val_logits": self.val_logits, "choice": self.choice,
                "chosen": chosen, "scores": self.scores, "settings": self.settings}  # fmt: skip

    def load_state(self, state: dict[str, Any]) -> None:
        self.train_logits, self.val_logits = state["train_logits"], state["val_logits"]
        self.choice, self.scores = state["choice"], list(state["scores"])
