from __future__ import annotations

import csv
import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).parent))

from tiny_teacher import save_tiny_teacher

from bert2textcnn.data.datamodule import TextDataModule, demo_path

SMS_SPAM = Path(__file__).resolve().parents[2] / "shared" / "data" / "sms_spam_zh"


def read_demo(split: str) -> list[dict[str, str]]:
    with open(demo_path(split), encoding="utf-8", newline="") as file:
        return list(csv.DictReader(file))


def write_csv(path: Path, rows: list[dict[str, str]], columns: tuple[str, ...] = ("text", "label")) -> Path:
    with open(path, "w", encoding="utf-8", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=list(columns), extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return path


@pytest.fixture(scope="session")
def tiny_teacher(tmp_path_factory) -> Path:
    texts = [row["text"] for split in ("train", "val", "test") for row in read_demo(split)]
    return save_tiny_teacher(tmp_path_factory.mktemp("tiny_teacher"), texts)


@pytest.fixture(scope="session")
def small_data(tmp_path_factory) -> dict[str, Path]:
    """A small slice of the bundled demo corpus: quick to train on, both classes present."""
    directory = tmp_path_factory.mktemp("data")
    return {
        "train": write_csv(directory / "train.csv", read_demo("train")[:96]),
        "val": write_csv(directory / "val.csv", read_demo("val")[:40]),
    }


@pytest.fixture
def sms_spam() -> Path:
    if not (SMS_SPAM / "train.csv").is_file():
        pytest.skip(f"real data set not found at {SMS_SPAM} (it lives in ../shared beside the repo)")
    return SMS_SPAM


@pytest.fixture(scope="session")
def teacher_checkpoint(tiny_teacher, small_data, tmp_path_factory) -> str:
    """A project checkpoint of the tiny teacher, trained until it beats a constant guess on
    validation (balanced accuracy about 0.88), so the teacher gate lets it teach."""
    import lightning as L

    from bert2textcnn.distill.schemes import SCHEMES

    L.seed_everything(0, verbose=False)
    data = TextDataModule(train_path=str(small_data["train"]), val_path=str(small_data["val"]), batch_size=32)
    model = SCHEMES["teacher"](
        labels=data.labels, vocab=data.vocab, max_length=data.max_length, teacher=str(tiny_teacher),
        teacher_lr=3e-3, warmup_ratio=0.0,
    )  # fmt: skip
    trainer = L.Trainer(
        max_steps=60,
        limit_val_batches=2,
        default_root_dir=tmp_path_factory.mktemp("teacher_run"),
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(model, datamodule=data)
    return trainer.checkpoint_callback.best_model_path


@pytest.fixture(scope="session")
def teacher_anchors(tiny_teacher, small_data, tmp_path_factory) -> Path:
    """The anchors index of a short tiny-teacher run that kept 2 checkpoints along the way (RCO)."""
    import lightning as L

    from bert2textcnn.distill.schemes import SCHEMES

    L.seed_everything(0, verbose=False)
    data = TextDataModule(train_path=str(small_data["train"]), val_path=str(small_data["val"]), batch_size=32)
    folder = tmp_path_factory.mktemp("anchors")
    model = SCHEMES["teacher"](
        labels=data.labels, vocab=data.vocab, max_length=data.max_length, teacher=str(tiny_teacher),
        teacher_lr=3e-3, save_anchors=2, anchor_dir=str(folder),
    )  # fmt: skip
    trainer = L.Trainer(max_steps=6, limit_val_batches=0, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)  # fmt: skip
    trainer.fit(model, datamodule=data)
    return folder / "index.json"
