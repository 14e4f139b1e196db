"""Predict with a trained student alone: no teacher, no Lightning trainer, no training data.

from bert2textcnn.predictor import StudentPredictor
model = StudentPredictor.from_checkpoint("runs/joint_isolated/version_0/checkpoints/best.ckpt")
model.predict(["加微信领取免费会员", "今天地铁又晚点了"])  # [("spam", {...}), ("normal", {...})]
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from bert2textcnn.checkpoint import RECORD_KEY, read_checkpoint
from bert2textcnn.data.vocab import Vocab
from bert2textcnn.errors import UserError
from bert2textcnn.models.textcnn import TextCNN, student_from_hparams
from bert2textcnn.outputs import predictions


class StudentPredictor:
    def __init__(self, student: TextCNN, vocab: Vocab, labels: Sequence[str], max_length: int) -> None:
        self.student, self.vocab, self.labels, self.max_length = student.eval(), vocab, list(labels), max_length

    @classmethod
    def from_checkpoint(cls, path: str | Path) -> StudentPredictor:
        checkpoint = read_checkpoint(path)
        record = checkpoint[RECORD_KEY]
        state = {k.removeprefix("student."): v for k, v in checkpoint["state_dict"].items() if k.startswith("student.")}
        if not state:
            raise UserError(f"{path}: holds no student (a `teacher` scheme checkpoint?)")
        vocab = Vocab.from_dict(record["vocab"])
        student = student_from_hparams(len(vocab), len(record["labels"]), checkpoint["hyper_parameters"])
        student.load_state_dict(state)
        return cls(student, vocab, record["labels"], int(record["max_length"]))

    @torch.inference_mode()
    def logits(self, texts: Sequence[str]) -> torch.Tensor:
        """Encoded with this checkpoint's own vocabulary, tokenizer and max length."""
        return self.student(self.vocab.encode_batch(texts, self.max_length, self.student.min_length)).logits

    def probabilities(self, texts: Sequence[str]) -> torch.Tensor:
        return self.logits(texts).softmax(dim=-1)

    def predict(self, texts: Sequence[str]) -> list[tuple[str, dict[str, float]]]:
        return predictions(self.probabilities(texts), self.labels)
