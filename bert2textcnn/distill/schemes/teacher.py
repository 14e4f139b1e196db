"""`teacher`: fine-tune the BERT teacher alone; its checkpoint feeds the `offline` scheme."""

from typing import Any

import lightning as L
import torch

from bert2textcnn.distill.losses import labelled_ce
from bert2textcnn.distill.options import (
    EvaluationOptions,
    OptimizationOptions,
    PretrainedOptions,
    TeacherTrainingOptions,
)
from bert2textcnn.distill.route import AnchorCheckpoints, AnchorOptions
from bert2textcnn.distill.schemes.base import DistillationModule
from bert2textcnn.distill.teachers import JointTeacher, TeacherSource
from bert2textcnn.option_groups import takes


@takes(PretrainedOptions, TeacherTrainingOptions, OptimizationOptions, EvaluationOptions, AnchorOptions)
class TeacherScheme(DistillationModule):
    """Fine-tune the BERT teacher on labels only (CE); its checkpoint feeds `offline`."""

    name = "teacher"
    distils = False
    selects_on = "teacher"

    def pick_teacher_source(self) -> TeacherSource:
        return JointTeacher()

    def configure_callbacks(self) -> list[L.Callback]:
        """With ``--model.save_anchors N``: checkpoints along the run, the route ``rco`` follows."""
        anchors = self.options[AnchorOptions]
        return [AnchorCheckpoints(anchors.save_anchors, anchors.anchor_dir)] if anchors.save_anchors else []

    def loss_terms(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        ce = labelled_ce(self.teacher_logits(batch), batch["label"])
        return {"loss_teacher": ce, "loss": ce}
