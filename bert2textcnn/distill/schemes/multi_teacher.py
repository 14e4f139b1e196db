"""`multi_teacher` (方案5): the student learns from the BERT teacher and from frozen historical
(production) models at once, so the new model keeps catching what the old one caught.

Soft target, per row, over the teachers that could score it (a scores file may lack a row):

    p_mix = Σ_k w_k · softmax(t_k / T_k) / Σ_k w_k,      KD_mix = T² · KL(p_mix ‖ softmax(s / T))

with w_k = ``historical_weights`` for the historical models and 1 − Σ historical_weights for BERT,
T_k = ``historical_temperatures`` (default T). The student minimises α·KD_mix + (1−α)·CE(s, y).
With ``focal`` (focal distillation, Yan et al. 2021) the historical models leave the mix: the
student minimises L_s against BERT alone plus Σ_k w_k·mean_rows(f_k·KD(s, old_k)), where
f_k = α_f + β_f·[old_k's class = y] (α_f on unlabelled rows), so it stays closest to an old model
where that model was right.
The BERT teacher trains jointly with CE as in `joint_isolated`, or, given ``teacher_checkpoint``,
is that fine-tuned checkpoint, frozen: its logits are computed once and cached, as in `offline`.
The student is compared with the first historical model on val and test (coverage, flip rates)
unless ``compare_to`` names another.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from bert2textcnn.compat.historical import HistoricalModel, ScoresFile, load_historical
from bert2textcnn.distill.hints import HintOptions
from bert2textcnn.distill.losses import (
    focal_weights,
    kd_to_distribution,
    mixed_soft_target,
    pseudo_labels,
    student_objective,
    weighted_kd,
)
from bert2textcnn.distill.options import (
    JOINT_GROUPS,
    CacheOptions,
    DistillOptions,
    HistoricalOptions,
    TeacherCheckpointOptions,
)
from bert2textcnn.distill.schemes.joint_isolated import JointIsolatedScheme
from bert2textcnn.distill.teachers import CachedTeacher, JointTeacher, TeacherSource
from bert2textcnn.option_groups import takes

log = logging.getLogger(__name__)


@takes(*JOINT_GROUPS, HintOptions, TeacherCheckpointOptions, CacheOptions, HistoricalOptions)
class MultiTeacherScheme(JointIsolatedScheme):
    """Student learns from a weighted mix of BERT and frozen historical models (keeps old hits)."""

    name = "multi_teacher"
    data_defaults: ClassVar[dict[str, Any]] = {}  # no tail, so no transfer set of its own

    historical: Sequence[HistoricalModel] = ()  # loaded in setup

    @property
    def teacher_weights(self) -> list[float]:
        """BERT's weight, then each historical model's."""
        given = self.options[HistoricalOptions]
        weights = given.historical_weights or [1 / (len(given.historical) + 1)] * len(given.historical)
        return [1 - sum(weights), *weights]

    @property
    def teacher_temperatures(self) -> list[float]:
        given, temperature = self.options[HistoricalOptions], self.options[DistillOptions].temperature
        return [temperature, *(given.historical_temperatures or [temperature] * len(given.historical))]

    def pick_teacher_source(self) -> TeacherSource:
        """Trained jointly, as in `joint_isolated`, unless ``teacher_checkpoint`` gives a fine-tuned
        one: frozen, so its logits on the training texts are fixed, and read from the cache."""
        checkpoint = self.options[TeacherCheckpointOptions].teacher_checkpoint
        return CachedTeacher(checkpoint, self.options[CacheOptions].cache_dir) if checkpoint else JointTeacher()

    def reference_source(self) -> str | None:
        return super().reference_source() or self.options[HistoricalOptions].historical[0]

    # ---- historical teachers ----------------------------------------------------------
    def setup(self, stage: str) -> None:
        super().setup(stage)
        if stage == "fit" and not self.historical:
            text_column = self.trainer.datamodule.columns[0]
            sources = self.options[HistoricalOptions].historical
            self.historical = [load_historical(source, self.labels, text_column) for source in sources]
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
        focal = self.options[HistoricalOptions].focal
        mixed = slice(None) if focal is None else slice(0, 1)  # focal: BERT alone in the soft target
        weights, temperatures = self.teacher_weights[mixed], self.teacher_temperatures[mixed]
        target = mixed_soft_target(logits[mixed], weights, temperatures, masks[mixed])
        pseudo = None
        if targets.pseudo_label_threshold is not None:
            unsoftened = mixed_soft_target(logits[mixed], weights, [1.0] * len(weights), masks[mixed])
            pseudo = pseudo_labels(unsoftened, targets.pseudo_label_threshold)
        terms = student_objective(student_logits, target, batch["label"], targets, pseudo)
        if focal is not None:
            terms = self.focal_terms(terms, student_logits, logits[1:], masks[1:], batch["label"], focal)
        with torch.no_grad():  # each teacher's own KD term, for the logs only
            for k, (teacher_logits, mask, t_k) in enumerate(zip(logits, masks, self.teacher_temperatures, strict=True)):
                name = "loss_kd_bert" if k == 0 else f"loss_kd_historical_{k}"
                soft = F.softmax(teacher_logits / t_k, -1)
                terms[name] = kd_to_distribution(student_logits, soft, targets.temperature, mask)
        return terms

    def focal_terms(
        self,
        terms: dict[str, torch.Tensor],
        student_logits: torch.Tensor,
        historical_logits: Sequence[torch.Tensor],
        masks: Sequence[torch.Tensor],
        labels: torch.Tensor,
        focal: dict[str, float],
    ) -> dict[str, torch.Tensor]:
        """Each historical model's focal term, w_k·mean(f·KD(s, old_k)), added to ``loss_student``."""
        loss = terms["loss_student"]
        temperature = self.student_targets.temperature
        for k, (old, mask, weight, t_k) in enumerate(
            zip(historical_logits, masks, self.teacher_weights[1:], self.teacher_temperatures[1:], strict=True), 1
        ):
            rows = focal_weights(old, labels, focal["alpha"], focal["beta"])
            term = weighted_kd(student_logits, F.softmax(old / t_k, -1), temperature, rows, mask)
            terms[f"loss_focal_historical_{k}"] = term
            terms[f"focal_weight_historical_{k}"] = rows[mask].mean() if mask.any() else rows.sum() * 0
            loss = loss + weight * term
        return {**terms, "loss_student": loss}
