"""`teacher`: fine-tune the BERT teacher alone; its checkpoint feeds the `offline` scheme."""

from typing import Any

import torch

from bert2textcnn.distill.losses import labelled_ce
from bert2textcnn.distill.schemes.base import DistillationModule


class TeacherScheme(DistillationModule):
    """Fine-tune the BERT teacher on labels only (CE); its checkpoint feeds `offline`."""

    name = "teacher"
    has_student = False
    distils = False
    has_teacher = True
    selects_on = "teacher"

    def loss_terms(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        ce = labelled_ce(self.teacher_logits(batch), batch["label"])
        return {"loss_teacher": ce, "loss": ce}
