"""A non-finite loss stops training before it reaches an optimizer; bad temperatures never start."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from bert2textcnn.data.datamodule import TextDataModule
from bert2textcnn.distill.schemes import SCHEMES
from bert2textcnn.errors import UserError


@pytest.mark.parametrize("scheme", ["student", "joint_isolated"])
def test_nan_loss_stops_with_its_place_and_keeps_the_last_checkpoint(scheme, small_data, tiny_teacher, tmp_path):
    L.seed_everything(0, verbose=False)
    data = TextDataModule(train_path=str(small_data["train"]), val_path=str(small_data["val"]), batch_size=16)
    phases = {"teacher_epochs": 0, "tail_epochs": 0} if scheme == "joint_isolated" else {}
    model = SCHEMES[scheme](labels=data.labels, vocab=data.vocab, max_length=64, teacher=str(tiny_teacher), **phases)
    real_terms = model.loss_terms

    def poisoned(batch):
        terms = real_terms(batch)
        if model.trainer.fit_loop.epoch_loop.batch_idx == 3:
            terms["loss_ce_student"] = terms["loss_ce_student"] * float("nan")
            for name in ("loss", "loss_student"):
                if name in terms:
                    terms[name] = terms[name] + terms["loss_ce_student"]
        return terms

    model.loss_terms = poisoned
    checkpoints = ModelCheckpoint(dirpath=tmp_path, save_last=True, every_n_train_steps=1)
    trainer = L.Trainer(max_epochs=1, limit_val_batches=0, logger=False, callbacks=[checkpoints],
                        enable_progress_bar=False, enable_model_summary=False)  # fmt: skip
    with pytest.raises(UserError, match=r"non-finite loss at epoch 0, batch 3 .*loss_ce_student = nan"):
        trainer.fit(model, datamodule=data)
    assert all(p.isfinite().all() for p in model.parameters())  # the NaN never reached a step
    last = torch.load(tmp_path / "last.ckpt", weights_only=True)
    assert all(v.isfinite().all() for v in last["state_dict"].values() if v.is_floating_point())


@pytest.mark.parametrize("temperature", [0.0, -1.0])
def test_extreme_temperatures_are_rejected_at_start_up(small_data, temperature):
    data = TextDataModule(train_path=str(small_data["train"]), val_path=str(small_data["val"]))
    with pytest.raises(UserError, match="temperature must be positive"):
        SCHEMES["offline"](labels=data.labels, vocab=data.vocab, temperature=temperature)
    with pytest.raises(UserError, match="historical_temperatures must be positive"):
        SCHEMES["multi_teacher"](
            labels=data.labels, vocab=data.vocab, historical=["old.csv"], historical_temperatures=[temperature]
        )


def test_same_seed_same_data_same_result_twice(small_data, tiny_teacher):
    def train() -> dict[str, torch.Tensor]:
        L.seed_everything(5, verbose=False)
        data = TextDataModule(train_path=str(small_data["train"]), val_path=str(small_data["val"]), batch_size=16)
        model = SCHEMES["joint_isolated"](labels=data.labels, vocab=data.vocab, teacher=str(tiny_teacher),
                                          tail_epochs=1)  # fmt: skip  # every phase: teacher, joint, tail
        trainer = L.Trainer(max_epochs=3, limit_val_batches=2, logger=False, enable_checkpointing=False,
                            enable_progress_bar=False, enable_model_summary=False)  # fmt: skip
        trainer.fit(model, datamodule=data)
        return {**model.state_dict(), "val": trainer.callback_metrics["val/student_macro_f1"]}

    first, second = train(), train()
    assert all(torch.equal(first[key], second[key]) for key in first)
