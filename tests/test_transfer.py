"""Unlabelled rows: the losses they feed, the data module that builds them, augmentation, mixing."""

from __future__ import annotations

import logging
import math

import pytest
import torch
import torch.nn.functional as F
from conftest import read_demo, write_csv
from test_gradient_flow import build, grads

from bert2textcnn.data.augment import Augmentation, augment
from bert2textcnn.data.datamodule import TextDataModule
from bert2textcnn.data.records import Record
from bert2textcnn.data.transfer import MixedBatchOrder, keep_label_fraction
from bert2textcnn.data.vocab import MASK, Vocab
from bert2textcnn.distill import logits_cache
from bert2textcnn.distill.losses import UNLABELED, StudentTargets, kd_per_row, labelled_ce, student_loss
from bert2textcnn.distill.schemes import SCHEMES
from bert2textcnn.errors import UserError
from bert2textcnn.models.bert import BertClassifier

S = torch.tensor([[2.0, -1.0], [0.3, 0.1], [-0.5, 1.5], [1.0, 1.2]])
T = torch.tensor([[1.0, 0.0], [-2.0, 2.0], [0.2, 0.1], [3.0, -3.0]])
Y = torch.tensor([0, UNLABELED, 1, UNLABELED])


def softmax(row: list[float], temperature: float = 1.0) -> list[float]:
    exp = [math.exp(v / temperature) for v in row]
    return [v / sum(exp) for v in exp]


def kd_by_hand(s: list[float], t: list[float], temperature: float) -> float:
    p, q = softmax(t, temperature), softmax(s, temperature)
    return temperature**2 * sum(pi * math.log(pi / qi) for pi, qi in zip(p, q, strict=True))


def ce_by_hand(s: list[float], label: int) -> float:
    return -math.log(softmax(s)[label])


def test_soft_target_on_a_mixed_batch_matches_hand_computation():
    alpha, temperature = 0.3, 2.0
    per_row = []
    for s, t, y in zip(S.tolist(), T.tolist(), Y.tolist(), strict=True):
        kd = kd_by_hand(s, t, temperature)
        per_row.append(kd if y == UNLABELED else alpha * kd + (1 - alpha) * ce_by_hand(s, y))
    terms = student_loss(S, T, Y, StudentTargets(alpha, temperature, trust_labels=False))
    assert math.isclose(terms["loss_student"].item(), sum(per_row) / 4, rel_tol=1e-5)
    assert math.isclose(
        terms["loss_ce_student"].item(), (ce_by_hand(S[0].tolist(), 0) + ce_by_hand(S[2].tolist(), 1)) / 2, rel_tol=1e-5
    )
    assert "loss_ce_pseudo" not in terms


def test_unlabelled_rows_never_get_a_ce_term():
    """With α = 0 a labelled row learns CE alone and an unlabelled row the KD term alone."""
    logits = S.clone().requires_grad_()
    student_loss(logits, T, Y, StudentTargets(alpha=0.0, temperature=2.0))["loss_student"].backward()
    by_row = S.clone().requires_grad_()
    kd_row_1 = kd_per_row(by_row, F.softmax(T / 2, -1), 2.0)[1]
    ce_row_0 = F.cross_entropy(by_row[[0]], Y[[0]])
    (expected,) = torch.autograd.grad((kd_row_1 + ce_row_0) / 4, by_row)  # the mean is over all 4 rows
    assert torch.allclose(logits.grad[:2], expected[:2], atol=1e-6)


def test_hard_pseudo_labels_skip_unconfident_rows():
    threshold = 0.9
    teacher = T.clone()
    teacher[3] = torch.tensor([0.2, -0.2])  # row 3: top p = 0.60 < 0.9, no target; row 1: p = 0.98, kept
    alpha, temperature = 0.5, 2.0
    labelled = [
        alpha * kd_by_hand(S[i].tolist(), teacher[i].tolist(), temperature)
        + (1 - alpha) * ce_by_hand(S[i].tolist(), Y[i].item())
        for i in (0, 2)
    ]
    pseudo = ce_by_hand(S[1].tolist(), 1)  # the teacher's argmax for row 1
    targets = StudentTargets(alpha, temperature, pseudo_label_threshold=threshold, trust_labels=False)
    terms = student_loss(S, teacher, Y, targets)
    assert math.isclose(terms["loss_student"].item(), (sum(labelled) + pseudo) / 3, rel_tol=1e-5)
    assert terms["pseudo_label_kept"].item() == 0.5
    assert math.isclose(terms["loss_ce_pseudo"].item(), pseudo, rel_tol=1e-5)


