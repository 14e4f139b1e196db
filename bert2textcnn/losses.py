"""Loss terms, as pure functions of logits.

KD(s, t) = T² · KL(softmax(t/T) ‖ softmax(s/T))  (Hinton et al. 2015). The T² keeps the gradient
scale of the soft term independent of T, so α means the same thing at every temperature.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Batch-mean KL from the teacher's softened distribution to the student's, times T².

    Gradients flow into whichever argument is not detached: the student's (the usual case), the
    teacher's (the coupled scheme), or both (the multi-task scheme).
    """
    return kd_to_distribution(student_logits, F.softmax(teacher_logits / temperature, dim=-1), temperature)


def student_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor,
    alpha: float,
    temperature: float,
) -> dict[str, torch.Tensor]:
    """L_s = α·KD(s, t) + (1 − α)·CE(s, y), returned with its named parts for logging."""
    return student_objective(kd_loss(student_logits, teacher_logits, temperature), student_logits, labels, alpha)


def student_objective(
    kd: torch.Tensor, student_logits: torch.Tensor, labels: torch.Tensor, alpha: float
) -> dict[str, torch.Tensor]:
    """α·kd + (1 − α)·CE(s, y) for any soft term ``kd`` (one teacher's, or a mix of teachers')."""
    ce = F.cross_entropy(student_logits, labels)
    return {"loss_kd": kd, "loss_ce_student": ce, "loss_student": alpha * kd + (1 - alpha) * ce}


def mixed_soft_target(
    logits: Sequence[torch.Tensor],
    weights: Sequence[float],
    temperatures: Sequence[float],
    masks: Sequence[torch.Tensor],
) -> torch.Tensor:
    """p_mix = Σ_k w_k·softmax(t_k / T_k) / Σ_k w_k over the teachers that scored each row.

    A teacher that could not score a row (mask False) drops out of that row's mix and the
    remaining weights are renormalised; its logits there are never read as zeros.
    """
    row_weights = torch.stack([w * m.to(t.dtype) for t, w, m in zip(logits, weights, masks, strict=True)])  # (K, B)
    total = row_weights.sum(dim=0)
    if (total <= 0).any():
        raise ValueError("a row has no teacher with positive weight")
    probs = torch.stack([F.softmax(t / tau, dim=-1) for t, tau in zip(logits, temperatures, strict=True)])  # (K, B, C)
    return (row_weights.unsqueeze(-1) * probs).sum(dim=0) / total.unsqueeze(-1)


def kd_to_distribution(
    student_logits: torch.Tensor, target: torch.Tensor, temperature: float, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """T² · KL(target ‖ softmax(s/T)), averaged over the rows in ``mask`` (all rows by default)."""
    per_row = F.kl_div(F.log_softmax(student_logits / temperature, dim=-1), target, reduction="none").sum(-1)
    if mask is not None:
        per_row = per_row[mask]
    return per_row.mean() * temperature**2 if per_row.numel() else per_row.sum()
