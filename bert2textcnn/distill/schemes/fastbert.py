"""`fastbert`: a BERT that exits early on easy texts (FastBERT, ``000``); the model is
``models/fastbert.py``.

    python -m bert2textcnn fit --scheme fastbert --model.teacher_checkpoint runs/teacher/…/best.ckpt \\
        --data.train_path train.csv --data.val_path dev.csv --model.speed 0.2

Two stages in one run. Stage 1 (every epoch but the last ``branch_epochs``): the backbone and its
final classifier fine-tune on the labels (CE); the branches are not in the loss. Stage 2: backbone
and final classifier are frozen (run without gradients, dropout off) and each branch i learns
KL(p_final ‖ p_i) from every training text, unlabelled ones included (self-distillation), plus
``branch_ce``·CE on labelled rows. ``--model.teacher_checkpoint`` supplies a fine-tuned backbone:
every epoch is then stage 2. Each stage has its own learning-rate warm-up and decay.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch.optim.lr_scheduler import LambdaLR

from bert2textcnn.checkpoint import load_fine_tuned_bert, student_description
from bert2textcnn.distill.early_exit import ExitScores, exit_summary
from bert2textcnn.distill.losses import kd_loss, labelled_ce
from bert2textcnn.distill.optimization import decay_groups, training_batches, warmup_then_decay
from bert2textcnn.distill.options import (
    CompareOptions,
    EvaluationOptions,
    OptimizationOptions,
    PretrainedOptions,
    StudentOptions,
    TeacherCheckpointOptions,
)
from bert2textcnn.distill.schemes.base import DistillationModule
from bert2textcnn.errors import UserError
from bert2textcnn.models import classifier_from_description
from bert2textcnn.models.fastbert import FastBert
from bert2textcnn.option_groups import takes

TOO_SHALLOW = "fastbert needs a BERT of at least 2 layers (a branch after each layer but the last)"


@dataclass(frozen=True)
class BackboneOptions(StudentOptions):
    """FastBERT's backbone: a BERT with a branch classifier after each layer but the last.

    Args:
        student: Always ``fastbert`` here (the TextCNN sizes are unused).
        student_layers: Keep this many of the pre-trained folder's layers (a small BERT, cut as
            ``student_init`` says). Default: all of them. With ``teacher_checkpoint`` the
            checkpoint's BERT decides.
        branch_hidden: Width of each branch's hidden layer (mean-pool → hidden → classes).
    """

    student: str = "fastbert"
    student_layers: int | None = None
    branch_hidden: int = 128

    def __post_init__(self) -> None:
        if self.student != FastBert.kind:
            raise UserError(f"fastbert puts branches on a BERT: --model.student must be fastbert, not {self.student}")
        if self.student_layers is not None and self.student_layers < 2:
            raise UserError(TOO_SHALLOW)


@dataclass(frozen=True)
class BackboneCheckpointOptions(TeacherCheckpointOptions):
    """A BERT fine-tuned earlier.

    Args:
        teacher_checkpoint: A bert2textcnn checkpoint holding a fine-tuned teacher (``--scheme
            teacher``, a joint scheme) or a small-BERT student: the backbone, fine-tuned already,
            so stage 1 is skipped and every epoch trains the branches.
    """


@dataclass(frozen=True)
class FastBertOptions:
    """FastBERT's two stages.

    Args:
        branch_epochs: The last N epochs are stage 2: backbone and final classifier frozen, each
            branch learns KL(p_final ‖ p_branch) on every training text (unlabelled ones too).
            The epochs before are stage 1: backbone and final classifier fine-tune on the labels.
        branch_ce: Weight of each branch's CE on labelled rows, added to its KL in stage 2 (0:
            self-distillation alone, as in FastBERT).
        branch_lr: Peak learning rate of the branches (stage 2). The backbone's (stage 1) is
            ``student_lr``, default 1e-4.
    """

    branch_epochs: int = 1
    branch_ce: float = 0.0
    branch_lr: float = 1e-3

    def __post_init__(self) -> None:
        if self.branch_epochs < 1 or self.branch_ce < 0:
            raise UserError("--model.branch_epochs must be at least 1 and --model.branch_ce not negative")


@dataclass(frozen=True)
class ExitOptions:
    """Early exit (not saved with the checkpoint, so ``test`` and ``predict`` take their own).

    Args:
        speed: A text leaves at the first layer whose branch's normalised entropy (entropy /
            log classes) is below this, in val, test and predict; the texts still unsure go on
            through the next layer, and those never sure take the final classifier. 0: every
            text runs every layer; near 1: most leave at layer 1. ``predict`` writes each text's
            ``exit_layer``; ``test`` reports the average layers run and the share leaving at each.
    """

    hyperparameters: ClassVar[bool] = False
    speed: float = 0.0

    def __post_init__(self) -> None:
        if not 0 <= self.speed <= 1:
            raise UserError(f"--model.speed must lie in [0, 1], got {self.speed}")


@takes(BackboneOptions, PretrainedOptions, BackboneCheckpointOptions, FastBertOptions, ExitOptions,
       OptimizationOptions, EvaluationOptions, CompareOptions)  # fmt: skip
class FastBertScheme(DistillationModule):
    """A BERT that exits early on easy texts (FastBERT): fine-tune it, then self-distil a branch after every layer."""

    name = "fastbert"
    exits_early = True
    selects_on = "layers"  # val/layers_macro_f1, the mean over every exit: it moves in both stages
    student: FastBert
    backbone_loaded = False

    @functools.cached_property
    def exit_scores(self) -> dict[str, ExitScores]:
        return {stage: ExitScores(self.labels) for stage in ("val", "test")}

    def use(self, student: FastBert) -> None:
        if student.layers < 2:
            raise UserError(TOO_SHALLOW)
        student.speed = self.options[ExitOptions].speed
        self.student = student

    def configure_model(self) -> None:
        """When fitting from ``teacher_checkpoint``: its fine-tuned BERT, with new branches (a resumed
        run then loads its own weights over these)."""
        super().configure_model()
        checkpoint = self.options[BackboneCheckpointOptions].teacher_checkpoint
        fitting = self._trainer is None or self.trainer.state.fn == "fit"
        if checkpoint and fitting and not self.backbone_loaded:
            bert = load_fine_tuned_bert(checkpoint, self.labels, self.max_length).train()
            self.use(FastBert(bert, self.options[BackboneOptions].branch_hidden))
            self.backbone_loaded = True
        self.use(self.student)  # the speed of this run

    @property
    def stage_one_epochs(self) -> int:
        if self.options[BackboneCheckpointOptions].teacher_checkpoint:
            return 0
        epochs = self.trainer.max_epochs
        branch_epochs = self.options[FastBertOptions].branch_epochs
        if epochs in (None, -1) or epochs <= branch_epochs:
            raise UserError(
                f"fastbert without --model.teacher_checkpoint fine-tunes the backbone first: --trainer.max_epochs "
                f"({epochs}) must exceed --model.branch_epochs ({branch_epochs})"
            )
        return epochs - branch_epochs

    @property
    def in_stage_one(self) -> bool:
        return self.current_epoch < self.stage_one_epochs

    def loss_terms(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        inputs, labels = batch["student_inputs"], batch["label"]
        if self.in_stage_one:
            ce = labelled_ce(self.student(**inputs).logits, labels)
            return {"loss_ce_final": ce, "stage": torch.tensor(1.0, device=labels.device), "loss": ce}
        with torch.no_grad():
            full = self.student.backbone.eval()(**inputs)
        terms: dict[str, torch.Tensor] = {"stage": torch.tensor(2.0, device=labels.device)}
        weight = self.options[FastBertOptions].branch_ce
        for layer, logits in enumerate(self.student.branch_logits(full.hidden_states, inputs["attention_mask"]), 1):
            terms[f"loss_kd_layer{layer}"] = kd_loss(logits, full.logits, 1.0)
            if weight:
                terms[f"loss_ce_layer{layer}"] = labelled_ce(logits, labels)
        terms["loss"] = sum(value for name, value in terms.items() if name.startswith("loss_kd")) + weight * sum(
            value for name, value in terms.items() if name.startswith("loss_ce")
        )
        return terms

    def configure_optimizers(self) -> Any:
        """One AdamW: the backbone's groups warm up and decay over stage 1, the branches' over
        stage 2; each group's rate is 0 outside its stage (and it gets no gradient there)."""
        total = training_batches(self.trainer, 1)
        per_epoch = math.ceil(self.trainer.num_training_batches / self.trainer.accumulate_grad_batches)
        first = min(total, per_epoch * self.stage_one_epochs)
        optim, options = self.options[OptimizationOptions], self.options[FastBertOptions]
        backbone_lr = self.options[BackboneOptions].student_lr or FastBert.default_lr
        backbone = decay_groups(self.student.backbone, backbone_lr, "backbone", optim.weight_decay)
        branches = decay_groups(self.student.branches, options.branch_lr, "branches", optim.weight_decay)
        schedules = [within(0, first, optim.warmup_ratio)] * len(backbone)
        schedules += [within(first, total - first, optim.warmup_ratio)] * len(branches)
        optimizer = torch.optim.AdamW(backbone + branches)
        scheduler = LambdaLR(optimizer, schedules)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step", "name": "lr"}}

    # ---- evaluation, prediction -------------------------------------------------------
    def scored_logits(self, batch: dict[str, Any], stage: str) -> dict[str, torch.Tensor]:
        """The student at ``--model.speed``; beside it, every exit's classifier on every text."""
        inputs = batch["student_inputs"]
        output = self.student(**inputs)
        full = output if self.student.speed <= 0 else self.student.backbone(**inputs)
        exits = [*self.student.branch_logits(full.hidden_states, inputs["attention_mask"]), full.logits]
        self.exit_scores[stage].update(exits, output.exit_layers, batch["label"])
        return {"student": output.logits}

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self.evaluation.update(self, "val", self.scored_logits(batch, "val"), batch)

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self.evaluation.update(self, "test", self.scored_logits(batch, "test"), batch)

    def on_validation_epoch_end(self) -> None:
        super().on_validation_epoch_end()
        self.exit_scores["val"].finish(self, "val")

    def on_test_epoch_end(self) -> None:
        super().on_test_epoch_end()
        scores = self.exit_scores["test"].finish(self, "test")
        if scores and self.trainer.is_global_zero:
            print("\n" + exit_summary(scores, "test", self.student.speed))

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Any]:
        output = self.student(**batch["student_inputs"])
        return {"text": batch["text"], "probs": output.logits.softmax(-1), "exit_layer": output.exit_layers.tolist()}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """The model takes the shape the checkpoint describes (its backbone may be a small BERT)."""
        self.use(classifier_from_description(student_description(checkpoint), len(self.labels)))
        self.backbone_loaded = True
        super().on_load_checkpoint(checkpoint)


def within(start: int, length: int, warmup_ratio: float):
    """Warm-up then decay over batches [start, start + length); 0 outside them."""
    schedule = warmup_then_decay(0, length, warmup_ratio)
    return lambda step: schedule(step - start) if start <= step < start + length else 0.0
