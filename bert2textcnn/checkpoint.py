"""What a bert2textcnn checkpoint carries besides weights, and reading it safely.

Lightning checkpoints are dicts; we add one entry, ``bert2textcnn``, holding everything needed to
encode raw text for the student without the training data: scheme, label map, the data's
vocabulary and maximum length, and the student's own description (``Classifier.describe``).
Checkpoints are read with ``weights_only=True``, so loading one never runs code.

This module alone knows the layout: the record's keys and the ``student.`` / ``teacher.`` /
``student_extras.`` prefixes of each part's weights in the state dict.
"""

from __future__ import annotations

import pickle
import re
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from bert2textcnn.errors import UserError
from bert2textcnn.files import atomic_write
from bert2textcnn.models.bert import BertClassifier

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


def weights_of(checkpoint: dict[str, Any], role: Literal["student", "teacher"]) -> dict[str, torch.Tensor]:
    """One model's weights, with the scheme's attribute prefix taken off (empty if it has none)."""
    prefix = f"{role}."
    return {k.removeprefix(prefix): v for k, v in checkpoint["state_dict"].items() if k.startswith(prefix)}


def drop_weights(
    checkpoint: dict[str, Any], role: Literal["student", "teacher", "student_extras"], keep: Collection[str] = ()
) -> None:
    """Take one part's weights out of the state dict, in place, but those named in ``keep``: a
    teacher a run did not build, or a method's extra parameters a run without it has no place for."""
    state = checkpoint["state_dict"]
    for key in [k for k in state if k.startswith(f"{role}.") and k not in keep]:
        del state[key]


def write_record(
    checkpoint: dict[str, Any], scheme: str, labels: Sequence[str], vocab: Any, max_length: int, student: Any
) -> None:
    """Everything needed to encode raw text for the student, so a checkpoint predicts alone."""
    record = {"scheme": scheme, "labels": list(labels), "vocab": vocab.to_dict(), "max_length": max_length}
    if student is not None:
        record["student"] = student.describe()
    checkpoint[RECORD_KEY] = record


def student_description(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """What the student is (``Classifier.describe``). Checkpoints written before model kinds
    existed hold a TextCNN described by the record's vocabulary and the hyper-parameters."""
    record = checkpoint[RECORD_KEY]
    if "student" in record:
        return record["student"]
    sizes = ("embedding_dim", "kernel_sizes", "num_filters", "dropout")
    hparams = checkpoint["hyper_parameters"]
    return {"kind": "textcnn", "vocab": record["vocab"], "max_length": record["max_length"]} | {
        k: hparams[k] for k in sizes
    }


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning writes a checkpoint in place, so a kill mid-write leaves a truncated ``last.ckpt``
    that a resume would trust. This writes beside it and renames: the old file or the new one."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None) -> None:
        write = super().save_checkpoint
        atomic_write(path, lambda tmp: write(checkpoint, tmp, storage_options))


def check_labels(path: str, checkpoint: dict[str, Any], labels: Sequence[str]) -> None:
    trained_labels = checkpoint[RECORD_KEY]["labels"]
    if list(trained_labels) != list(labels):
        raise UserError(f"{path}: its model was trained on labels {trained_labels}, the data has {list(labels)}")


def load_trained_teacher(path: str, labels: Sequence[str], max_length: int) -> BertClassifier:
    """Rebuild the teacher a project checkpoint was trained with, weights included."""
    checkpoint = read_checkpoint(path)
    check_labels(path, checkpoint, labels)
    hparams = checkpoint.get("hyper_parameters", {})
    state = weights_of(checkpoint, "teacher")
    if not state:
        raise UserError(f"{path}: holds no teacher weights; train one with `fit --scheme teacher`")
    teacher = BertClassifier.from_directory(
        hparams.get("teacher"), len(labels), max_length, hparams.get("teacher_lowercase")
    )
    teacher.load_state_dict(state)
    return teacher.eval()


def load_fine_tuned_bert(path: str, labels: Sequence[str], max_length: int) -> BertClassifier:
    """The fine-tuned BERT a project checkpoint holds: its teacher, or else its small-BERT student."""
    checkpoint = read_checkpoint(path)
    if weights_of(checkpoint, "teacher"):
        return load_trained_teacher(path, labels, max_length)
    check_labels(path, checkpoint, labels)
    description = student_description(checkpoint)
    if description["kind"] != BertClassifier.kind:
        kind = description["kind"]
        raise UserError(f"{path}: holds neither a fine-tuned teacher nor a BERT student (its student: {kind})")
    bert = BertClassifier.from_description(description, len(labels))
    bert.load_state_dict(weights_of(checkpoint, "student"))
    return bert.eval()
