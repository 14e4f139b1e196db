"""Historical teachers: the weighted soft target, their own encodings, scores files, compatibility."""

from __future__ import annotations

import lightning as L
import pytest
import torch
import torch.nn.functional as F

from bert2textcnn.compat.historical import CheckpointModel, ScoresFile, average, label_order, load_historical
from bert2textcnn.data.datamodule import TextDataModule
from bert2textcnn.distill.losses import (
    focal_weights,
    kd_to_distribution,
    mixed_soft_target,
    student_loss,
    weighted_kd,
)
from bert2textcnn.distill.metrics import CompatibilityMetrics
from bert2textcnn.distill.schemes import SCHEMES
from bert2textcnn.errors import DataError, UserError
from bert2textcnn.inference.predictor import StudentPredictor

LABELS = ["normal", "spam"]


def test_mixed_target_matches_hand_computation():
    bert = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    old = torch.tensor([[0.0, 3.0], [1.0, 1.0]])
    both = torch.tensor([True, True])
    target = mixed_soft_target([bert, old], [0.7, 0.3], [2.0, 1.0], [both, both])
    by_hand = 0.7 * F.softmax(bert / 2.0, -1) + 0.3 * F.softmax(old / 1.0, -1)
    assert torch.allclose(target, by_hand)
    assert torch.allclose(target.sum(-1), torch.ones(2))


def test_a_row_a_teacher_cannot_score_renormalises_the_others():
    bert, old = torch.tensor([[2.0, 0.0], [0.0, 1.0]]), torch.tensor([[0.0, 3.0], [9.0, -9.0]])
    target = mixed_soft_target(
        [bert, old], [0.7, 0.3], [1.0, 1.0], [torch.tensor([True, True]), torch.tensor([True, False])]
    )
    assert torch.allclose(target[1], F.softmax(bert[1], -1))  # the old model's (bogus) row is not read
    assert torch.allclose(target[0], 0.7 * F.softmax(bert[0], -1) + 0.3 * F.softmax(old[0], -1))


def test_kd_to_distribution_averages_over_masked_rows_only():
    s = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    target = torch.tensor([[0.5, 0.5], [0.9, 0.1]])
    full = kd_to_distribution(s, target, 2.0)
    first = kd_to_distribution(s, target, 2.0, torch.tensor([True, False]))
    assert torch.isclose(first, kd_to_distribution(s[:1], target[:1], 2.0))
    assert not torch.isclose(full, first)


@pytest.mark.parametrize(
    ("weights", "message"), [([1.0], "sum to less than 1"), ([-0.1], "non-negative"), ([0.2, 0.2], "one --model")]
)
def test_bad_weights_are_rejected(weights, message, tiny_teacher, small_data):
    data = TextDataModule(train_path=str(small_data["train"]), val_path=str(small_data["val"]))
    with pytest.raises(UserError, match=message):
        SCHEMES["multi_teacher"](
            labels=data.labels, vocab=data.vocab, historical=["old.ckpt"], historical_weights=weights
        )


def test_default_weights_are_equal_for_every_teacher(small_data):
    data = TextDataModule(train_path=str(small_data["train"]), val_path=str(small_data["val"]))
    model = SCHEMES["multi_teacher"](labels=data.labels, vocab=data.vocab, historical=["a.ckpt", "b.csv"])
    assert model.teacher_weights == pytest.approx([1 / 3] * 3)


def test_label_order_is_remapped_by_name_and_other_label_sets_are_rejected():
    assert label_order(["spam", "normal"], LABELS, "x") == [1, 0]
    with pytest.raises(UserError, match="differ from the data's"):
        label_order(["ham", "spam"], LABELS, "x")
    with pytest.raises(UserError, match="differ from the data's"):
        label_order(["normal", "spam", "other"], LABELS, "x")


def train_student_checkpoint(data: TextDataModule, root) -> str:
    L.seed_everything(3, verbose=False)
    model = SCHEMES["student"](labels=data.labels, vocab=data.vocab, max_length=data.max_length)
    trainer = L.Trainer(
        max_epochs=1, limit_train_batches=2, limit_val_batches=1, default_root_dir=root, logger=False,
        enable_progress_bar=False, enable_model_summary=False,
    )  # fmt: skip
    trainer.fit(model, datamodule=data)
    return trainer.checkpoint_callback.best_model_path