def test_labelled_ce_is_zero_not_nan_without_labels():
    logits = torch.randn(3, 2, requires_grad=True)
    loss = labelled_ce(logits, torch.full((3,), UNLABELED))
    loss.backward()
    assert loss.item() == 0 and torch.count_nonzero(logits.grad) == 0


@pytest.mark.parametrize("scheme", ["joint_isolated", "joint_coupled", "multitask"])
def test_teacher_gets_no_gradient_from_unlabelled_rows_ce(tiny_teacher, small_data, scheme):
    data, model = build(scheme, tiny_teacher, small_data)
    model.configure_model()
    model.eval()
    data.setup("fit")
    batch = next(iter(data.train_dataloader()))
    batch["label"] = torch.full_like(batch["label"], UNLABELED)
    batch = model.on_before_batch_transfer(batch, 0)
    terms = model.loss_terms(batch)
    assert terms["loss_ce_teacher"].item() == 0
    assert all(g is None or torch.count_nonzero(g) == 0 for g in grads(terms["loss_ce_teacher"], model.teacher))
    assert "loss_ce_student" not in terms and terms["loss_kd_unlabeled"].item() > 0


def test_keep_label_fraction_is_stratified_and_seeded():
    records = [Record(f"t{i}", "spam" if i % 10 == 0 else "normal", i + 2) for i in range(200)]
    kept, dropped = keep_label_fraction(records, 0.1, seed=3)
    assert len(kept) + len(dropped) == 200
    assert sum(r.label == "spam" for r in kept) == 2 and sum(r.label == "normal" for r in kept) == 18
    assert kept == keep_label_fraction(records, 0.1, seed=3)[0]
    assert kept != keep_label_fraction(records, 0.1, seed=4)[0]
    tiny, _ = keep_label_fraction(records, 0.001, seed=3)
    assert {r.label for r in tiny} == {"spam", "normal"}  # every class keeps at least one label
    with pytest.raises(UserError, match="label_fraction"):
        keep_label_fraction(records, 0.0, seed=3)


def test_mixed_batch_order_fixes_the_unlabelled_count_per_batch():
    torch.manual_seed(0)
    labelled, unlabelled = list(range(10)), list(range(10, 100))
    order = list(MixedBatchOrder(labelled, unlabelled, batch_size=8, unlabeled_share=0.75))
    batches = [order[i : i + 8] for i in range(0, len(order), 8)]
    assert len(order) == len(MixedBatchOrder(labelled, unlabelled, 8, 0.75))
    assert all(sum(i >= 10 for i in batch) == 6 for batch in batches)
    assert set(order) >= set(unlabelled)  # the longer stream is read whole each epoch


def test_augmentation_is_deterministic_non_empty_and_masks_to_unk():
    texts = [row["text"] for row in read_demo("train")[:40]]
    options = Augmentation(copies=5, mask_rate=0.3, pos_rate=0.3, ngram_rate=0.5)
    first = augment(texts, options, seed=1)
    assert first == augment(texts, options, seed=1)
    assert first != augment(texts, options, seed=2)
    assert all(copy.replace(MASK, "").strip() for copy in first)  # at least one real word each
    assert not set(first) & set(texts)
    assert any(MASK in copy for copy in first)
    vocab = Vocab.build(texts)
    assert vocab.encode(f"恭喜{MASK}中奖") == [*vocab.encode("恭喜"), 1, *vocab.encode("中奖")]
    with pytest.raises(UserError, match="augment"):
        Augmentation(mask_rate=0.7, pos_rate=0.5)


def test_teacher_sees_its_own_mask_token_even_when_lowercasing(tiny_teacher):
    teacher = BertClassifier.from_directory(str(tiny_teacher), 2, lowercase=True)
    ids = teacher.encode([f"QQ{MASK}群"])["input_ids"][0].tolist()
    assert teacher.tokenizer.mask_token_id in ids


