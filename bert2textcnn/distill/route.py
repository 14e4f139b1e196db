"""RCO, route-constrained optimisation (Jin et al., ICCV 2019; ``004`` §一.3): the student follows
the teacher's own fine-tuning route, anchor by anchor, from an early (easy) teacher to the final one.

``AnchorCheckpoints`` keeps N evenly spaced checkpoints of a teacher run (``fit --scheme teacher
--model.save_anchors N``) and an index file listing them in order; ``RouteTeacher`` gives the
student, for an equal share of its training batches each, the cached logits of one anchor after
another. With one anchor it is ``offline``'s cached teacher.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import lightning as L
import torch

from bert2textcnn.distill.logits_cache import teacher_logits_cache
from bert2textcnn.distill.teachers import CachedTeacher, check_before_training, first_builds, log_teacher_on_val
from bert2textcnn.errors import UserError
from bert2textcnn.files import atomic_write_text

if TYPE_CHECKING:
    from bert2textcnn.distill.schemes.base import DistillationModule


@dataclass(frozen=True)
class AnchorOptions:
    """Checkpoints along a teacher's fine-tuning, for RCO (``--scheme rco``).

    Args:
        save_anchors: Keep this many checkpoints evenly spaced over the run's optimizer steps, the
            last at its final step, with an ``index.json`` listing them in order; 0 keeps none.
        anchor_dir: Where they go. Default: ``anchors/`` in the run's log folder.
    """

    save_anchors: int = 0
    anchor_dir: str | None = None


@dataclass(frozen=True)
class RouteOptions:
    """The teacher's route, for RCO.

    Args:
        teacher_route: The anchors, in order: the ``index.json`` that ``--model.save_anchors``
            wrote, or a list of teacher checkpoints (the last one is the final teacher, which the
            teacher gate checks; early anchors are weak by design). One anchor is ``offline``.
    """

    teacher_route: str | list[str] | None = None


log = logging.getLogger(__name__)
INDEX = "index.json"


class AnchorCheckpoints(L.Callback):
    """Saves the run at N evenly spaced optimizer steps, the last being its final step, and keeps
    ``index.json`` beside them listing the anchors saved so far, in order."""

    def __init__(self, count: int, folder: str | None = None) -> None:
        self.count, self.folder = count, folder
        self.steps: list[int] = []

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        total = trainer.estimated_stepping_batches
        self.steps = [max(1, round(k * total / self.count)) for k in range(1, self.count + 1)]

    def directory(self, trainer: L.Trainer) -> Path:
        return Path(self.folder) if self.folder else Path(trainer.log_dir or trainer.default_root_dir) / "anchors"

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        steps = self.steps
        if trainer.global_step not in steps:
            return
        number = steps.index(trainer.global_step) + 1
        folder = self.directory(trainer)
        trainer.save_checkpoint(folder / f"anchor_{number}.ckpt", weights_only=False)  # every process: collective
        if trainer.is_global_zero:
            anchors = [f"anchor_{k}.ckpt" for k in range(1, number + 1) if (folder / f"anchor_{k}.ckpt").is_file()]
            text = json.dumps({"anchors": anchors, "steps": steps[: len(anchors)]}, indent=2)
            atomic_write_text(folder / INDEX, text)
            log.info("Anchor %d of %d saved at step %d (%s)", number, self.count, trainer.global_step, folder)


def read_route(route: str | list[str] | None) -> list[str]:
    """The anchors in order: a list of checkpoints, or an ``index.json`` written by ``save_anchors``."""
    if not route:
        raise UserError("rco needs --model.teacher_route: an anchors index.json or a list of teacher checkpoints")
    if isinstance(route, list):
        anchors = route
    else:
        index = Path(route)
        try:
            listed = json.loads(index.read_text(encoding="utf-8"))["anchors"]
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise UserError(f"{index}: not an anchors index ({type(err).__name__}: {err})") from None
        anchors = [str(index.parent / name) for name in listed]
    missing = [anchor for anchor in anchors if not Path(anchor).is_file()]
    if missing or not anchors:
        raise UserError(f"--model.teacher_route: missing anchor checkpoints {missing or '(none listed)'}")
    return anchors


def anchor_at(batches_done: int, run_batches: int, anchors: int) -> int:
    """The anchor (0-based) for this batch: an equal share of the run's batches each, in order."""
    return min(anchors - 1, batches_done * anchors // max(1, run_batches))


class RouteTeacher(CachedTeacher):
    """The cached logits of the anchor whose share of the run this batch falls in."""

    def __init__(self, route: str | list[str] | None, cache_dir: str) -> None:
        super().__init__(None, cache_dir)
        self.route = route
        self.anchor_logits: list[torch.Tensor] = []

    def prepare(self, module: DistillationModule) -> None:
        anchors = read_route(self.route)
        data, trainer = module.trainer.datamodule, module.trainer
        texts = data.train_texts()

        def caches() -> list[torch.Tensor]:
            return [teacher_logits_cache(texts, a, module.labels, module.max_length, self.cache_dir) for a in anchors]

        if trainer.is_global_zero:  # the gate checks the final anchor: early ones are weak by design
            val_texts, val_labels = data.texts_and_labels("val")
            final = teacher_logits_cache(val_texts, anchors[-1], module.labels, module.max_length, self.cache_dir)
            check_before_training(module, final, val_labels, anchors[-1])
            log_teacher_on_val(module, final, val_labels)
        self.anchor_logits = first_builds(trainer, caches, "route logits")
        self.cached_rows = {text: row for row, text in enumerate(texts)}
        log.info("RCO route of %d anchors: %s", len(anchors), ", ".join(anchors))

    def active(self, module: DistillationModule) -> int:
        return anchor_at(module.batches_done, module.run_batches or 1, len(self.anchor_logits))

    def logits(self, module: DistillationModule, batch: dict[str, Any]) -> torch.Tensor:
        return self.anchor_logits[self.active(module)][self.rows(batch)].to(batch["label"].device)