def test_historical_checkpoint_keeps_its_own_tokenizer_and_predicts_as_standalone(small_data, tmp_path):
    jieba_data = TextDataModule(
        train_path=str(small_data["train"]), val_path=str(small_data["val"]), tokenizer="jieba", max_length=20
    )
    old = train_student_checkpoint(jieba_data, tmp_path)
    char_data = TextDataModule(
        train_path=str(small_data["train"]), val_path=str(small_data["val"])
    )  # the new model: chars
    historical = load_historical(old, char_data.labels)
    assert isinstance(historical, CheckpointModel)
    assert historical.predictor.student.vocab.kind == "jieba" and historical.predictor.student.max_length == 20
    texts = char_data.train_texts()[:6]
    logits, known = historical.logits(texts)
    assert known.all()
    assert torch.allclose(logits, StudentPredictor.from_checkpoint(old).logits(texts))


def test_checkpoint_that_is_not_a_project_checkpoint_is_refused(tmp_path):
    torch.save({"state_dict": {}}, tmp_path / "foreign.ckpt")
    with pytest.raises(UserError, match="not a bert2textcnn checkpoint"):
        load_historical(str(tmp_path / "foreign.ckpt"), LABELS)


def test_scores_file_probabilities_logits_and_missing_rows(tmp_path):
    path = tmp_path / "scores.csv"
    path.write_text("text,prob_spam,prob_normal\n加微信,0.9,0.1\n你好,0.2,0.8\n", encoding="utf-8")
    scores = load_historical(str(path), LABELS)
    assert isinstance(scores, ScoresFile)
    logits, known = scores.logits(["你好", "没见过", "加微信"])
    assert known.tolist() == [True, False, True]
    assert torch.allclose(F.softmax(logits[[0, 2]], -1), torch.tensor([[0.8, 0.2], [0.1, 0.9]]), atol=1e-6)
    assert scores.coverage_of(["你好", "没见过"]) == 1

    raw = tmp_path / "logits.jsonl"
    raw.write_text('{"text": "你好", "logit_normal": 2.0, "logit_spam": -1.0}\n', encoding="utf-8")
    logits, _ = load_historical(str(raw), LABELS).logits(["你好"])
    assert logits.tolist() == [[2.0, -1.0]]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("text,prob_spam\n你好,0.2\n", "no score column per class: expected prob_normal, prob_spam"),
        ("words,prob_spam,prob_normal\n你好,0.2,0.8\n", "no text column 'text'"),
        ("text,prob_spam,prob_normal\n你好,0.2,0.3\n", "do not form a distribution"),
        ("text,prob_spam,prob_normal\n你好,high,0.3\n", ":2: scores must be numbers"),
    ],
)
def test_bad_scores_files_say_what_is_wrong(tmp_path, content, message):
    path = tmp_path / "scores.csv"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(DataError, match=message):
        load_historical(str(path), LABELS)


def test_compatibility_metrics_against_hand_made_predictions():
    #          row:  0  1  2  3  4  5  6  7
    target = torch.tensor([1, 1, 1, 0, 0, 0, 1, 0])
    old = torch.tensor([1, 1, 0, 0, 1, 0, 1, 0])  # right on 0,1,3,5,6,7; spam hits: 0,1,6
    new = torch.tensor([1, 0, 1, 0, 0, 1, 1, 0])  # keeps hits 0,6; loses 1; flips 5 wrong; fixes 2,4
    metrics = CompatibilityMetrics(positive_index=1)
    one_hot = lambda p: F.one_hot(p, 2).float()  # noqa: E731
    metrics.update(one_hot(new[:5]), one_hot(old[:5]), target[:5])
    metrics.update(one_hot(new[5:]), one_hot(old[5:]), target[5:])
    values = metrics.compute()
    assert values["coverage"].item() == pytest.approx(2 / 3)
    assert values["negative_flip_rate"].item() == pytest.approx(2 / 8)  # rows 1 and 5
    assert values["positive_flip_rate"].item() == pytest.approx(2 / 8)  # rows 2 and 4
    assert values["agreement"].item() == pytest.approx(4 / 8)  # rows 0, 3, 6, 7

    no_hits = CompatibilityMetrics(positive_index=1)
    no_hits.update(one_hot(new), one_hot(torch.zeros(8, dtype=torch.long)), target)
    assert no_hits.compute()["coverage"].isnan()  # nothing to cover is not a coverage of 0


