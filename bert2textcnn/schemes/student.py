"""`student`: the TextCNN on the labels alone — the baseline every distilled student must beat."""

from typing import Any

import torch
import torch.nn.functional as F

from bert2textcnn.schemes.base import DistillationModule


class StudentScheme(DistillationModule):
    """Plain TextCNN trained on labels only (CE); the baseline. Teacher options are unused."""

    name = "student"

    def loss_terms(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        ce = F.cross_entropy(self.student_logits(batch), batch["label"])
        return {"loss_ce_student": ce, "loss": ce}
