"""`joint_isolated` (方案2): teacher and student train together, each batch, with two optimizers.

In the joint epochs the teacher learns from the labels only; the student learns
α·KD(s, t.detach()) + (1−α)·CE(s, y). Detaching t is the isolation: nothing the student does moves
the teacher, in any phase. The run around those epochs (the teacher alone first, the student alone
against the finished teacher last) is ``distill.phases``; the student's KD waits for the teacher to
beat a constant guess (``--model.teacher_gate``) and may ramp in (``--model.kd_warmup``).
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
class JointIsolatedScheme(JointScheme):
    """Teacher (CE only) and student (α·KD + (1−α)·CE on detached teacher logits), trained together."""

    name = "joint_isolated"
    separate_optimizers = True

    def teacher_loss_terms(
        self, teacher_logits: torch.Tensor, detached_student_logits: torch.Tensor, labels: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """The teacher's loss, ``loss_teacher``: CE on the labelled rows; it sees the student's logits
        but never moves them."""
        ce = labelled_ce(teacher_logits, labels)
        return {"loss_ce_teacher": ce, "loss_teacher": ce}

    def loss_terms(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        labels = batch["label"]
        teacher_logits = self.teacher_logits(batch)
        student_logits = self.student_logits(batch)
        gate_terms = self.watch_teacher(teacher_logits, labels)  # before either loss reads the KD factor
        teacher_terms = self.teacher_loss_terms(teacher_logits, student_logits.detach(), labels)
        student_terms = self.student_loss_terms(student_logits, teacher_logits.detach(), batch)
        return {**gate_terms, **teacher_terms, **student_terms}

    def student_loss_terms(
        self, student_logits: torch.Tensor, detached_teacher_logits: torch.Tensor, batch: dict[str, Any]
    ) -> dict[str, torch.Tensor]:
        """The student's loss, ``loss_student``: α·KD + (1−α)·CE against the detached teacher."""
        return student_loss(student_logits, detached_teacher_logits, batch["label"], self.student_targets)