def test_multi_teacher_trains_with_a_cached_bert_and_a_scores_file(teacher_checkpoint, small_data, tmp_path):
    data = TextDataModule(train_path=str(small_data["train"]), val_path=str(small_data["val"]), batch_size=16)
    L.seed_everything(0, verbose=False)
    bert_ckpt = teacher_checkpoint

    texts = data.train_texts()
    scores = tmp_path / "prod.csv"  # the production model scored all but the last 10 training texts
    scores.write_text(
        "text,prob_normal,prob_spam\n" + "".join(f'"{t}",0.3,0.7\n' for t in texts[:-10]), encoding="utf-8"
    )
    model = SCHEMES["multi_teacher"](
        labels=data.labels, vocab=data.vocab, historical=[str(scores)], historical_weights=[0.4],
        teacher_checkpoint=bert_ckpt, cache_dir=str(tmp_path / "cache"),
    )  # fmt: skip
    trainer = L.Trainer(max_epochs=1, limit_train_batches=3, limit_val_batches=2, default_root_dir=tmp_path / "mt",
                        logger=False, enable_progress_bar=False)  # fmt: skip
    trainer.fit(model, datamodule=data)
    assert model.teacher is None and any((tmp_path / "cache").iterdir())  # the frozen BERT's logits, cached
    assert trainer.global_step == 3  # one optimizer (the student's) per batch
    metrics = trainer.callback_metrics
    assert {"train/loss_kd", "train/loss_kd_bert", "train/loss_kd_historical_1"} <= set(metrics)
    assert "val/compat_coverage" in metrics and "val/compat_negative_flip_rate" in metrics


def test_focal_weights_are_one_per_row_alpha_plus_beta_where_the_old_model_was_right():
    old = torch.tensor([[2.0, 0.0], [0.0, 2.0], [2.0, 0.0], [0.0, 2.0]])  # predicts 0, 1, 0, 1
    labels = torch.tensor([0, 0, -1, 1])  # right, wrong, unlabelled, right
    weights = focal_weights(old, labels, alpha=1.0, beta=5.0)
    assert weights.shape == (4,) and weights.tolist() == [6.0, 1.0, 1.0, 6.0]


def test_weighted_kd_matches_a_loop_over_rows():
    student = torch.tensor([[0.5, -0.5], [1.0, 2.0], [0.0, 0.0]])
    target = torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.5, 0.5]])
    weights, mask = torch.tensor([6.0, 1.0, 3.0]), torch.tensor([True, True, False])
    by_hand = 0.0
    for s, p, w, m in zip(student, target, weights, mask, strict=True):
        q = F.softmax(s / 2.0, -1)
        by_hand += float(m) * float(w) * 4.0 * float((p * (p.log() - q.log())).sum())
    assert torch.isclose(weighted_kd(student, target, 2.0, weights, mask), torch.tensor(by_hand / 2))


