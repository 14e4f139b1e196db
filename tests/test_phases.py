"""A joint run in phases (``distill.phases``, ``distill.tail``): which model each phase moves, which
rows each epoch reads, and how the tail picks its KD setting."""

from __future__ import annotations

import copy

import lightning as L
import pytest
import torch
from test_gradient_flow import same, snapshot

from bert2textcnn.data.augment import Augmentation
from bert2textcnn.data.datamodule import TextDataModule
from bert2textcnn.distill.optimization import warmup_then_decay
from bert2textcnn.distill.phases import PhaseOptions, PhasePlan
from bert2textcnn.distill.schemes import SCHEMES
from bert2textcnn.distill.tail import StudentTail
from bert2textcnn.errors import UserError
from bert2textcnn.models.protocol import ModelOutput, logits_in_order


class EpochSnapshots(L.Callback):
    """Each model's weights at the end of every training epoch."""

    def __init__(self) -> None:
        self.states: list[dict[str, dict[str, torch.Tensor]]] = []

    def on_train_epoch_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self.states.append({"student": snapshot(module.student), "teacher": snapshot(module.teacher)})


def fit(scheme: str, tiny_teacher, small_data, epochs: int, **hparams):
    L.seed_everything(3, verbose=False)
    data = TextDataModule(train_path=str(small_data["train"]), val_path=str(small_data["val"]), batch_size=16,
                          augment=Augmentation(copies=1))  # fmt: skip
    model = SCHEMES[scheme](labels=data.labels, vocab=data.vocab, max_length=data.max_length,
                            teacher=str(tiny_teacher), teacher_gate=None, **hparams)  # fmt: skip
    start = {"student": snapshot(model.student)}
    snapshots = EpochSnapshots()
    trainer = L.Trainer(max_epochs=epochs, limit_train_batches=3, limit_val_batches=1, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        callbacks=[snapshots])  # fmt: skip
    trainer.fit(model, datamodule=data)
    return model, start, snapshots.states


def test_plan_puts_teacher_joint_and_tail_epochs_in_order():
    plan = PhasePlan(PhaseOptions(teacher_epochs=1, tail_epochs=2), max_epochs=5)
    assert [plan.phase(epoch) for epoch in range(5)] == ["teacher", "joint", "joint", "tail", "tail"]
    assert plan.tail_start == 3 and plan.joint_epochs == 2
    with pytest.raises(UserError, match="max_epochs 4 or more"):
        PhasePlan(PhaseOptions(teacher_epochs=1, tail_epochs=2), max_epochs=3)
    with pytest.raises(UserError, match=r"needs --trainer\.max_epochs"):
        PhasePlan(PhaseOptions(), max_epochs=-1)  # a run bounded by steps alone has no epochs to split
    assert PhasePlan(PhaseOptions(teacher_epochs=0, tail_epochs=0), max_epochs=-1).phase(7) == "joint"
    with pytest.raises(UserError, match="alpha and temperature"):
        PhaseOptions(tail_kd=({"alpha": 1.0},))


def test_a_schedule_is_zero_before_and_after_its_phase():
    factor = warmup_then_decay(first=10, total=10, warmup_ratio=0.2)
    assert [factor(b) for b in (0, 9)] == [0.0, 0.0]
    assert factor(10) == pytest.approx(1 / 3) and factor(12) == 1.0 and factor(20) == 0.0


@pytest.mark.parametrize("scheme", ["joint_isolated", "joint_coupled", "multitask"])
def test_teacher_phase_moves_the_teacher_and_never_the_student(scheme, tiny_teacher, small_data):
    _, start, states = fit(scheme, tiny_teacher, small_data, epochs=3, teacher_epochs=2, tail_epochs=0)
    after_teacher_phase = states[1]
    assert all(torch.equal(start["student"][k], v) for k, v in after_teacher_phase["student"].items())
    assert any(not torch.equal(states[0]["teacher"][k], v) for k, v in after_teacher_phase["teacher"].items())
    assert any(not torch.equal(after_teacher_phase["student"][k], v) for k, v in states[2]["student"].items())