@pytest.fixture
def pool(tmp_path):
    path = tmp_path / "pool.csv"
    rows = read_demo("val")[40:70]  # has a label column, which must be ignored
    return write_csv(path, rows)


def test_datamodule_puts_unlabelled_rows_after_labelled_ones(small_data, pool, caplog):
    caplog.set_level(logging.WARNING, logger="bert2textcnn")
    data = TextDataModule(
        train_path=str(small_data["train"]),
        val_path=str(small_data["val"]),
        unlabeled_path=str(pool),
        label_fraction=0.25,
        batch_size=8,
    )
    assert "ignoring its 'label' column" in caplog.text
    data.setup("fit")
    labelled = data.labelled_train_records()
    assert len(labelled) == 24 and len(data.unlabeled_texts()) == 72 + 30
    batches = list(data.train_dataloader())
    rows = [(i, label) for b in batches for i, label in zip(b["index"].tolist(), b["label"].tolist(), strict=True)]
    assert sorted(i for i, _ in rows) == list(range(24 + 102))
    assert all((label == UNLABELED) == (i >= 24) for i, label in rows)
    pool_only = {c for row in read_demo("val")[40:70] for c in row["text"].lower()} - {
        c for row in read_demo("train")[:96] for c in row["text"].lower()
    }
    assert all(c in data.vocab._ids for c in pool_only if c.strip())  # the vocabulary covers the pool


def test_schemes_without_a_teacher_drop_unlabelled_rows(small_data, pool, caplog):
    caplog.set_level(logging.WARNING, logger="bert2textcnn")
    data = TextDataModule(
        train_path=str(small_data["train"]), val_path=str(small_data["val"]), unlabeled_path=str(pool),
        label_fraction=0.5, learn_from_unlabeled=False,
    )  # fmt: skip
    assert "Ignoring --data.unlabeled_path" in caplog.text
    assert data.unlabeled_texts() == [] and len(data.train_texts()) == 48


def test_logits_cache_covers_the_unlabelled_file_and_follows_its_changes(teacher_checkpoint, small_data, tmp_path):
    pool_rows = read_demo("val")[40:70]
    cache = tmp_path / "cache"

    def cached_logits(rows):
        path = write_csv(tmp_path / "pool.csv", rows)
        data = TextDataModule(
            train_path=str(small_data["train"]), val_path=str(small_data["val"]), unlabeled_path=str(path)
        )
        texts = data.train_texts()
        logits = logits_cache.teacher_logits_cache(texts, teacher_checkpoint, data.labels, data.max_length, cache)
        return texts, logits

    texts, logits = cached_logits(pool_rows)
    assert logits.shape == (96 + 30, 2) and texts[96:] == [row["text"] for row in pool_rows]
    cached_logits(pool_rows)
    assert len(list(cache.glob("*.pt"))) == 1  # same pool: reused
    changed = [*pool_rows[:-1], {"text": "全新的一条未标注短信"}]
    cached_logits(changed)
    assert len(list(cache.glob("*.pt"))) == 2  # pool changed: recomputed under a new key


def test_multi_teacher_pseudo_labels_follow_the_mix_of_teachers(small_data):
    data = TextDataModule(train_path=str(small_data["train"]), val_path=str(small_data["val"]))
    model = SCHEMES["multi_teacher"](
        labels=data.labels, vocab=data.vocab, historical=["old.csv"], historical_weights=[0.4],
        unlabeled_target="hard", temperature=2.0, teacher_gate=None,
    )  # fmt: skip
    bert = torch.tensor([[math.log(0.7), math.log(0.3)]])  # BERT: class 0 at 0.7
    old = torch.tensor([[math.log(0.01), math.log(0.99)]])  # old model: class 1 at 0.99
    # Mix at T = 1: p(1) = 0.6·0.3 + 0.4·0.99 = 0.576, so the pseudo-label is 1, not BERT's 0.
    student = torch.tensor([[0.5, -0.5]])
    batch = {"label": torch.tensor([UNLABELED]), "historical_logits": [old], "historical_masks": [torch.tensor([True])]}
    terms = model.student_loss_terms(student, bert, batch)
    assert math.isclose(terms["loss_student"].item(), ce_by_hand(student[0].tolist(), 1), rel_tol=1e-5)
