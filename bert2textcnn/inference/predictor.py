"""Predict with a trained student alone: no teacher, no Lightning trainer, no training data.

from bert2textcnn.inference.predictor import StudentPredictor
model = StudentPredictor.from_checkpoint("runs/joint_isolated/version_0/checkpoints/best.ckpt")
model.predict(["加微信领取免费会员", "今天地铁又晚点了"])  # [("spam", {...}), ("normal", {...})]

Any student kind (``bert2textcnn.models``): the checkpoint describes the model and its tokenizer.
A TextCNN predicts through its folded form (``models/folded_textcnn.py``): the same outputs, 3× faster.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from bert2textcnn.checkpoint import RECORD_KEY, read_checkpoint, student_description, weights_of
from bert2textcnn.errors import UserError
from bert2textcnn.inference.labelled import predictions
from bert2textcnn.models import Classifier, classifier_from_description
from bert2textcnn.models.folded_textcnn import fold
from bert2textcnn.models.protocol import logits_in_order


class StudentPredictor:
    def __init__(self, student: Classifier, labels: Sequence[str], batch_size: int = 256) -> None:
        """``student`` as trained; it predicts through ``fold(student)``, a snapshot of its weights now."""
        self.student, self.labels, self.batch_size = student.eval(), list(labels), batch_size
        self.serving = fold(self.student)

    @classmethod
    def from_checkpoint(cls, path: str | Path) -> StudentPredictor:
        checkpoint = read_checkpoint(path)
        weights = weights_of(checkpoint, "student")
        if not weights:
            raise UserError(f"{path}: holds no student (a `teacher` scheme checkpoint?)")
        labels = checkpoint[RECORD_KEY]["labels"]
        student = classifier_from_description(student_description(checkpoint), len(labels))
        student.load_state_dict(weights)
        return cls(student, labels)

    def logits(self, texts: Sequence[str]) -> torch.Tensor:
        """In input order, encoded by the student's own tokenizer."""
        return logits_in_order(self.serving, texts, len(self.labels), self.batch_size)

    def probabilities(self, texts: Sequence[str]) -> torch.Tensor:
        return self.logits(texts).softmax(dim=-1)

    def predict(self, texts: Sequence[str]) -> list[tuple[str, dict[str, float]]]:
        return predictions(self.probabilities(texts), self.labels)
