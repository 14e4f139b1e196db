"""Loss terms, as pure functions of logits.

KD(s, t) = T² · KL(softmax(t/T) ‖ softmax(s/T))  (Hinton et al. 2015). The T² keeps the gradient
scale of the soft term independent of T, so α means the same thing at every temperature.

Training rows may be unlabelled (label ``UNLABELED``, from ``--data.unlabeled_path``, a label
fraction or augmentation). Such a row never has a CE term against a label; the student learns it
from the teacher alone, through the soft target or a hard pseudo-label.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

UNLABELED = -1  # the label id of a row without a label


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Batch-mean KL from the teacher's softened distribution to the student's, times T².

    Gradients flow into whichever argument is not detached: the student's (the usual case), the
    teacher's (the coupled scheme), or both (the multi-task scheme).
    """
    return kd_per_row(student_logits, F.softmax(teacher_logits / temperature, dim=-1), temperature).mean()


def kd_per_row(student_logits: torch.Tensor, target: torch.Tensor, temperature: float) -> torch.Tensor:
    """T² · KL(target ‖ softmax(s/T)) for each row: shape (batch,)."""
    log_q = F.log_softmax(student_logits / temperature, dim=-1)
    return F.kl_div(log_q, target, reduction="none").sum(-1) * temperature**2


def labelled_ce(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """CE over the labelled rows only; zero (still on the graph) when the batch has none.

    ``F.cross_entropy(..., ignore_index=-1)`` would return NaN for a batch of unlabelled rows.
    """
    labelled = labels != UNLABELED
    if not labelled.any():
        return logits.sum() * 0.0
    return F.cross_entropy(logits[labelled], labels[labelled])


def pseudo_labels(teacher_probs: torch.Tensor, threshold: float) -> torch.Tensor:
    """The teacher's argmax class, or ``UNLABELED`` where its top probability is below ``threshold``."""
    confidence, label = teacher_probs.max(dim=-1)
    return torch.where(confidence >= threshold, label, torch.full_like(label, UNLABELED))


@dataclass(frozen=True)
class StudentTargets:
    """How the student's per-row targets are formed (the ``--model.*`` options of the same names)."""

    alpha: float = 0.5  # weight of KD against CE on labelled rows
    temperature: float = 1.0
    pseudo_label_threshold: float | None = None  # None: soft targets on unlabelled rows; else hard ones
    trust_labels: bool = True  # labelled rows where the teacher's top class is wrong learn CE alone
    kd_scale: float = 1.0  # KDSchedule's factor: α·kd_scale on labelled rows, the teacher's target × it elsewhere


def student_loss(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor, targets: StudentTargets
) -> dict[str, torch.Tensor]:
    """The student's loss against one teacher; see ``student_objective``. Pseudo-labels are the
    teacher's argmax where its probability at T = 1 reaches the threshold."""
    soft_target = F.softmax(teacher_logits / targets.temperature, dim=-1)
    pseudo = None
    if targets.pseudo_label_threshold is not None:
        pseudo = pseudo_labels(F.softmax(teacher_logits, dim=-1), targets.pseudo_label_threshold)
    return student_objective(student_logits, soft_target, labels, targets, pseudo)


def student_objective(
    student_logits: torch.Tensor,
    soft_target: torch.Tensor,
    labels: torch.Tensor,
    targets: StudentTargets,
    pseudo: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """Per-row loss, averaged over the rows that have a target:

    - labelled row:                 α·KD + (1 − α)·CE(s, y); with ``trust_labels``, CE(s, y) alone
                                    where the soft target's top class is not y
    - unlabelled row, soft target:  KD
    - unlabelled row, hard target:  CE(s, ŷ) with ŷ = ``pseudo``; no term where ŷ is ``UNLABELED``

    KD is T²·KL(``soft_target`` ‖ softmax(s/T)); the soft target may mix several teachers. With
    every row labelled this is the familiar α·KD + (1 − α)·CE. ``kd_scale`` < 1 (a teacher still
    warming up) scales α and the unlabelled rows' loss: at 0 the student learns its labels alone.
    Each part is also returned as the mean over its own rows (when the batch has any), for the logs.
    """
    alpha, temperature = targets.alpha * targets.kd_scale, targets.temperature
    labelled = labels != UNLABELED
    unlabelled = ~labelled
    kd = kd_per_row(student_logits, soft_target, temperature)
    ce = F.cross_entropy(student_logits, labels.clamp(min=0), reduction="none")  # read on labelled rows only
    terms: dict[str, torch.Tensor] = {}
    if pseudo is None:
        unlabelled_loss, counted = kd, torch.ones_like(labelled)
    else:
        kept = unlabelled & (pseudo != UNLABELED)
        unlabelled_loss = F.cross_entropy(student_logits, pseudo.clamp(min=0), reduction="none")
        counted = labelled | kept
        if unlabelled.any():
            terms["pseudo_label_kept"] = kept[unlabelled].float().mean()
        if kept.any():
            terms["loss_ce_pseudo"] = unlabelled_loss[kept].mean()
    if labelled.any():
        terms["loss_kd"] = kd[labelled].mean()
        terms["loss_ce_student"] = ce[labelled].mean()
    if pseudo is None and unlabelled.any():
        terms["loss_kd_unlabeled"] = kd[unlabelled].mean()
    kd_weight = torch.full_like(kd, alpha)
    if targets.trust_labels:
        teacher_wrong = labelled & (soft_target.argmax(dim=-1) != labels)
        kd_weight = kd_weight.masked_fill(teacher_wrong, 0.0)
        if labelled.any():
            terms["teacher_disagrees"] = teacher_wrong[labelled].float().mean()
    labelled_loss = kd_weight * kd + (1 - kd_weight) * ce
    per_row = torch.where(labelled, labelled_loss, targets.kd_scale * unlabelled_loss)
    terms["loss_student"] = (per_row * counted).sum() / counted.sum().clamp(min=1)
    return terms


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
    per_row = kd_per_row(student_logits, target, temperature)
    if mask is not None:
        per_row = per_row[mask]
    return per_row.mean() if per_row.numel() else per_row.sum()


def focal_weights(old_logits: torch.Tensor, labels: torch.Tensor, alpha: float, beta: float) -> torch.Tensor:
    """Focal distillation's weight per row (Yan et al. 2021): α + β·[the old model's class = y] on
    labelled rows, α on unlabelled ones. Shape (batch,): one weight per row, never (batch, batch)."""
    old_right = (old_logits.argmax(-1) == labels) & (labels != UNLABELED)
    return alpha + beta * old_right.to(old_logits.dtype)


def weighted_kd(
    student_logits: torch.Tensor, target: torch.Tensor, temperature: float, weights: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """Σ_i m_i·w_i·KD_i / Σ_i m_i: KD to ``target`` weighted per row, over the rows in ``mask``."""
    per_row = kd_per_row(student_logits, target, temperature) * weights * mask.to(weights.dtype)
    return per_row.sum() / mask.sum().clamp(min=1)
