"""`joint_coupled` (方案3, "参数不隔离"): as `joint_isolated`, but the student's soft loss also
trains the teacher: the teacher minimises CE(t, y) + β·KD(s.detach(), t), so it learns how to
teach. The student's own update is unchanged. The source reports this as the best scheme. The
coupling acts in the joint epochs; the teacher-alone and tail phases are ``distill.phases``.
"""

import torch

from bert2textcnn.distill.hints import HintOptions
from bert2textcnn.distill.losses import kd_loss
from bert2textcnn.distill.options import JOINT_GROUPS, CouplingOptions, DistillOptions
from bert2textcnn.distill.phases import PhaseOptions
from bert2textcnn.distill.schemes.joint_isolated import JointIsolatedScheme
from bert2textcnn.option_groups import takes


@takes(*JOINT_GROUPS, PhaseOptions, HintOptions, CouplingOptions)
class JointCoupledScheme(JointIsolatedScheme):
    """As joint_isolated, but the teacher also minimises β·KD(s.detach(), t): it learns to teach."""

    name = "joint_coupled"

    def teacher_loss_terms(
        self, teacher_logits: torch.Tensor, detached_student_logits: torch.Tensor, labels: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        terms = super().teacher_loss_terms(teacher_logits, detached_student_logits, labels)
        kd = kd_loss(detached_student_logits, teacher_logits, self.options[DistillOptions].temperature)
        # A student still learning its labels does not pull the teacher: β follows the KD schedule.
        beta = self.options[CouplingOptions].beta * self.kd_factor
        return {**terms, "loss_kd_teacher": kd, "loss_teacher": terms["loss_teacher"] + beta * kd}
