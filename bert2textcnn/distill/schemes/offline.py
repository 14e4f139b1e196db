"""`offline` (方案1): distil from an already fine-tuned, frozen teacher through cached logits.

The teacher's logits over the training set are computed once and saved under ``cache_dir``,
keyed by a fingerprint of the training texts, the teacher checkpoint's bytes and the max length;
later runs with the same inputs skip the teacher entirely (``distill.logits_cache``).
"""

from __future__ import annotations

from typing import Any

import torch

from bert2textcnn.distill.hints import HintOptions
from bert2textcnn.distill.losses import student_loss
from bert2textcnn.distill.options import (
    STUDENT_GROUPS,
    CacheOptions,
    FrozenTeacherDistillOptions,
    TeacherCheckpointOptions,
)
from bert2textcnn.distill.schemes.base import DistillationModule
from bert2textcnn.distill.teachers import CachedTeacher, TeacherSource
from bert2textcnn.option_groups import takes


@takes(*STUDENT_GROUPS, FrozenTeacherDistillOptions, HintOptions, TeacherCheckpointOptions, CacheOptions)
class OfflineScheme(DistillationModule):
    """Student learns α·KD + (1−α)·CE from a frozen fine-tuned teacher's cached logits."""

    name = "offline"

    def pick_teacher_source(self) -> TeacherSource:
        checkpoint = self.options[TeacherCheckpointOptions].teacher_checkpoint
        return CachedTeacher(checkpoint, self.options[CacheOptions].cache_dir)

    def loss_terms(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        student_logits, teacher_logits = self.student_logits(batch), self.teacher_logits(batch)
        terms = student_loss(student_logits, teacher_logits, batch["label"], self.student_targets)
        return {**terms, "loss": terms["loss_student"]}
