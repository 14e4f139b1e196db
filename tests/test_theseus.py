"""BERT-of-Theseus: the mixed forward at its extremes, where stage 1's gradients go, the two stages,
and a successor that predicts from its checkpoint like any small-BERT student."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from test_gradient_flow import grads

from bert2textcnn.data.datamodule import TextDataModule
from bert2textcnn.distill.schemes import SCHEMES
from bert2textcnn.distill.theseus import (
    SuccessorOptions,
    TheseusOptions,
    module_size,
    replace_probability,
    successor_shares,
)
from bert2textcnn.errors import UserError
from bert2textcnn.inference.predictor import StudentPredictor


def theseus(tiny_teacher, teacher_checkpoint, small_data, **options):
    L.seed_everything(11, verbose=False)
    data = TextDataModule(train_path=str(small_data["train"]), val_path=str(small_data["val"]), batch_size=16)
    model = SCHEMES["theseus"](
        labels=data.labels, vocab=data.vocab, max_length=data.max_length, teacher=str(tiny_teacher),
        teacher_checkpoint=teacher_checkpoint, **options,
    )  # fmt: skip
    return data, model


def first_batch(tiny_teacher, teacher_checkpoint, small_data, **options):
    data, model = theseus(tiny_teacher, teacher_checkpoint, small_data, **options)
    model.configure_model()
    model.eval()  # no dropout: forwards agree
    data.setup("fit")
    return model, model.on_before_batch_transfer(next(iter(data.train_dataloader())), 0)


@pytest.mark.parametrize("layers", [1, 2])
def test_the_mix_at_its_extremes_is_the_successor_or_the_predecessor(
    layers, tiny_teacher, teacher_checkpoint, small_data
):
    model, batch = first_batch(tiny_teacher, teacher_checkpoint, small_data, student_layers=layers)
    with torch.no_grad():
        successor = model.student(**batch["student_inputs"]).logits  # starts with the teacher's embeddings and head
        predecessor = model.teacher(**batch["teacher_inputs"]).logits
        assert torch.allclose(model.theseus_logits(batch, torch.ones(layers)), successor, atol=1e-5)
        assert torch.allclose(model.theseus_logits(batch, torch.zeros(layers)), predecessor, atol=1e-6)
        half = model.theseus_logits(batch, torch.full((layers,), 0.5))
        assert torch.equal(half, model.theseus_logits(batch, torch.full((layers,), 0.5)))  # proportional: no draw
        if layers == 1:  # (with m = n the successor starts as an exact copy of the predecessor)
            assert not torch.allclose(half, predecessor) and not torch.allclose(half, successor)
    assert torch.equal(model.teacher(**batch["teacher_inputs"]).logits, predecessor)  # the hooks are gone


def test_stage_one_moves_only_the_successor_layers_stage_two_the_whole_successor(
    tiny_teacher, teacher_checkpoint, small_data
):
    model, batch = first_batch(tiny_teacher, teacher_checkpoint, small_data, replace_rate=1.0)
    terms = model.loss_terms(batch)  # epoch 0: replacement
    assert terms["stage"].item() == 1 and terms["replaced_modules"].item() == 1
    layers = model.student.model.base_model.encoder.layer
    assert all(g is not None and g.abs().sum() > 0 for g in grads(terms["loss"], layers))
    rest = [p for n, p in model.student.named_parameters() if ".encoder.layer." not in n]
    assert all(g is None for g in torch.autograd.grad(terms["loss"], rest, allow_unused=True, retain_graph=True))
    assert not any(p.requires_grad for p in model.teacher.parameters())  # the predecessor is frozen
    model.options[TheseusOptions].__dict__["replace_epochs"] = 0  # stage 2 from now on
    terms = model.loss_terms(batch)
    assert terms["stage"].item() == 2
    assert all(g is not None for g in torch.autograd.grad(terms["loss"], rest, allow_unused=True))


def test_replacement_schedules():
    bernoulli = TheseusOptions(replace_rate=0.25, replace_slope=0.25)
    assert [replace_probability(bernoulli, t) for t in (0, 1, 3, 9)] == [0.25, 0.5, 1.0, 1.0]
    torch.manual_seed(0)
    draws = torch.stack([successor_shares(TheseusOptions(replace_rate=0.3), 0, 10, 4) for _ in range(2000)])
    assert set(draws.unique().tolist()) == {0.0, 1.0} and abs(draws.mean().item() - 0.3) < 0.02
    annealed = TheseusOptions(replacement="proportional", proportion=0.8, anneal_proportion=True)
    assert successor_shares(annealed, 0, 10, 2).tolist() == pytest.approx([0.2, 0.2])
    assert successor_shares(annealed, 5, 10, 2).tolist() == pytest.approx([0.6, 0.6])  # k = 0.4
    assert successor_shares(annealed, 10, 10, 2).tolist() == [1.0, 1.0]  # k = 0 by the end of stage 1


def test_the_successor_must_divide_the_predecessor():
    assert module_size(4, 2) == 2
    with pytest.raises(UserError, match="must divide the teacher's 4 layers"):
        module_size(4, 3)
    with pytest.raises(UserError, match="student must be bert"):
        SuccessorOptions(student="textcnn")


def test_the_successor_is_a_small_bert_student_checkpoint(tiny_teacher, teacher_checkpoint, small_data, tmp_path):
    data, model = theseus(tiny_teacher, teacher_checkpoint, small_data, replacement="proportional")
    trainer = L.Trainer(max_epochs=2, limit_train_batches=2, limit_val_batches=1, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)  # fmt: skip
    trainer.fit(model, datamodule=data)
    assert trainer.callback_metrics["train/stage_epoch"].item() == 2
    checkpoint = tmp_path / "successor.ckpt"
    trainer.save_checkpoint(checkpoint)
    predictor = StudentPredictor.from_checkpoint(checkpoint)
    assert predictor.student.kind == "bert" and len(predictor.student.model.base_model.encoder.layer) == 1
    assert predictor.probabilities(["加微信领取免费会员"]).shape == (1, 2)


def test_a_step_that_replaces_nothing_leaves_the_successor_untouched(tiny_teacher, teacher_checkpoint, small_data):
    data, model = theseus(tiny_teacher, teacher_checkpoint, small_data, replace_rate=0.0, warmup_ratio=0.0)
    model.configure_model()  # the successor, cut from the teacher
    before = {k: v.clone() for k, v in model.student.state_dict().items()}
    trainer = L.Trainer(max_steps=2, limit_val_batches=0, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)  # fmt: skip
    trainer.fit(model, datamodule=data)  # p = 0: the teacher alone, every step
    after = model.student.state_dict()
    layer_keys = [k for k in before if ".encoder.layer." in k]
    assert layer_keys and all(torch.equal(before[k], after[k]) for k in layer_keys)
