"""FitNets hints (Romero et al. 2015; ``004`` §一.2): the student also learns the teacher's
intermediate representation, through a learned regressor.

The hint is sentence level, because a char or jieba TextCNN has no position aligned with WordPiece
tokens: the target is the attention-mask-aware mean of the teacher's layer-l hidden states, and the
student's side is a linear regressor ``r`` on its pooled features ``v_S``:

    hint = ‖mean(h_T^(l)) − r(v_S)‖²   (per row, summed over the hidden size; batch mean)
      or = 1 − cos(mean(h_T^(l)), r(v_S))

The target is detached: a hint never moves the teacher. ``r`` lives in the scheme's
``student_extras``, so it trains with the student's optimizer, is checkpointed, and is left out of
predict and export. One stage: the student minimises ``L_s + γ·hint``. Two stages (FitNets): the
hint alone for the first ``hint_epochs`` epochs, then the scheme's own loss.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from bert2textcnn.distill.options import PretrainedOptions
from bert2textcnn.errors import UserError
from bert2textcnn.models.bert import pretrained_shape
from bert2textcnn.option_groups import Options

if TYPE_CHECKING:
    from bert2textcnn.distill.schemes.base import DistillationModule


@dataclass(frozen=True)
class HintOptions:
    """FitNets hints: the student also learns a teacher layer's sentence representation.

    Args:
        hint_weight: Weight γ of the hint term in the student's loss ``L_s + γ·hint``; 0 turns
            hints off. The target is the mask-aware mean of the teacher layer's hidden states,
            detached (a hint never moves the teacher, in the joint schemes either); the student
            reaches it through a linear regressor on its pooled features, trained with it and left
            out of predict and export.
        hint_layer: The teacher layer (1 = the first encoder layer). Default: the middle one.
        hint_loss: ``mse``, the squared L2 distance summed over the hidden size, or ``cosine``,
            1 − cosine similarity.
        hint_stages: ``one``: ``L_s + γ·hint`` throughout. ``two`` (FitNets): the hint alone for
            ``hint_epochs`` epochs, then the scheme's own loss, hint included when γ > 0.
        hint_epochs: Epochs of the hint-only stage with ``hint_stages: two``.
    """

    hint_weight: float = 0.0
    hint_layer: int | None = None
    hint_loss: Literal["mse", "cosine"] = "mse"
    hint_stages: Literal["one", "two"] = "one"
    hint_epochs: int = 1

    @property
    def enabled(self) -> bool:
        return self.hint_weight > 0 or self.hint_stages == "two"

    def __post_init__(self) -> None:
        if self.hint_weight < 0 or self.hint_epochs < 0:
            raise UserError("--model.hint_weight and --model.hint_epochs must not be negative")


REGRESSOR = "hint_regressor"  # its key in ``student_extras``


def hint_loss(predicted: torch.Tensor, target: torch.Tensor, kind: str) -> torch.Tensor:
    """Batch mean of the squared L2 distance (``mse``) or of 1 − cosine similarity (``cosine``)."""
    if kind == "cosine":
        return (1 - F.cosine_similarity(predicted, target, dim=-1)).mean()
    return (predicted - target).pow(2).sum(-1).mean()


class Hints:
    """The hint term of one scheme: its layer, its regressor, and how it joins the student's loss."""

    def __init__(self, options: HintOptions, student_features: int, teacher_hidden: int, teacher_layers: int) -> None:
        self.options = options
        self.layer = options.hint_layer or max(1, teacher_layers // 2)  # FitNets: a middle layer
        if not 1 <= self.layer <= teacher_layers:
            raise UserError(f"--model.hint_layer {self.layer}: the teacher has layers 1 to {teacher_layers}")
        self.regressor = nn.Linear(student_features, teacher_hidden)

    @classmethod
    def of(cls, options: Options, student: nn.Module | None) -> Hints | None:
        """The hints a scheme's options ask for (``--model.hint_weight``), or None; the teacher's
        shape is read from the pre-trained folder's config."""
        if HintOptions not in options or not options[HintOptions].enabled:
            return None
        hidden, layers = pretrained_shape(options[PretrainedOptions].teacher)
        return cls(options[HintOptions], student.feature_size, hidden, layers)

    def in_hint_stage(self, epoch: int) -> bool:
        return self.options.hint_stages == "two" and epoch < self.options.hint_epochs

    def add_to(
        self, terms: dict[str, torch.Tensor], module: DistillationModule, batch: dict[str, Any]
    ) -> dict[str, torch.Tensor]:
        """The scheme's terms with the hint in the student's loss (and in ``loss``, when the scheme
        steps one optimizer): γ·hint added, or, in the first of two stages, the hint in its place."""
        target = module.teacher_source.hint_target(module, batch, self.layer).detach()
        hint = hint_loss(self.regressor(module.student_output(batch).features), target, self.options.hint_loss)
        student = terms["loss_student"]
        added = hint - student if self.in_hint_stage(module.current_epoch) else self.options.hint_weight * hint
        terms = {**terms, "loss_hint": hint, "loss_student": student + added}
        if "loss" in terms:
            terms["loss"] = terms["loss"] + added
        return terms
