"""`rco`: route-constrained optimisation (``004`` §一.3; Jin et al. 2019). The student distils, as in
`offline`, from a sequence of checkpoints taken along the teacher's own fine-tuning ("anchors",
``fit --scheme teacher --model.save_anchors N``), an equal share of its batches each, in order:
it follows the teacher's route from an easy, early teacher to the final one.
"""

from __future__ import annotations

from typing import Any

import torch

from bert2textcnn.distill.options import STUDENT_GROUPS, CacheOptions, FrozenTeacherDistillOptions
from bert2textcnn.distill.route import RouteOptions, RouteTeacher
from bert2textcnn.distill.schemes.offline import OfflineScheme
from bert2textcnn.distill.teachers import TeacherSource
from bert2textcnn.option_groups import takes


@takes(*STUDENT_GROUPS, FrozenTeacherDistillOptions, RouteOptions, CacheOptions)
class RcoScheme(OfflineScheme):
    """Student follows the teacher's fine-tuning route: each anchor checkpoint's logits in turn (RCO)."""

    name = "rco"

    def pick_teacher_source(self) -> TeacherSource:
        return RouteTeacher(self.options[RouteOptions].teacher_route, self.options[CacheOptions].cache_dir)

    def loss_terms(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        anchor = self.teacher_source.active(self) + 1  # 1-based, as the index lists them
        return {**super().loss_terms(batch), "anchor": torch.tensor(float(anchor), device=batch["label"].device)}
