"""FitNets hints: the loss against hand computations, where its gradients go, the two stages, the
offline cache of hint vectors, and a hint-trained student exported without its regressor."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from test_gradient_flow import build, first_batch, grads

from bert2textcnn.data.datamodule import TextDataModule
from bert2textcnn.distill.hints import REGRESSOR, hint_loss
from bert2textcnn.distill.schemes import SCHEMES
from bert2textcnn.errors import UserError
from bert2textcnn.inference.export import MODEL_FILE, export_student
from bert2textcnn.models.bert import masked_mean

HIDDEN = torch.tensor(
    [
        [[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]],  # the third token is padding
        [[-1.0, 0.5], [50.0, 50.0], [50.0, 50.0]],  # one real token
    ]
)
MASK = torch.tensor([[1, 1, 0], [1, 0, 0]])


def test_masked_mean_leaves_padding_out():
    assert torch.allclose(masked_mean(HIDDEN, MASK), torch.tensor([[2.0, 3.0], [-1.0, 0.5]]))


def test_both_hint_losses_match_a_hand_computation():
    target = masked_mean(HIDDEN, MASK)  # [[2, 3], [-1, 0.5]]
    predicted = torch.tensor([[1.0, 1.0], [0.0, 0.5]])
    squared = ((1 - 2) ** 2 + (1 - 3) ** 2 + (0 + 1) ** 2 + 0.0) / 2  # per-row sums, batch mean
    assert hint_loss(predicted, target, "mse").item() == pytest.approx(squared)
    cos_first = (2 + 3) / (2**0.5 * 13**0.5)
    cos_second = (0 + 0.25) / (0.5 * (1 + 0.25) ** 0.5)
    assert hint_loss(predicted, target, "cosine").item() == pytest.approx(1 - (cos_first + cos_second) / 2)


def test_hints_are_off_by_default_and_the_regressor_sits_beside_the_student(tiny_teacher, small_data):
    _, plain = build("joint_isolated", tiny_teacher, small_data)
    assert plain.hints is None and REGRESSOR not in plain.student_extras
    _, hinted = build("joint_isolated", tiny_teacher, small_data, hint_weight=0.5)
    assert hinted.hints.layer == 1  # the tiny teacher's 2 layers: the middle one
    assert hinted.student_extras[REGRESSOR].in_features == hinted.student.feature_size
    assert hinted.student_extras[REGRESSOR].out_features == 32  # the tiny teacher's hidden size
    with pytest.raises(UserError, match="hint_layer 3: the teacher has layers 1 to 2"):
        build("joint_isolated", tiny_teacher, small_data, hint_weight=0.5, hint_layer=3)


@pytest.mark.parametrize("loss", ["mse", "cosine"])
def test_joint_hint_moves_student_and_regressor_never_the_teacher(loss, tiny_teacher, small_data):
    model, batch = first_batch("joint_isolated", tiny_teacher, small_data, hint_weight=0.7, hint_loss=loss)
    terms = model.training_terms(batch, 0)
    regressor = model.student_extras[REGRESSOR]
    # The hint, by hand, from the teacher's layer-1 hidden states and the student's pooled features.
    with torch.no_grad():
        hidden = model.teacher(**batch["teacher_inputs"]).hidden_states[1]
        target = masked_mean(hidden, batch["teacher_inputs"]["attention_mask"])
    features = model.student(**batch["student_inputs"]).features
    by_hand = hint_loss(regressor(features), target, loss)
    assert torch.allclose(terms["loss_hint"], by_hand)
    scheme_only = model.loss_terms(batch)["loss_student"]
    assert torch.allclose(terms["loss_student"], scheme_only + 0.7 * by_hand)
    assert all(g is None for g in grads(terms["loss_student"], model.teacher))  # the target is detached
    assert all(g is not None and g.abs().sum() > 0 for g in grads(terms["loss_student"], regressor))
    assert all(g is None for g in grads(terms["loss_teacher"], regressor))


def test_multitask_hint_reaches_its_one_loss_but_not_the_teacher(tiny_teacher, small_data):
    model, batch = first_batch("multitask", tiny_teacher, small_data, hint_weight=0.7)
    terms = model.training_terms(batch, 0)
    without = model.loss_terms(batch)
    assert torch.allclose(terms["loss"], without["loss"] + 0.7 * terms["loss_hint"])
    hint_grads = grads(terms["loss_hint"], model.teacher)
    assert all(g is None for g in hint_grads)


def test_first_of_two_stages_learns_the_hint_alone_then_the_schemes_loss(tiny_teacher, small_data):
    model, batch = first_batch(
        "joint_isolated", tiny_teacher, small_data, hint_stages="two", hint_epochs=1, hint_weight=0.0
    )
    terms = model.training_terms(batch, 0)
    assert torch.allclose(terms["loss_student"], terms["loss_hint"])
    for got, want, parameter in zip(
        grads(terms["loss_student"], model.student), grads(terms["loss_hint"], model.student),
        model.student.parameters(), strict=True,
    ):  # fmt: skip
        zero = torch.zeros_like(parameter)  # the head, which the hint does not reach: exactly cancelled
        assert torch.allclose(zero if got is None else got, zero if want is None else want, atol=1e-7)
    model.hints.in_hint_stage = lambda epoch: False  # the second stage: the scheme's loss, γ = 0
    terms = model.training_terms(batch, 0)
    assert torch.allclose(terms["loss_student"], model.loss_terms(batch)["loss_student"])


def test_offline_caches_hint_vectors_that_are_the_teachers_own(teacher_checkpoint, tiny_teacher, small_data, tmp_path):
    L.seed_everything(3, verbose=False)
    data = TextDataModule(train_path=str(small_data["train"]), val_path=str(small_data["val"]), batch_size=16)
    model = SCHEMES["offline"](
        labels=data.labels, vocab=data.vocab, max_length=data.max_length, teacher=str(tiny_teacher),
        teacher_checkpoint=teacher_checkpoint, cache_dir=str(tmp_path / "cache"), hint_weight=0.5, hint_layer=2,
    )  # fmt: skip
    before = {k: v.clone() for k, v in model.student_extras.state_dict().items()}
    trainer = L.Trainer(max_steps=3, limit_val_batches=0, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)  # fmt: skip
    trainer.fit(model, datamodule=data)
    assert len(list((tmp_path / "cache").glob("teacher_hints_layer2_*.pt"))) == 1
    texts = data.train_texts()[:5]
    from bert2textcnn.checkpoint import load_trained_teacher

    teacher = load_trained_teacher(teacher_checkpoint, data.labels, data.max_length)
    inputs = teacher.encode(texts)
    with torch.no_grad():
        direct = masked_mean(teacher(**inputs).hidden_states[2], inputs["attention_mask"])
    cached = model.teacher_source.cached_hints[[model.teacher_source.cached_rows[t] for t in texts]]
    assert torch.allclose(cached, direct, atol=1e-5)
    after = model.student_extras.state_dict()
    assert not all(torch.equal(before[k], after[k]) for k in before)  # the regressor trained

    # Exported without the regressor: the same ONNX bytes as the checkpoint with it removed.
    checkpoint = tmp_path / "hinted.ckpt"
    trainer.save_checkpoint(checkpoint)
    state = torch.load(checkpoint, weights_only=False)
    assert any(k.startswith("student_extras.") for k in state["state_dict"])
    state["state_dict"] = {k: v for k, v in state["state_dict"].items() if not k.startswith("student_extras.")}
    bare = tmp_path / "bare.ckpt"
    torch.save(state, bare)
    # `test`/`predict --ckpt_path` without the hint options: the regressor's weights are set aside.
    plain = SCHEMES["offline"](labels=data.labels, vocab=data.vocab, max_length=data.max_length,
                               teacher=str(tiny_teacher), teacher_checkpoint=teacher_checkpoint)  # fmt: skip
    loaded = torch.load(checkpoint, weights_only=False)
    plain.on_load_checkpoint(loaded)
    plain.load_state_dict(loaded["state_dict"])  # strict: nothing left over
    resumed = torch.load(checkpoint, weights_only=False)
    model.on_load_checkpoint(resumed)  # a run with hints keeps them
    assert any(k.startswith("student_extras.") for k in resumed["state_dict"])
    export_student(checkpoint, tmp_path / "hinted", texts)
    export_student(bare, tmp_path / "bare", texts)
    assert (tmp_path / "hinted" / MODEL_FILE).read_bytes() == (tmp_path / "bare" / MODEL_FILE).read_bytes()


def test_a_hint_at_weight_zero_in_one_stage_changes_nothing(tiny_teacher, small_data):
    model, batch = first_batch("joint_isolated", tiny_teacher, small_data, hint_stages="one", hint_weight=0.0)
    assert model.hints is None  # off: no regressor, no hint term
    terms = model.training_terms(batch, 0)
    assert "loss_hint" not in terms
    assert torch.equal(terms["loss_student"], model.loss_terms(batch)["loss_student"])
