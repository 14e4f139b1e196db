"""`multitask` (方案4): teacher and student as one multi-task model with one summed loss,
CE(t, y) + α·KD(s, t) + (1−α)·CE(s, y), nothing detached, one backward and one optimizer step
(one AdamW with a parameter group per model, so each keeps its learning rate).

The KD term therefore also pulls the teacher towards the student. The source reports the
TextCNN degrading under this scheme; it is reproduced as described, not corrected. The summed
loss is the joint epochs' batch; the teacher-alone and tail phases are ``distill.phases``.
"""

from typing import Any

import torch

from bert2textcnn.distill.hints import HintOptions
from bert2textcnn.distill.losses import labelled_ce, student_loss
from bert2textcnn.distill.options import JOINT_GROUPS
from bert2textcnn.distill.phases import PhaseOptions
from bert2textcnn.distill.schemes.joint import JointScheme
from bert2textcnn.option_groups import takes


@takes(*JOINT_GROUPS, PhaseOptions, HintOptions)
class MultitaskScheme(JointScheme):
    """One summed loss CE(t) + α·KD(s, t) + (1−α)·CE(s), nothing detached, one optimizer step."""

    name = "multitask"
    joint_optimizers = (("student", "teacher"),)

    def loss_terms(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        labels = batch["label"]
        teacher_logits = self.teacher_logits(batch)
        ce_teacher = labelled_ce(teacher_logits, labels)
        gate_terms = self.watch_teacher(teacher_logits, labels)
        terms = student_loss(self.student_logits(batch), teacher_logits, labels, self.student_targets)
        return {"loss_ce_teacher": ce_teacher, **gate_terms, **terms, "loss": ce_teacher + terms["loss_student"]}
