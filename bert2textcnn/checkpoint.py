"""What a bert2textcnn checkpoint carries besides weights, and reading it safely.

Lightning checkpoints are dicts; we add one entry, ``bert2textcnn``, holding everything needed to
encode raw text for the student without the training data: scheme, label map, vocabulary and
maximum length. Checkpoints are read with ``weights_only=True``, so loading one never runs code.
"""

from __future__ import annotations

import pickle
import re
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from bert2textcnn.errors import UserError
from bert2textcnn.io import atomic_write

RECORD_KEY = "bert2textcnn"


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a project checkpoint on the CPU, memory-mapped, refusing anything that is not one."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: checkpoint not found")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except pickle.UnpicklingError as err:
        found = re.search(r"GLOBAL ([\w.]+)", str(err))
        raise UserError(
            f"{path}: refused — it holds pickled Python objects{f' ({found[1]})' if found else ''}, and loading "
            "them could run code from the file. bert2textcnn reads checkpoints of tensors and plain types only."
        ) from None
    except Exception as err:  # torch raises several types for truncated or foreign files
        raise UserError(f"{path}: not a readable PyTorch checkpoint ({type(err).__name__}: {err})") from None
    if not isinstance(checkpoint, dict) or RECORD_KEY not in checkpoint:
        raise UserError(f"{path}: not a bert2textcnn checkpoint (no {RECORD_KEY!r} entry)")
    return checkpoint


def project_record(path: str | Path) -> dict[str, Any]:
    return read_checkpoint(path)[RECORD_KEY]


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning writes a checkpoint in place, so a kill mid-write leaves a truncated ``last.ckpt``
    that a resume would trust. This writes beside it and renames: the old file or the new one."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None) -> None:
        write = super().save_checkpoint
        atomic_write(path, lambda tmp: write(checkpoint, tmp, storage_options))
