"""A callback that SIGKILLs its own process at a chosen batch: a real crash, which nothing in the
process can catch or clean up after, for the resume tests (loaded with --trainer.callbacks+=)."""

import os
import signal

from lightning.pytorch.callbacks import Callback


class KillAtBatch(Callback):
    def __init__(self, epoch: int, batch: int) -> None:
        self.epoch, self.batch = epoch, batch

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.current_epoch == self.epoch and batch_idx == self.batch:
            os.kill(os.getpid(), signal.SIGKILL)
