"""Which parameters each scheme's losses move, checked on parameters and .grad directly."""

from __future__ import annotations

import lightning as L
import pytest
import torch
import torch.nn.functional as F

from bert2textcnn.data.datamodule import TextDataModule
from bert2textcnn.distill.options import DistillOptions
from bert2textcnn.distill.phases import PhaseOptions
from bert2textcnn.distill.schemes import SCHEMES

JOINT_BATCHES_ONLY = {"teacher_epochs": 0, "tail_epochs": 0}

# The loss each scheme back-propagates into each model.
OBJECTIVE = {
    "joint_isolated": {"student": "loss_student", "teacher": "loss_teacher"},
    "joint_coupled": {"student": "loss_student", "teacher": "loss_teacher"},
    "multitask": {"student": "loss", "teacher": "loss"},
}


def build(scheme: str, teacher, data_paths, **hparams):
    # KD from the first batch: these tests are about where its gradients go (the untrained tiny
    # teacher would keep the gate shut); the gate and the ramp have tests of their own below.
    if DistillOptions in SCHEMES[scheme].option_groups:
        hparams.setdefault("teacher_gate", None)
    if PhaseOptions in SCHEMES[scheme].option_groups:  # the scheme's own batch from the first (phases: below)
        hparams = JOINT_BATCHES_ONLY | hparams
    L.seed_everything(7, verbose=False)
    data = TextDataModule(train_path=str(data_paths["train"]), val_path=str(data_paths["val"]), batch_size=16)
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


def first_batch(scheme: str, teacher, data_paths, **hparams):
    """A model in eval mode (no dropout, so every forward agrees) and one encoded batch."""
    data, model = build(scheme, teacher, data_paths, **hparams)
    model.configure_model()
    model.eval()
    data.setup("fit")
    return model, model.on_before_batch_transfer(next(iter(data.train_dataloader())), 0)


def snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def same(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    left, right = snapshot(a), snapshot(b)
    return all(torch.equal(left[k], right[k]) for k in left)


def grads(loss: torch.Tensor, module: torch.nn.Module) -> list[torch.Tensor]:
    return list(torch.autograd.grad(loss, list(module.parameters()), retain_graph=True, allow_unused=True))


@pytest.mark.parametrize("student", ["textcnn", "bert"])
def test_joint_isolated_student_never_moves_the_teacher(student, tiny_teacher, small_data):
    soft_only = train_one_batch("joint_isolated", tiny_teacher, small_data, alpha=1.0, student=student)
    hard_only = train_one_batch("joint_isolated", tiny_teacher, small_data, alpha=0.0, student=student)
    assert same(soft_only.teacher, hard_only.teacher)
    assert not same(soft_only.student, hard_only.student)


def test_joint_isolated_teacher_does_learn(tiny_teacher, small_data):
    _, untrained = build("joint_isolated", tiny_teacher, small_data)
    untrained.configure_model()
    trained = train_one_batch("joint_isolated", tiny_teacher, small_data)
    assert not same(untrained.teacher, trained.teacher)


def test_joint_coupled_student_loss_moves_the_teacher_and_beta_zero_is_isolation(tiny_teacher, small_data):
    coupled = train_one_batch("joint_coupled", tiny_teacher, small_data, beta=1.0)
    uncoupled = train_one_batch("joint_coupled", tiny_teacher, small_data, beta=0.0)
    isolated = train_one_batch("joint_isolated", tiny_teacher, small_data)
    assert not same(coupled.teacher, uncoupled.teacher)
    assert same(uncoupled.teacher, isolated.teacher)
    assert same(uncoupled.student, isolated.student)


def test_joint_coupled_teacher_gradient_is_ce_plus_beta_kd_on_detached_student(tiny_teacher, small_data):
    model, batch = first_batch("joint_coupled", tiny_teacher, small_data, beta=0.7, temperature=3.0)
    terms = model.loss_terms(batch)
    s, t, y = model.student_logits(batch).detach(), model.teacher_logits(batch), batch["label"]
    p_t, log_p_s = F.softmax(t / 3.0, -1), F.log_softmax(s / 3.0, -1)
    kd = 3.0**2 * (p_t * (p_t.log() - log_p_s)).sum(-1).mean()
    by_hand = F.cross_entropy(t, y) + 0.7 * kd
    for got, want in zip(grads(terms["loss_teacher"], model.teacher), grads(by_hand, model.teacher), strict=True):
        assert (got is None and want is None) or torch.allclose(got, want, atol=1e-6)
    assert all(g is None for g in grads(terms["loss_teacher"], model.student))


def test_multitask_teacher_gradient_is_its_ce_plus_the_students_kd(tiny_teacher, small_data):
    model, batch = first_batch("multitask", tiny_teacher, small_data, alpha=0.4, trust_labels=False)
    terms = model.loss_terms(batch)
    summed = [
        None if a is None else a + b
        for a, b in zip(
            grads(terms["loss_ce_teacher"], model.teacher),
            grads(0.4 * terms["loss_kd"], model.teacher),
            strict=True,
        )
    ]
    kd_only = grads(terms["loss_kd"], model.teacher)
    assert any(g is not None and g.abs().sum() > 0 for g in kd_only), "KD must reach the teacher in multitask"
    for got, want in zip(grads(terms["loss"], model.teacher), summed, strict=True):
        assert (got is None and want is None) or torch.allclose(got, want, atol=1e-6)


@pytest.mark.parametrize("scheme", sorted(OBJECTIVE))
@pytest.mark.parametrize("trust_labels", [True, False])
def test_student_gradient_is_the_hand_mixed_loss(scheme, trust_labels, tiny_teacher, small_data):
    """α·KD + (1−α)·CE per row; with trust_labels (the default), CE alone where the teacher is wrong."""
    alpha, temperature = 0.3, 2.5
    model, batch = first_batch(scheme, tiny_teacher, small_data, alpha=alpha, temperature=temperature,
                               trust_labels=trust_labels)  # fmt: skip
    loss = model.loss_terms(batch)[OBJECTIVE[scheme]["student"]]
    s, t, y = model.student_logits(batch), model.teacher_logits(batch).detach(), batch["label"]
    p_t = F.softmax(t / temperature, -1)
    kd = temperature**2 * (p_t * (p_t.log() - F.log_softmax(s / temperature, -1))).sum(-1)
    teacher_right = (t.argmax(-1) == y).float() if trust_labels else torch.ones_like(kd)
    if trust_labels:  # the untrained tiny teacher must be wrong somewhere for the mask to be tested
        assert 0 < teacher_right.sum() < len(y)
    weight = alpha * teacher_right
    by_hand = (weight * kd + (1 - weight) * F.cross_entropy(s, y, reduction="none")).mean()
    for got, want in zip(grads(loss, model.student), grads(by_hand, model.student), strict=True):
        assert torch.allclose(got, want, atol=1e-6)


@pytest.mark.parametrize("scheme", ["joint_isolated", "joint_coupled"])
def test_two_optimizers_each_own_one_model(scheme, tiny_teacher, small_data):
    _, model = build(scheme, tiny_teacher, small_data)
    model.configure_model()
    assert list(model.trained_modules()) == ["teacher", "student"]
    assert model.optimizer_steps_per_batch == 2 and not model.automatic_optimization


def test_multitask_is_one_optimizer_with_a_learning_rate_per_model(tiny_teacher, small_data):
    model = train_one_batch("multitask", tiny_teacher, small_data, student_lr=1e-3, teacher_lr=2e-5)
    [optimizer] = model.trainer.optimizers
    groups = {g["name"]: (g["initial_lr"], g["weight_decay"]) for g in optimizer.param_groups}
    assert groups == {
        "student": (1e-3, 0.01),
        "student_no_decay": (1e-3, 0.0),
        "teacher": (2e-5, 0.01),
        "teacher_no_decay": (2e-5, 0.0),
    }
    assert model.steps() == [(0, "loss")]  # a joint batch: the summed loss, one backward, one step
    # As BERT was trained: no weight decay on biases and LayerNorm weights, decay on every matrix.
    undecayed = {id(p) for g in optimizer.param_groups if g["weight_decay"] == 0 for p in g["params"]}
    norms = [m.weight for m in model.modules() if isinstance(m, torch.nn.LayerNorm)]
    biases = [m.bias for m in model.modules() if isinstance(m, torch.nn.Linear | torch.nn.Conv1d)]
    matrices = [m.weight for m in model.modules() if isinstance(m, torch.nn.Linear | torch.nn.Embedding)]
    assert norms and all(id(p) in undecayed for p in norms + biases)
    assert not any(id(p) in undecayed for p in matrices)


def test_student_scheme_has_no_teacher(tiny_teacher, small_data):
    _, student = build("student", tiny_teacher, small_data)
    student.configure_model()
    assert student.teacher is None
    assert set(student.trained_modules()) == {"student"}


def held_shut(model):
    """The teacher gate kept closed, whatever the teacher scores: KD's zero phase."""
    model.kd_schedule.opened_at = None
    model.kd_schedule.observe = lambda *args: None
    return model


@pytest.mark.parametrize("scheme", sorted(OBJECTIVE))
def test_while_the_gate_is_shut_the_student_learns_its_labels_alone(scheme, tiny_teacher, small_data):
    model, batch = first_batch(scheme, tiny_teacher, small_data, teacher_gate=0.05, alpha=0.7)
    terms = held_shut(model).loss_terms(batch)
    assert terms["kd_weight"].item() == 0.0
    s, y = model.student_logits(batch), batch["label"]
    by_hand = F.cross_entropy(s, y)  # no KD term at all: its gradient into the student is zero
    for got, want in zip(grads(terms[OBJECTIVE[scheme]["student"]], model.student), grads(by_hand, model.student),
                         strict=True):  # fmt: skip
        assert torch.allclose(got, want, atol=1e-6)


@pytest.mark.parametrize("scheme", ["joint_isolated", "joint_coupled"])
def test_while_the_gate_is_shut_the_teacher_learns_its_labels_alone(scheme, tiny_teacher, small_data):
    """joint_isolated's teacher never sees the student; joint_coupled's β·KD waits with the student's."""
    coupling = {"beta": 1.0} if scheme == "joint_coupled" else {}
    model, batch = first_batch(scheme, tiny_teacher, small_data, teacher_gate=0.05, **coupling)
    terms = held_shut(model).loss_terms(batch)
    by_hand = F.cross_entropy(model.teacher_logits(batch), batch["label"])
    for got, want in zip(grads(terms["loss_teacher"], model.teacher), grads(by_hand, model.teacher), strict=True):
        assert (got is None and want is None) or torch.allclose(got, want, atol=1e-6)
    assert all(g is None for g in grads(terms["loss_teacher"], model.student))


def test_joint_isolated_teacher_gradient_is_the_same_with_the_gate_open_or_shut(tiny_teacher, small_data):
    shut, batch = first_batch("joint_isolated", tiny_teacher, small_data, teacher_gate=0.05)
    opened, _ = first_batch("joint_isolated", tiny_teacher, small_data, teacher_gate=None)
    shut_terms, open_terms = held_shut(shut).loss_terms(batch), opened.loss_terms(batch)
    assert shut_terms["kd_weight"].item() == 0.0 and open_terms["kd_weight"].item() == 1.0
    assert not torch.equal(shut_terms["loss_student"], open_terms["loss_student"])
    for a, b in zip(grads(shut_terms["loss_teacher"], shut.teacher), grads(open_terms["loss_teacher"], opened.teacher),
                    strict=True):  # fmt: skip
        assert (a is None and b is None) or torch.allclose(a, b, atol=1e-6)


def test_a_ramp_scales_alpha_between_zero_and_full(tiny_teacher, small_data):
    alpha, temperature = 0.6, 1.0
    model, batch = first_batch("joint_isolated", tiny_teacher, small_data, teacher_gate=None, alpha=alpha,
                               kd_warmup=0.5, trust_labels=False)  # fmt: skip
    model.run_batches = 8  # the ramp spans 4 batches: factor 1/4 at the first
    terms = model.loss_terms(batch)
    assert terms["kd_weight"].item() == pytest.approx(0.25)
    s, t, y = model.student_logits(batch), model.teacher_logits(batch).detach(), batch["label"]
    p_t = F.softmax(t / temperature, -1)
    kd = (p_t * (p_t.log() - F.log_softmax(s / temperature, -1))).sum(-1)
    weight = alpha * 0.25
    by_hand = (weight * kd + (1 - weight) * F.cross_entropy(s, y, reduction="none")).mean()
    for got, want in zip(grads(terms["loss_student"], model.student), grads(by_hand, model.student), strict=True):
        assert torch.allclose(got, want, atol=1e-6)


class ProbedStudent(SCHEMES["student"]):
    """A test-only method: a linear probe on the student's pooled features, trained beside it."""

    name = "probed_student"

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.student_extras["probe"] = torch.nn.Linear(self.student.head.in_features, len(self.labels))

    def loss_terms(self, batch):
        terms = super().loss_terms(batch)
        features = self.student(**batch["student_inputs"]).features
        probe = F.cross_entropy(self.student_extras["probe"](features), batch["label"])
        return {**terms, "loss_probe": probe, "loss": terms["loss"] + probe}


def test_parameters_a_method_adds_train_with_the_student_and_stay_out_of_its_predictions(small_data, tmp_path):
    from bert2textcnn.inference.predictor import StudentPredictor

    L.seed_everything(7, verbose=False)
    data = TextDataModule(train_path=str(small_data["train"]), val_path=str(small_data["val"]), batch_size=16)
    model = ProbedStudent(labels=data.labels, vocab=data.vocab, max_length=data.max_length)
    before = snapshot(model.student_extras)
    trainer = L.Trainer(max_steps=2, limit_val_batches=0, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)  # fmt: skip
    trainer.fit(model, datamodule=data)
    [optimizer] = trainer.optimizers
    in_optimizer = {
        id(p) for group in optimizer.param_groups if group["name"].startswith("student") for p in group["params"]
    }
    assert all(id(p) in in_optimizer for p in model.student_extras.parameters())
    assert not same_state(before, snapshot(model.student_extras))  # the probe learned
    path = tmp_path / "probed.ckpt"
    trainer.save_checkpoint(path)
    assert "student_extras.probe.weight" in torch.load(path, weights_only=True)["state_dict"]
    assert StudentPredictor.from_checkpoint(path).probabilities(["加微信领取免费会员"]).shape == (1, 2)


def same_state(left: dict[str, torch.Tensor], right: dict[str, torch.Tensor]) -> bool:
    return all(torch.equal(left[k], right[k]) for k in left)


@pytest.mark.parametrize("scheme", ["offline", "joint_isolated", "multitask"])
def test_parameters_a_method_adds_join_the_students_optimizer_in_every_scheme(scheme, tiny_teacher, small_data):
    _, model = build(scheme, tiny_teacher, small_data)
    model.student_extras["probe"] = torch.nn.Linear(4, 2)
    student_side = {id(p) for p in model.trained_modules()["student"].parameters()}
    assert {id(p) for p in model.student_extras.parameters()} <= student_side
    assert {id(p) for p in model.student.parameters()} <= student_side