def test_focal_multi_teacher_adds_each_old_models_focal_term_to_the_bert_only_loss(tiny_teacher, small_data):
    data = TextDataModule(train_path=str(small_data["train"]), val_path=str(small_data["val"]))
    model = SCHEMES["multi_teacher"](labels=data.labels, vocab=data.vocab, teacher=str(tiny_teacher),
                                     historical=["old.ckpt"], historical_weights=[0.3],
                                     focal={"alpha": 0.0, "beta": 5.0})  # fmt: skip
    student = torch.tensor([[0.2, 0.1], [0.3, -0.2], [0.0, 1.0], [1.5, 0.5]], requires_grad=True)
    bert = torch.tensor([[1.0, 0.0], [0.0, 1.0], [2.0, -1.0], [0.5, 0.5]])
    old = torch.tensor([[3.0, 0.0], [3.0, 0.0], [0.0, 3.0], [0.0, 3.0]])  # predicts 0, 0, 1, 1
    labels = torch.tensor([0, 1, 1, -1])  # old right, wrong, right, unlabelled
    batch = {"label": labels, "historical_logits": [old], "historical_masks": [torch.ones(4, dtype=torch.bool)]}
    terms = model.student_loss_terms(student, bert, batch)
    bert_only = student_loss(student, bert, labels, model.student_targets)["loss_student"]
    focal = weighted_kd(student, F.softmax(old, -1), 1.0, torch.tensor([5.0, 0.0, 5.0, 0.0]), torch.ones(4) > 0)
    assert torch.isclose(terms["loss_student"], bert_only + 0.3 * focal)
    assert torch.isclose(terms["loss_focal_historical_1"], focal)
    # With α_f = 0 a row the old model got wrong, or could not judge (unlabelled), gets no focal gradient.
    focal_grad = torch.autograd.grad(terms["loss_student"] - bert_only, student)[0]
    assert focal_grad[1].abs().sum() == 0 and focal_grad[3].abs().sum() == 0
    assert focal_grad[0].abs().sum() > 0 and focal_grad[2].abs().sum() > 0


@pytest.mark.parametrize("focal", [{"alpha": 1.0}, {"alpha": -1.0, "beta": 5.0}, {"alpha": 1, "beta": 5, "gamma": 2}])
def test_bad_focal_options_are_refused(focal, small_data):
    data = TextDataModule(train_path=str(small_data["train"]), val_path=str(small_data["val"]))
    with pytest.raises(UserError, match=r"--model\.focal takes"):
        SCHEMES["multi_teacher"](labels=data.labels, vocab=data.vocab, historical=["old.ckpt"], focal=focal)


def test_several_old_models_are_compared_as_their_ensemble_and_one_by_one(small_data, tmp_path, capsys):
    from test_serving import trained_checkpoint

    old = trained_checkpoint("student", small_data, tmp_path)
    data = TextDataModule(train_path=str(small_data["train"]), test_path=str(small_data["val"]), batch_size=16)
    texts, targets = data.texts_and_labels("test")
    generator = torch.Generator().manual_seed(0)
    scored = torch.rand(len(texts), generator=generator)  # a second old model: a scores file
    scores = tmp_path / "prod.csv"
    rows = "".join(f'"{t}",{1 - p:.6f},{p:.6f}\n' for t, p in zip(texts, scored.tolist(), strict=True))
    scores.write_text("text,prob_normal,prob_spam\n" + rows, encoding="utf-8")
    L.seed_everything(1, verbose=False)
    model = SCHEMES["student"](labels=data.labels, vocab=data.vocab, compare_to=[old, str(scores)])
    trainer = L.Trainer(logger=False, enable_progress_bar=False, default_root_dir=tmp_path)
    trainer.test(model, datamodule=data)
    new = StudentPredictor(model.student, data.labels).probabilities(texts)
    first = StudentPredictor.from_checkpoint(old).probabilities(texts)
    second = torch.stack([1 - scored, scored], 1)
    metrics = trainer.callback_metrics

    def negative_flip_rate(reference: torch.Tensor) -> float:
        return ((reference.argmax(-1) == targets) & (new.argmax(-1) != targets)).float().mean().item()

    ensemble = (first + second) / 2
    for name, reference in (("compat", ensemble), ("compat_old1", first), ("compat_old2", second)):
        assert metrics[f"test/{name}_negative_flip_rate"].item() == pytest.approx(
            negative_flip_rate(reference), abs=1e-4
        )
    shown = capsys.readouterr().out
    assert f"Student vs the average of {old}, {scores} (old model)" in shown
    assert f"Student vs {old} (old model)" in shown and f"Student vs {scores} (old model)" in shown


def test_an_ensemble_averages_probabilities_on_the_rows_every_model_scores():
    first = (torch.tensor([[2.0, 0.0], [0.0, 1.0]]), torch.tensor([True, True]))
    second = (torch.tensor([[0.0, 2.0], [5.0, 0.0]]), torch.tensor([True, False]))
    logits, mask = average([first, second])
    assert mask.tolist() == [True, False]
    expected = (F.softmax(first[0][0], -1) + F.softmax(second[0][0], -1)) / 2
    assert torch.allclose(logits[0].softmax(-1), expected, atol=1e-6)
