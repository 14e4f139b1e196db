"""Loss terms, as pure functions of logits.

KD(s, t) = T² · KL(softmax(t/T) ‖ softmax(s/T))  (Hinton et al. 2015). The T² keeps the gradient
scale of the soft term independent of T, so α means the same thing at every temperature.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Batch-mean KL from the teacher's softened distribution to the student's, times T².

    Gradients flow into whichever argument is not detached: the student's (the usual case), the
    teacher's (the coupled scheme), or both (the multi-task scheme).
    """
    return (
        F.kl_div(
            F.log_softmax(student_logits / temperature, dim=-1),
            F.log_softmax(teacher_logits / temperature, dim=-1),
            reduction="batchmean",
            log_target=True,
        )
        * temperature**2
    )


def student_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor,
    alpha: float,
    temperature: float,
) -> dict[str, torch.Tensor]:
    """L_s = α·KD(s, t) + (1 − α)·CE(s, y), returned with its named parts for logging."""
    kd = kd_loss(student_logits, teacher_logits, temperature)
    ce = F.cross_entropy(student_logits, labels)
    return {"loss_kd": kd, "loss_ce_student": ce, "loss_student": alpha * kd + (1 - alpha) * ce}
