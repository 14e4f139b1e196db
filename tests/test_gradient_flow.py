"""Which parameters each scheme's losses move, checked on parameters and .grad directly."""

from __future__ import annotations

import lightning as L
import torch

from bert2textcnn.data.datamodule import TextDataModule
from bert2textcnn.losses import student_loss
from bert2textcnn.schemes import SCHEMES


def build(scheme: str, teacher, data_paths, **hparams):
    L.seed_everything(7, verbose=False)
    data = TextDataModule(str(data_paths["train"]), str(data_paths["val"]), batch_size=16)
    model = SCHEMES[scheme](
        labels=data.labels, vocab=data.vocab, max_length=data.max_length, teacher=str(teacher), **hparams
    )
    return data, model


def train_one_batch(scheme: str, teacher, data_paths, **hparams):
    data, model = build(scheme, teacher, data_paths, **hparams)
    trainer = L.Trainer(
        max_steps=model.optimizer_steps_per_batch,  # exactly one batch (Lightning counts optimizer steps)
        limit_val_batches=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    L.seed_everything(11, verbose=False)
    trainer.fit(model, datamodule=data)
    assert trainer.fit_loop.epoch_loop.batch_progress.total.completed == 1
    return model


def snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def test_joint_isolated_student_never_moves_the_teacher(tiny_teacher, small_data):
    soft_only = train_one_batch("joint_isolated", tiny_teacher, small_data, alpha=1.0)
    hard_only = train_one_batch("joint_isolated", tiny_teacher, small_data, alpha=0.0)
    teacher_a, teacher_b = snapshot(soft_only.teacher), snapshot(hard_only.teacher)
    assert all(torch.equal(teacher_a[k], teacher_b[k]) for k in teacher_a)
    student_a, student_b = snapshot(soft_only.student), snapshot(hard_only.student)
    assert any(not torch.equal(student_a[k], student_b[k]) for k in student_a)


def test_joint_isolated_teacher_does_learn(tiny_teacher, small_data):
    _, untrained = build("joint_isolated", tiny_teacher, small_data)
    untrained.configure_model()
    trained = train_one_batch("joint_isolated", tiny_teacher, small_data)
    before, after = snapshot(untrained.teacher), snapshot(trained.teacher)
    assert any(not torch.equal(before[k], after[k]) for k in before if "classifier" in k)


def test_joint_isolated_student_gradient_is_the_hand_mixed_loss(tiny_teacher, small_data):
    data, model = build("joint_isolated", tiny_teacher, small_data, alpha=0.3, temperature=2.5)
    model.configure_model()
    model.eval()  # no dropout, so two forwards agree
    data.setup("fit")
    batch = model.on_before_batch_transfer(next(iter(data.train_dataloader())), 0)
    s, t, y = model.student_logits(batch), model.teacher_logits(batch), batch["label"]
    loss = student_loss(s, t.detach(), y, 0.3, 2.5)["loss_student"]
    params = list(model.student.parameters())
    grads = torch.autograd.grad(loss, params, retain_graph=True)
    kd = torch.nn.functional.kl_div(
        torch.log_softmax(s / 2.5, -1), torch.softmax(t.detach() / 2.5, -1), reduction="batchmean"
    )
    by_hand = 0.3 * 2.5**2 * kd + 0.7 * torch.nn.functional.cross_entropy(s, y)
    for got, want in zip(grads, torch.autograd.grad(by_hand, params), strict=True):
        assert torch.allclose(got, want, atol=1e-6)
    assert all(p.grad is None for p in model.teacher.parameters())


def test_student_scheme_has_no_teacher_and_offline_holds_none(tiny_teacher, small_data):
    _, student = build("student", tiny_teacher, small_data)
    student.configure_model()
    assert student.teacher is None
    assert set(student.trained_modules()) == {"student"}
