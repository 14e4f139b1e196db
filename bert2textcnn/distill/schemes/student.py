"""`student`: the TextCNN on the labels alone — the baseline every distilled student must beat."""

from typing import Any

import torch

from bert2textcnn.distill.losses import labelled_ce
from bert2textcnn.distill.options import STUDENT_GROUPS
from bert2textcnn.distill.schemes.base import DistillationModule
from bert2textcnn.option_groups import takes


@takes(*STUDENT_GROUPS)
class StudentScheme(DistillationModule):
    """Plain student trained on labels only (CE); the baseline."""

    name = "student"
    distils = False

    def loss_terms(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        ce = labelled_ce(self.student_logits(batch), batch["label"])
        return {"loss_ce_student": ce, "loss": ce}
