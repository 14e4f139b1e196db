"""Randomness that depends only on (seed, epoch), so a run resumed from an epoch boundary replays
the epochs it lost exactly: same batches, same dropout masks.

Lightning restores weights, optimizers and loops from a checkpoint but not the random generators,
and it draws the first batch of an epoch before ``on_train_epoch_start``. So the shuffle has its
own generator, seeded from the run's seed and the epoch it belongs to, and the global generators
(dropout) are re-seeded from the same pair when each epoch starts.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterator

import lightning as L
import numpy as np
import torch
from torch.utils.data import Sampler


def run_seed() -> int:
    """The seed of this run: ``--seed_everything`` (Lightning keeps it in ``PL_GLOBAL_SEED``)."""
    return int(os.environ.get("PL_GLOBAL_SEED", 0))


def epoch_generator(epoch: int) -> torch.Generator:
    return torch.Generator().manual_seed(run_seed() * 1_000_003 + epoch)


class EpochShuffle(Sampler[int]):
    """A fresh permutation of ``range(size)`` per epoch, fixed by (seed, epoch)."""

    def __init__(self, size: int, epoch: int = 0) -> None:
        self.size, self.epoch = size, epoch

    def set_epoch(self, epoch: int) -> None:  # Lightning calls this before each epoch
        self.epoch = epoch

    def __len__(self) -> int:
        return self.size

    def __iter__(self) -> Iterator[int]:
        return iter(torch.randperm(self.size, generator=epoch_generator(self.epoch)).tolist())


class EpochSeeding(L.Callback):
    """Re-seeds Python, NumPy and torch at each training epoch's start from (seed, epoch)."""

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        seed = run_seed() * 1_000_003 + trainer.current_epoch
        random.seed(seed)
        np.random.seed(seed % 2**32)
        torch.manual_seed(seed)
