"""The teacher gate: a teacher no better than a constant guess does not teach."""

from __future__ import annotations

import lightning as L
import pytest
import torch

from bert2textcnn.data.datamodule import TextDataModule
from bert2textcnn.distill.schemes import SCHEMES
from bert2textcnn.distill.teacher_gate import KDSchedule, balanced_accuracy, check_teacher
from bert2textcnn.errors import UserError


def logits_for(predicted: list[int], classes: int = 2) -> torch.Tensor:
    return torch.nn.functional.one_hot(torch.tensor(predicted), classes).float()


def test_a_constant_guess_scores_one_over_c_whatever_the_balance():
    labels = torch.tensor([0] * 90 + [1] * 10)
    assert balanced_accuracy(logits_for([0] * 100), labels, 2) == pytest.approx(0.5)
    labels3 = torch.tensor([0] * 50 + [1] * 30 + [2] * 20)
    assert balanced_accuracy(logits_for([1] * 100, 3), labels3, 3) == pytest.approx(1 / 3)
    # by hand: class 0 recall 80/90, class 1 recall 5/10
    predicted = [0] * 80 + [1] * 10 + [1] * 5 + [0] * 5
    assert balanced_accuracy(logits_for(predicted), labels, 2) == pytest.approx((80 / 90 + 5 / 10) / 2)


def test_unlabelled_rows_are_not_counted():
    labels = torch.tensor([0, 1, -1, -1])
    assert balanced_accuracy(logits_for([0, 1, 1, 0]), labels, 2) == 1.0


def test_check_teacher_stops_a_constant_teacher_and_names_it():
    labels = torch.tensor([0] * 90 + [1] * 10)
    with pytest.raises(UserError, match=r"teacher\.ckpt: the teacher is no better than a constant guess.*\[100, 0\]"):
        check_teacher(logits_for([0] * 100), labels, 2, 0.05, "teacher.ckpt")
    assert check_teacher(logits_for([0] * 90 + [1] * 10), labels, 2, 0.05, "teacher.ckpt") == 1.0


def test_schedule_waits_for_the_teacher_then_ramps_and_stays_open():
    schedule = KDSchedule(2, warmup=0.25, gate=0.05)
    labels = torch.tensor([0, 0, 0, 1])
    schedule.observe(logits_for([0, 0, 0, 0]), labels, batch=0)  # a constant guess: 0.5
    assert schedule.factor(0, 40) == 0.0 and schedule.opened_at is None
    schedule.observe(logits_for([0, 0, 0, 1]), labels, batch=1)  # decayed counts: recalls 5.85/5.85 and 1/1.95
    assert schedule.teacher_score == pytest.approx((1 + 1 / 1.95) / 2) and schedule.opened_at == 1
    assert [schedule.factor(b, 40) for b in (1, 5, 10, 11, 30)] == pytest.approx([0.1, 0.5, 1.0, 1.0, 1.0])
    schedule.observe(logits_for([1, 1, 1, 0]), labels, batch=12)  # latched: a bad batch does not close it
    assert schedule.factor(12, 40) == 1.0


def test_schedule_state_survives_a_checkpoint():
    schedule = KDSchedule(2, warmup=0.0, gate=0.05)
    schedule.observe(logits_for([0, 1]), torch.tensor([0, 1]), batch=3)
    restored = KDSchedule(2, warmup=0.0, gate=0.05)
    restored.load_state_dict(schedule.state_dict())
    assert restored.opened_at == 3 and torch.equal(restored.seen, schedule.seen)


def test_without_a_gate_kd_starts_at_once():
    assert KDSchedule(2, warmup=0.0, gate=None).factor(0, None) == 1.0


@pytest.mark.parametrize(("warmup", "gate"), [(-0.1, None), (1.5, None), (0.0, 0.5), (0.0, -0.1)])
def test_bad_schedule_options_are_refused(warmup, gate):
    with pytest.raises(UserError, match=r"kd_warmup|teacher_gate"):
        KDSchedule(2, warmup, gate)


@pytest.fixture(scope="module")
def useless_teacher(tiny_teacher, small_data, tmp_path_factory) -> str:
    """The tiny teacher after two steps at the default learning rate: it guesses one class."""
    data = TextDataModule(train_path=str(small_data["train"]), val_path=str(small_data["val"]), batch_size=16)
    model = SCHEMES["teacher"](labels=data.labels, vocab=data.vocab, teacher=str(tiny_teacher))
    trainer = L.Trainer(max_steps=2, limit_val_batches=0, logger=False, enable_progress_bar=False,
                        enable_model_summary=False, default_root_dir=tmp_path_factory.mktemp("useless"))  # fmt: skip
    trainer.fit(model, datamodule=data)
    path = str(tmp_path_factory.mktemp("useless_ckpt") / "teacher.ckpt")
    trainer.save_checkpoint(path)
    return path


def fit(scheme: str, small_data, tmp_path, **hparams) -> L.LightningModule:
    data = TextDataModule(train_path=str(small_data["train"]), val_path=str(small_data["val"]), batch_size=16)
    model = SCHEMES[scheme](labels=data.labels, vocab=data.vocab, max_length=data.max_length, **hparams)
    trainer = L.Trainer(max_steps=1, limit_val_batches=0, logger=False, enable_progress_bar=False,
                        enable_model_summary=False, enable_checkpointing=False, default_root_dir=tmp_path)  # fmt: skip
    trainer.fit(model, datamodule=data)
    return model


def test_offline_refuses_a_teacher_that_guesses_one_class(useless_teacher, small_data, tmp_path):
    with pytest.raises(UserError, match=r"no better than a constant guess.*teacher_lr"):
        fit("offline", small_data, tmp_path, teacher_checkpoint=useless_teacher, cache_dir=str(tmp_path / "cache"))
    model = fit("offline", small_data, tmp_path, teacher_checkpoint=useless_teacher, cache_dir=str(tmp_path / "c2"),
                teacher_gate=None)  # fmt: skip
    assert model.teacher_source.cached_logits.shape[0] == 96  # distilled anyway when asked to


def test_offline_accepts_a_trained_teacher(teacher_checkpoint, small_data, tmp_path):
    fit("offline", small_data, tmp_path, teacher_checkpoint=teacher_checkpoint, cache_dir=str(tmp_path / "cache"))


def test_multi_teacher_refuses_a_frozen_teacher_that_guesses_one_class(useless_teacher, small_data, tmp_path):
    old = tmp_path / "old.csv"
    old.write_text("text,normal,spam\n一条旧模型打过分的短信,0.9,0.1\n", encoding="utf-8")
    with pytest.raises(UserError, match="no better than a constant guess"):
        fit("multi_teacher", small_data, tmp_path, teacher_checkpoint=useless_teacher, historical=[str(old)])
