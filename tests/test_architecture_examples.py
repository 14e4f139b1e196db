"""The worked examples in ARCHITECTURE.md run: a new model kind and a new scheme, each added the
way the document says, train and predict from their checkpoints."""

from __future__ import annotations

import re
from pathlib import Path

import lightning as L
import torch
from jsonargparse import ArgumentParser

from bert2textcnn import models
from bert2textcnn.data.datamodule import TextDataModule
from bert2textcnn.inference.predictor import StudentPredictor

BLOCKS = re.findall(r"```python\n(.*?)```", (Path(__file__).parents[1] / "ARCHITECTURE.md").read_text("utf-8"), re.S)


def example(name: str) -> type:
    namespace: dict = {}
    exec(next(block for block in BLOCKS if f"class {name}(" in block), namespace)
    return namespace[name]


def fit_and_save(model, data, path: Path) -> str:
    trainer = L.Trainer(max_steps=2, limit_val_batches=0, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)  # fmt: skip
    trainer.fit(model, datamodule=data)
    trainer.save_checkpoint(path)
    return str(path)


def test_the_model_kind_example_trains_and_predicts_from_its_checkpoint(small_data, tmp_path, monkeypatch):
    from bert2textcnn.distill.schemes import SCHEMES

    bilstm = example("BiLSTM")
    monkeypatch.setitem(models.STUDENT_KINDS, bilstm.kind, bilstm)  # the one registry line
    data = TextDataModule(train_path=str(small_data["train"]), val_path=str(small_data["val"]), batch_size=16)
    model = SCHEMES["student"](labels=data.labels, vocab=data.vocab, max_length=data.max_length, student="bilstm")
    checkpoint = fit_and_save(model, data, tmp_path / "bilstm.ckpt")
    predictor = StudentPredictor.from_checkpoint(checkpoint)
    assert isinstance(predictor.student, bilstm)
    assert predictor.probabilities(["加微信领取免费会员", "好"]).shape == (2, 2)


def test_the_scheme_example_trains_with_its_own_option(small_data, teacher_checkpoint, tiny_teacher, tmp_path):
    smoothed = example("SmoothedOfflineScheme")
    parser = ArgumentParser()
    parser.add_class_arguments(smoothed, "model")
    assert "Label smoothing ε of the extra CE term" in parser.format_help()  # its own option, documented
    assert "--model.teacher_checkpoint" in parser.format_help()  # and offline's
    data = TextDataModule(train_path=str(small_data["train"]), val_path=str(small_data["val"]), batch_size=16)
    model = smoothed(
        labels=data.labels, vocab=data.vocab, max_length=data.max_length, teacher=str(tiny_teacher),
        teacher_checkpoint=teacher_checkpoint, cache_dir=str(tmp_path / "cache"), smoothing=0.2,
    )  # fmt: skip
    fit_and_save(model, data, tmp_path / "smoothed.ckpt")
    assert model.hparams.smoothing == 0.2
    batch = model.on_before_batch_transfer(next(iter(data.train_dataloader())), 0)
    terms = model.loss_terms(batch)
    assert torch.allclose(terms["loss"], terms["loss_student"] + terms["loss_ce_smoothed"])
