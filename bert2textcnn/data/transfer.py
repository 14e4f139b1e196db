"""Unlabelled training rows ("the transfer set") and batches that mix them with labelled ones.

Distillation pays where labels are few and text is plentiful: the teacher, pretrained, learns
from the few labels, and the student learns the teacher's outputs on every text. Unlabelled rows
come from ``--data.unlabeled_path``, from the labels ``--data.label_fraction`` drops, and from
``--data.augment``.
"""

from __future__ import annotations

import math
import random
from collections import defaultdict
from collections.abc import Iterator, Sequence

import torch

from bert2textcnn.data.records import Record
from bert2textcnn.errors import UserError
from bert2textcnn.seeding import EpochShuffle, epoch_generator


def keep_label_fraction(records: Sequence[Record], fraction: float, seed: int) -> tuple[list[Record], list[Record]]:
    """(kept, dropped): a stratified ``fraction`` of each class keeps its label, at least one row
    per class; both lists stay in file order, so the split depends on the seed alone."""
    if not 0 < fraction <= 1:
        raise UserError(f"--data.label_fraction must lie in (0, 1], got {fraction}")
    if fraction == 1:
        return list(records), []
    by_class: dict[str | None, list[int]] = defaultdict(list)
    for i, record in enumerate(records):
        by_class[record.label].append(i)
    rng = random.Random(seed)
    kept: set[int] = set()
    for label in sorted(by_class, key=str):
        rows = by_class[label]
        kept.update(rng.sample(rows, max(1, round(fraction * len(rows)))))
    return [r for i, r in enumerate(records) if i in kept], [r for i, r in enumerate(records) if i not in kept]


class MixedBatchOrder(EpochShuffle):
    """Row indices ordered so that each run of ``batch_size`` holds a fixed number of unlabelled rows.

    One epoch reads the longer of the two streams once; the shorter one is reshuffled and
    recycled to keep pace. The order is fixed by (seed, epoch), as for ``EpochShuffle``.
    """

    def __init__(
        self,
        labelled: Sequence[int],
        unlabelled: Sequence[int],
        batch_size: int,
        unlabeled_share: float,
        epoch: int = 0,
    ) -> None:
        if not 0 < unlabeled_share < 1:
            raise UserError(f"--data.unlabeled_share must lie in (0, 1), got {unlabeled_share}")
        if batch_size < 2 or not labelled or not unlabelled:
            raise UserError("--data.unlabeled_share needs labelled and unlabelled rows and a batch of at least 2")
        self.labelled, self.unlabelled = list(labelled), list(unlabelled)
        self.per_batch_unlabelled = min(batch_size - 1, max(1, round(batch_size * unlabeled_share)))
        self.per_batch_labelled = batch_size - self.per_batch_unlabelled
        self.batches = max(
            math.ceil(len(self.labelled) / self.per_batch_labelled),
            math.ceil(len(self.unlabelled) / self.per_batch_unlabelled),
        )
        super().__init__(self.batches * batch_size, epoch)

    def __iter__(self) -> Iterator[int]:
        generator = epoch_generator(self.epoch)
        labelled = _reshuffled_forever(self.labelled, generator)
        unlabelled = _reshuffled_forever(self.unlabelled, generator)
        for _ in range(self.batches):
            yield from (next(labelled) for _ in range(self.per_batch_labelled))
            yield from (next(unlabelled) for _ in range(self.per_batch_unlabelled))


def _reshuffled_forever(indices: list[int], generator: torch.Generator) -> Iterator[int]:
    while True:
        for position in torch.randperm(len(indices), generator=generator).tolist():
            yield indices[position]
