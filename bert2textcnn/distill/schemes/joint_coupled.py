"""`joint_coupled` (方案3, "参数不隔离"): as `joint_isolated`, but the student's soft loss also
trains the teacher: the teacher minimises CE(t, y) + β·KD(s.detach(), t), so it learns how to
teach. The student's own update is unchanged. The source reports this as the best scheme.
"""

from typing import Any

import torch

from bert2textcnn.distill.losses import kd_loss
from bert2textcnn.distill.schemes.joint_isolated import JointIsolatedScheme


class JointCoupledScheme(JointIsolatedScheme):
    """As joint_isolated, but the teacher also minimises β·KD(s.detach(), t): it learns to teach."""

    name = "joint_coupled"

    def __init__(self, beta: float = 1.0, **kwargs: Any) -> None:
        """
        Args:
            beta: Weight β of the student's soft-label loss in the teacher's objective. It follows
                the same schedule as the student's KD (``teacher_gate``, ``kd_warmup``): 0 until
                the gate opens, so an untrained student does not pull the teacher either.
        """
        super().__init__(**kwargs)

    def teacher_loss_terms(
        self, teacher_logits: torch.Tensor, detached_student_logits: torch.Tensor, labels: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        terms = super().teacher_loss_terms(teacher_logits, detached_student_logits, labels)
        kd = kd_loss(detached_student_logits, teacher_logits, self.hparams.temperature)
        beta = self.hparams.beta * self.kd_factor  # a student still learning its labels does not pull the teacher
        return {**terms, "loss_kd_teacher": kd, "loss_teacher": terms["loss_teacher"] + beta * kd}