def test_isolated_teacher_never_depends_on_the_student_in_any_phase(tiny_teacher, small_data):
    phases = {"teacher_epochs": 1, "tail_epochs": 1}
    soft_tail, hard_tail = [{"alpha": 1.0, "temperature": 2.0}], [{"alpha": 0.0, "temperature": 1.0}]
    soft, _, _ = fit("joint_isolated", tiny_teacher, small_data, 3, alpha=1.0, tail_kd=soft_tail, **phases)
    hard, _, _ = fit("joint_isolated", tiny_teacher, small_data, 3, alpha=0.0, tail_kd=hard_tail, **phases)
    assert same(soft.teacher, hard.teacher)
    assert not same(soft.student, hard.student)


def test_coupled_teacher_depends_on_the_student_through_beta(tiny_teacher, small_data):
    phases = {"teacher_epochs": 1, "tail_epochs": 1}
    coupled, _, _ = fit("joint_coupled", tiny_teacher, small_data, 3, beta=1.0, **phases)
    uncoupled, _, _ = fit("joint_coupled", tiny_teacher, small_data, 3, beta=0.0, **phases)
    assert not same(coupled.teacher, uncoupled.teacher)


def test_tail_trains_only_its_copies_against_the_frozen_teachers_cached_logits(tiny_teacher, small_data):
    model, _, states = fit("joint_isolated", tiny_teacher, small_data, 3, teacher_epochs=1, tail_epochs=1)
    assert states[2]["teacher"].keys() == states[1]["teacher"].keys()
    assert all(torch.equal(states[1]["teacher"][k], v) for k, v in states[2]["teacher"].items())  # frozen in the tail
    data = model.trainer.datamodule
    texts = data.train_texts()
    assert len(texts) > len(data.labelled_train_records())  # the transfer rows are in the cache
    expected = logits_in_order(model.teacher.eval(), texts, len(model.labels))
    assert torch.allclose(model.tail.train_logits, expected, atol=1e-5)
    chosen = model.tail.candidates[model.tail.choice]
    assert same(model.student, chosen)  # the student is the copy validation chose


def test_transfer_rows_are_read_from_the_first_tail_epoch_on(small_data):
    data = TextDataModule(train_path=str(small_data["train"]), val_path=str(small_data["val"]), batch_size=16,
                          augment=Augmentation(copies=1))  # fmt: skip
    data.setup("fit")
    data.unlabeled_from_epoch = 2
    labelled = len(data.labelled_train_records())
    assert len(data.train_loader(1).dataset) == labelled
    assert len(data.train_loader(2).dataset) == labelled + len(data.unlabeled_texts()) > labelled


@pytest.mark.parametrize("winner", [0, 1])
def test_tail_choice_is_the_copy_the_validation_rows_favour(winner):
    torch.manual_seed(0)
    student = torch.nn.Linear(4, 2)
    tail = StudentTail(_Wrapped(student), [{"alpha": 1.0, "temperature": 2.0}, {"alpha": 0.5, "temperature": 1.0}])
    with torch.no_grad():
        tail.candidates[1].linear.weight.neg_()  # logits negated: the two copies disagree on every text
        tail.candidates[1].linear.bias.neg_()
    texts = [f"{i}" for i in range(20)]
    # Validation labels are what the planted winner predicts: it scores 1.0, the other 0.0.
    labels = logits_in_order(tail.candidates[winner], texts, 2).argmax(-1)
    chosen = _Wrapped(copy.deepcopy(student))
    tail.choose(chosen, texts, labels, ["a", "b"], batch_size=8)
    assert tail.choice == winner and tail.scores[winner] == 1.0
    assert same(chosen, tail.candidates[winner])


class _Wrapped(torch.nn.Module):
    """A stand-in classifier: a text's digits as features, a linear layer as the model."""

    def __init__(self, linear: torch.nn.Linear) -> None:
        super().__init__()
        self.linear = linear

    def encode(self, texts: list[str]) -> dict[str, torch.Tensor]:
        return {"features": torch.tensor([[float(int(t)), 1.0, -float(int(t)) / 3, 0.5] for t in texts])}

    def forward(self, features: torch.Tensor) -> ModelOutput:
        return ModelOutput(logits=self.linear(features), features=features)
