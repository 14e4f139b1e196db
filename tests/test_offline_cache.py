"""The offline scheme computes the teacher's logits once and reuses them until an input changes."""

from __future__ import annotations

import logging

import lightning as L
import pytest
import torch
from hand_metrics import hand_macro_f1
from lightning.pytorch.loggers import Logger

from bert2textcnn.data.datamodule import TextDataModule
from bert2textcnn.distill import logits_cache
from bert2textcnn.distill.schemes import SCHEMES
from bert2textcnn.errors import UserError


class RecordingLogger(Logger):
    """Keeps every ``log_metrics`` call, to read back."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[int | None, dict[str, float]]] = []

    @property
    def name(self) -> str:
        return "recording"

    @property
    def version(self) -> int:
        return 0

    def log_hyperparams(self, params, *args, **kwargs) -> None:
        pass

    def log_metrics(self, metrics, step=None) -> None:
        self.calls.append((step, dict(metrics)))


def fit(scheme: str, data: TextDataModule, root, logger: Logger | bool = False, **hparams):
    model = SCHEMES[scheme](labels=data.labels, vocab=data.vocab, max_length=data.max_length, **hparams)
    trainer = L.Trainer(
        max_steps=2,
        limit_val_batches=2,
        default_root_dir=root,
        logger=logger,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(model, datamodule=data)
    return model, trainer


def test_second_run_reuses_cache_without_loading_the_teacher(
    teacher_checkpoint, small_data, tmp_path, monkeypatch, caplog
):
    caplog.set_level(logging.INFO, logger="bert2textcnn")
    data = TextDataModule(train_path=str(small_data["train"]), val_path=str(small_data["val"]), batch_size=16)
    first, _ = fit("offline", data, tmp_path, teacher_checkpoint=teacher_checkpoint, cache_dir=str(tmp_path / "cache"))
    assert len(list((tmp_path / "cache").glob("*.pt"))) == 2  # training texts, and validation for the teacher gate
    assert first.teacher_source.cached_logits.shape == (len(data.train_texts()), 2)

    def no_teacher(*args, **kwargs):
        raise AssertionError("the teacher was loaded although its logits are cached")

    monkeypatch.setattr(logits_cache, "load_trained_teacher", no_teacher)
    second, _ = fit("offline", data, tmp_path, teacher_checkpoint=teacher_checkpoint, cache_dir=str(tmp_path / "cache"))
    assert torch.equal(first.teacher_source.cached_logits, second.teacher_source.cached_logits)
    assert "Reusing cached teacher logits" in caplog.text


def test_the_cached_teachers_validation_metrics_are_logged_once(teacher_checkpoint, small_data, tmp_path):
    from bert2textcnn.models.protocol import logits_in_order

    data = TextDataModule(train_path=str(small_data["train"]), val_path=str(small_data["val"]), batch_size=16)
    logger = RecordingLogger()
    fit("offline", data, tmp_path, logger, teacher_checkpoint=teacher_checkpoint, cache_dir=str(tmp_path / "cache"))
    logged = [(step, metrics) for step, metrics in logger.calls if "val/teacher_macro_f1" in metrics]
    assert [step for step, _ in logged] == [0]  # once, before training: the teacher never changes

    texts, labels = data.texts_and_labels("val")
    teacher = logits_cache.load_trained_teacher(teacher_checkpoint, data.labels, data.max_length)
    with torch.no_grad():
        logits = logits_in_order(teacher.eval(), texts, len(data.labels), 16).tolist()
    assert logged[0][1]["val/teacher_macro_f1"] == pytest.approx(hand_macro_f1(logits, labels.tolist()))
    assert f"val/teacher_recall_{data.labels[0]}" in logged[0][1]


def test_cached_logits_are_the_teachers_own(teacher_checkpoint, small_data, tmp_path):
    data = TextDataModule(train_path=str(small_data["train"]), val_path=str(small_data["val"]))
    texts = data.train_texts()[:5]
    logits = logits_cache.teacher_logits_cache(texts, teacher_checkpoint, data.labels, data.max_length, tmp_path)
    teacher = logits_cache.load_trained_teacher(teacher_checkpoint, data.labels, data.max_length)
    with torch.no_grad():
        direct = teacher(**teacher.encode(texts)).logits
    assert torch.allclose(logits, direct, atol=1e-5)


def test_changed_data_invalidates_the_cache(teacher_checkpoint, small_data, tmp_path):
    data = TextDataModule(train_path=str(small_data["train"]), val_path=str(small_data["val"]))
    texts = data.train_texts()
    logits_cache.teacher_logits_cache(texts, teacher_checkpoint, data.labels, 64, tmp_path)
    logits_cache.teacher_logits_cache(texts[:-1], teacher_checkpoint, data.labels, 64, tmp_path)
    logits_cache.teacher_logits_cache(texts, teacher_checkpoint, data.labels, 32, tmp_path)
    assert len(list(tmp_path.glob("teacher_logits_*.pt"))) == 3


def test_teacher_logits_come_back_in_input_order_despite_length_sorted_batches(tiny_teacher):
    from bert2textcnn.models.bert import BertClassifier
    from bert2textcnn.models.protocol import logits_in_order

    teacher = BertClassifier.from_directory(str(tiny_teacher), num_labels=2, max_length=64).eval()
    texts = [
        "短",
        "一条相当长的广告消息请加微信领取免费会员卡",
        "中等长度的一句话",
        "好",
        "又一条很长很长的普通聊天内容",
    ]
    with torch.inference_mode():
        one_by_one = torch.cat([teacher(**teacher.encode([text])).logits for text in texts])
    assert torch.allclose(logits_in_order(teacher, texts, 2, batch_size=2), one_by_one, atol=1e-5)


def test_cached_logits_are_found_by_text_whatever_the_row_order(small_data, teacher_checkpoint):
    data = TextDataModule(train_path=str(small_data["train"]), val_path=str(small_data["val"]))
    model = SCHEMES["offline"](
        labels=data.labels, vocab=data.vocab, max_length=data.max_length, teacher_checkpoint=teacher_checkpoint
    )
    model.teacher_source.cached_logits = torch.tensor([[0.0, 1.0], [2.0, 3.0], [4.0, 5.0]])
    model.teacher_source.cached_rows = {"甲": 0, "乙": 1, "丙": 2}
    batch = {"text": ["丙", "甲"], "label": torch.tensor([0, 1]), "index": torch.tensor([0, 1])}  # index misleads
    assert torch.equal(model.teacher_logits(batch), torch.tensor([[4.0, 5.0], [0.0, 1.0]]))
    with pytest.raises(UserError, match="no cached teacher logits"):
        model.teacher_logits({**batch, "text": ["丁", "甲"]})
