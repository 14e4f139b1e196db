"""`multi_teacher` (方案5): the student learns from the BERT teacher and from frozen historical
(production) models at once, so the new model keeps catching what the old one caught.

Soft target, per row, over the teachers that could score it (a scores file may lack a row):

    p_mix = Σ_k w_k · softmax(t_k / T_k) / Σ_k w_k,      KD_mix = T² · KL(p_mix ‖ softmax(s / T))

with w_k = ``historical_weights`` for the historical models and 1 − Σ historical_weights for BERT,
T_k = ``historical_temperatures`` (default T). The student minimises α·KD_mix + (1−α)·CE(s, y).
The BERT teacher trains jointly with CE as in `joint_isolated`, or, given ``teacher_checkpoint``,
is loaded from that fine-tuned checkpoint and frozen. The student is compared with the first
historical model on val and test (coverage, flip rates) unless ``compare_to`` names another.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from bert2textcnn.checkpoint import load_trained_teacher
from bert2textcnn.compat.historical import HistoricalModel, ScoresFile, load_historical
from bert2textcnn.distill.losses import kd_to_distribution, mixed_soft_target, pseudo_labels, student_objective
from bert2textcnn.distill.schemes.base import Role
from bert2textcnn.distill.schemes.joint_isolated import JointIsolatedScheme
from bert2textcnn.errors import UserError
from bert2textcnn.models.bert import BertClassifier
from bert2textcnn.models.protocol import logits_in_order

log = logging.getLogger(__name__)


class MultiTeacherScheme(JointIsolatedScheme):
    """Student learns from a weighted mix of BERT and frozen historical models (keeps old hits)."""

    name = "multi_teacher"

    def __init__(
        self,
        historical: list[str] | None = None,
        historical_weights: list[float] | None = None,
        historical_temperatures: list[float] | None = None,
        teacher_checkpoint: str | None = None,
        **kwargs: Any,
    ) -> None:
        """
        Args:
            historical: Old models as extra, frozen teachers: bert2textcnn checkpoints and/or
                scores files (CSV/TSV/JSONL with the text and one column per class).
            historical_weights: Weight of each historical model in the soft target; BERT gets
                1 − their sum, which must stay positive. Default: every teacher weighs the same.
            historical_temperatures: Softmax temperature per historical model (default: T).
            teacher_checkpoint: Load the BERT teacher fine-tuned from this checkpoint and freeze
                it, instead of training it jointly.
        """
        super().__init__(**kwargs)
        if not historical:
            raise UserError("--model.historical needs at least one checkpoint or scores file")
        count = len(historical)
        weights = historical_weights if historical_weights is not None else [1 / (count + 1)] * count
        temperatures = historical_temperatures or [self.hparams.temperature] * count
        if len(weights) != count or len(temperatures) != count:
            raise UserError("give one --model.historical_weights and temperature per --model.historical entry")
        if any(w < 0 for w in weights) or sum(weights) >= 1:
            raise UserError(
                f"--model.historical_weights {weights} must be non-negative and sum to less than 1: "
                "the BERT teacher takes the rest"
            )
        if any(t <= 0 for t in temperatures):
            raise UserError(f"--model.historical_temperatures must be positive, got {temperatures}")
        self.teacher_weights = [1 - sum(weights), *weights]
        self.teacher_temperatures = [self.hparams.temperature, *temperatures]
        self.historical: list[HistoricalModel] = []

    def reference_source(self) -> str | None:
        return self.compare_to or self.hparams.historical[0]

    # ---- the frozen-BERT option -------------------------------------------------------
    @property
    def teacher_is_frozen(self) -> bool:
        return self.hparams.teacher_checkpoint is not None

    def build_teacher(self) -> BertClassifier:
        if not self.teacher_is_frozen:
            return super().build_teacher()
        teacher = load_trained_teacher(self.hparams.teacher_checkpoint, self.labels, self.max_length)
        return teacher.requires_grad_(False)

    @property
    def teacher_learns_jointly(self) -> bool:
        return not self.teacher_is_frozen

    def trained_modules(self) -> dict[Role, nn.Module]:
        return {"student": self.student_side} if self.teacher_is_frozen else super().trained_modules()

    def on_fit_start(self) -> None:
        super().on_fit_start()
        if self.teacher_is_frozen:
            texts, labels = self.trainer.datamodule.texts_and_labels("val")
            with torch.no_grad():
                logits = logits_in_order(
                    self.teacher.eval(), texts, len(self.labels), self.trainer.datamodule.batch_size
                )
            self.check_frozen_teacher(logits, labels, self.hparams.teacher_checkpoint)

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        if self.teacher_is_frozen:
            self.teacher.eval()  # Lightning puts the whole module in train mode; a frozen teacher has no dropout

    # ---- historical teachers ----------------------------------------------------------
    def setup(self, stage: str) -> None:
        super().setup(stage)
        if stage == "fit" and not self.historical:
            text_column = self.trainer.datamodule.columns[0]
            self.historical = [load_historical(p, self.labels, text_column) for p in self.hparams.historical]
            texts = self.trainer.datamodule.train_texts()
            for model in self.historical:
                if isinstance(model, ScoresFile) and (known := model.coverage_of(texts)) < len(texts):
                    log.warning(
                        "%s scores %d of %d training texts; for the other %d its KD term is dropped and the "
                        "remaining teachers' weights are renormalised",
                        model.source, known, len(texts), len(texts) - known,
                    )  # fmt: skip

    def on_before_batch_transfer(self, batch: dict[str, Any], dataloader_idx: int) -> dict[str, Any]:
        batch = super().on_before_batch_transfer(batch, dataloader_idx)
        if self.historical and self.trainer.training:
            scored = [model.logits(batch["text"]) for model in self.historical]
            batch["historical_logits"] = [logits for logits, _ in scored]
            batch["historical_masks"] = [mask for _, mask in scored]
        return batch

    def student_loss_terms(
        self, student_logits: torch.Tensor, detached_teacher_logits: torch.Tensor, batch: dict[str, Any]
    ) -> dict[str, torch.Tensor]:
        targets = self.student_targets
        every_row = torch.ones_like(batch["label"], dtype=torch.bool)
        logits = [detached_teacher_logits, *batch["historical_logits"]]
        masks = [every_row, *batch["historical_masks"]]
        target = mixed_soft_target(logits, self.teacher_weights, self.teacher_temperatures, masks)
        pseudo = None
        if targets.pseudo_label_threshold is not None:
            unsoftened = mixed_soft_target(logits, self.teacher_weights, [1.0] * len(logits), masks)
            pseudo = pseudo_labels(unsoftened, targets.pseudo_label_threshold)
        terms = student_objective(student_logits, target, batch["label"], targets, pseudo)
        with torch.no_grad():  # each teacher's own KD term, for the logs only
            for k, (teacher_logits, mask, t_k) in enumerate(zip(logits, masks, self.teacher_temperatures, strict=True)):
                name = "loss_kd_bert" if k == 0 else f"loss_kd_historical_{k}"
                soft = F.softmax(teacher_logits / t_k, -1)
                terms[name] = kd_to_distribution(student_logits, soft, targets.temperature, mask)
        return terms
