"""`theseus`: compress the fine-tuned teacher into a smaller BERT by progressive module replacement
(BERT-of-Theseus, ``001``), or by the stable "proportional add" of ``003``; see ``distill.theseus``.

Stage 1 (``replace_epochs``): the teacher (``teacher_checkpoint``) runs frozen, its modules mixed
with the successor's layers, and only those layers learn, from the labels (CE). Stage 2: the
successor alone — a small-BERT student with the teacher's embeddings, pooler and classifier —
is fine-tuned whole. What it writes is a small-BERT student checkpoint like any other.
"""

from __future__ import annotations

import copy
from typing import Any

import torch

from bert2textcnn.distill.losses import labelled_ce
from bert2textcnn.distill.options import (
    CompareOptions,
    EvaluationOptions,
    OptimizationOptions,
    PretrainedOptions,
    TeacherCheckpointOptions,
)
from bert2textcnn.distill.schemes.base import DistillationModule
from bert2textcnn.distill.teachers import FrozenTeacher, TeacherSource
from bert2textcnn.distill.theseus import (
    SuccessorOptions,
    TheseusOptions,
    module_size,
    replace_probability,
    replaced_modules,
    successor_shares,
)
from bert2textcnn.option_groups import takes


@takes(SuccessorOptions, PretrainedOptions, TeacherCheckpointOptions, TheseusOptions, OptimizationOptions,
       EvaluationOptions, CompareOptions)  # fmt: skip
class TheseusScheme(DistillationModule):
    """Compress the fine-tuned teacher by module replacement (BERT-of-Theseus), then tune the successor alone."""

    name = "theseus"
    distils = False  # the labels teach; unlabelled rows have nothing to give
    step_shares: torch.Tensor | None = None  # this step's successor shares, per module

    def pick_teacher_source(self) -> TeacherSource:
        return FrozenTeacher(self.options[TeacherCheckpointOptions].teacher_checkpoint)

    def configure_model(self) -> None:
        """The successor starts as the fine-tuned teacher cut to m layers (a resumed or tested run
        then loads its own weights over these)."""
        first_build = self.teacher is None
        super().configure_model()
        if first_build and self.teacher is not None:
            successor = self.options[SuccessorOptions]
            module_size(len(layers_of(self.teacher)), successor.student_layers)
            cut = copy.deepcopy(self.teacher).keep_layers(successor.student_layers, successor.student_init)
            self.student.load_state_dict(cut.state_dict())

    @property
    def replacing(self) -> bool:
        return self.current_epoch < self.options[TheseusOptions].replace_epochs

    def theseus_logits(self, batch: dict[str, Any], shares: torch.Tensor) -> torch.Tensor:
        """The teacher's forward with its modules mixed with the successor's layers by ``shares``."""
        teacher = self.teacher.eval()  # frozen, no dropout; the successor's layers keep theirs
        with replaced_modules(layers_of(teacher), layers_of(self.student), shares):
            return teacher.model(**batch["teacher_inputs"]).logits

    def loss_terms(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        device = batch["label"].device
        if not self.replacing:
            ce = labelled_ce(self.student_logits(batch), batch["label"])
            return {"loss_ce_student": ce, "stage": torch.tensor(2.0, device=device), "loss": ce}
        options = self.options[TheseusOptions]
        stage_batches = self.trainer.num_training_batches * options.replace_epochs if self._trainer else 1
        shares = successor_shares(options, self.batches_done, stage_batches, len(layers_of(self.student)))
        self.step_shares = shares
        ce = labelled_ce(self.theseus_logits(batch, shares), batch["label"])
        if not shares.any():  # nothing replaced: keep a zero-weighted link so backward runs (see below)
            ce = ce + 0.0 * next(layers_of(self.student).parameters()).sum()
        rate = (
            1 - float(shares.mean())
            if options.replacement == "proportional"
            else replace_probability(options, self.batches_done)
        )
        name = "proportion" if options.replacement == "proportional" else "replace_rate"
        return {
            "loss_ce_theseus": ce,
            "stage": torch.tensor(1.0, device=device),
            name: torch.tensor(rate, device=device),
            "replaced_modules": shares.sum().to(device),
            "loss": ce,
        }

    def on_after_backward(self) -> None:
        """A successor layer whose module was not replaced this step learns nothing from it: its
        gradients are cleared (not zeroed), so AdamW leaves it, moments and decay included, as
        BERT-of-Theseus's optimizer does for parameters outside the step's graph."""
        if self.replacing and self.step_shares is not None:
            for share, layer in zip(self.step_shares.tolist(), layers_of(self.student), strict=True):
                if share == 0:
                    for parameter in layer.parameters():
                        parameter.grad = None


def layers_of(bert: Any) -> torch.nn.ModuleList:
    return bert.model.base_model.encoder.layer
