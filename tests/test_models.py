"""Model kinds behind one protocol: built from options, described in a checkpoint, rebuilt from it."""

from __future__ import annotations

import json
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch

from bert2textcnn.checkpoint import read_checkpoint, student_description
from bert2textcnn.compat.historical import load_historical
from bert2textcnn.data.datamodule import TextDataModule
from bert2textcnn.distill.schemes import SCHEMES
from bert2textcnn.errors import UserError
from bert2textcnn.inference.export import export_student
from bert2textcnn.inference.predictor import StudentPredictor
from bert2textcnn.inference.serving import OnnxClassifier
from bert2textcnn.models import SCHEME_KINDS, STUDENT_KINDS, build_student, classifier_from_description
from bert2textcnn.models.bert import BertClassifier

LEGACY = Path(__file__).parent / "data" / "legacy_textcnn_student"
TEXTS = ["加微信领取免费会员", "今天地铁又晚点了", "恭喜您中奖了请点击链接", "好"]


def bert_options(teacher: Path, layers: int = 1, init: str = "first") -> dict:
    return {"teacher": str(teacher), "teacher_lowercase": None, "student_layers": layers, "student_init": init}


def test_a_checkpoint_from_before_model_kinds_predicts_as_it_did():
    """Written by the code of commit f264973 (a jieba TextCNN, no student description)."""
    expected = json.loads(LEGACY.with_suffix(".json").read_text(encoding="utf-8"))
    checkpoint = read_checkpoint(LEGACY.with_suffix(".ckpt"))
    assert "student" not in checkpoint["bert2textcnn"]
    assert student_description(checkpoint)["kind"] == "textcnn"
    probabilities = StudentPredictor.from_checkpoint(LEGACY.with_suffix(".ckpt")).probabilities(expected["texts"])
    assert torch.allclose(probabilities, torch.tensor(expected["probabilities"]), atol=1e-6)
    old_model = load_historical(str(LEGACY.with_suffix(".ckpt")), list(reversed(expected["labels"])))
    logits, known = old_model.logits(expected["texts"])  # as a historical teacher, labels remapped by name
    assert known.all() and torch.allclose(logits.softmax(-1).flip(-1), probabilities, atol=1e-6)


@pytest.mark.parametrize("kind", sorted(STUDENT_KINDS | SCHEME_KINDS))
def test_every_kind_is_rebuilt_from_its_description_alone(kind, tiny_teacher, small_data):
    data = TextDataModule(train_path=str(small_data["train"]), val_path=str(small_data["val"]))
    textcnn = {"embedding_dim": 8, "kernel_sizes": [2, 3], "num_filters": 4, "dropout": 0.5, "branch_hidden": 8}
    options = textcnn | bert_options(tiny_teacher)
    model = build_student(kind, data.vocab, 2, data.max_length, options).eval()
    description = json.loads(json.dumps(model.describe()))  # plain types only
    rebuilt = classifier_from_description(description, 2)
    rebuilt.load_state_dict(model.state_dict())
    rebuilt.eval()
    inputs = model.encode(TEXTS)
    assert all(torch.equal(inputs[k], rebuilt.encode(TEXTS)[k]) for k in inputs)
    with torch.no_grad():
        assert torch.allclose(model(**inputs).logits, rebuilt(**inputs).logits, atol=1e-6)


def test_small_bert_copies_the_teachers_embeddings_and_chosen_layers(tiny_teacher):
    teacher = BertClassifier.from_directory(str(tiny_teacher), 2)
    layers = teacher.model.base_model.encoder.layer
    assert len(layers) == 2

    def cut(init: str) -> BertClassifier:
        return BertClassifier.from_options(None, 2, 128, bert_options(tiny_teacher, 1, init))

    def equal(a: torch.nn.Module, b: torch.nn.Module) -> bool:
        return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))

    first, every_kth, random = cut("first"), cut("every_kth"), cut("random")
    for student in (first, every_kth, random):
        assert len(student.model.base_model.encoder.layer) == 1 and student.model.config.num_hidden_layers == 1
    assert equal(first.model.base_model.embeddings, teacher.model.base_model.embeddings)
    assert equal(first.model.base_model.encoder.layer[0], layers[0])
    assert equal(every_kth.model.base_model.encoder.layer[0], layers[1])  # ends with the last layer
    assert not equal(random.model.base_model.encoder.layer[0], layers[0])
    with pytest.raises(UserError, match=r"student_layers must lie in 1\.\.2"):
        BertClassifier.from_options(None, 2, 128, bert_options(tiny_teacher, 3))


def test_offline_distils_into_a_small_bert_that_predicts_and_exports_from_its_checkpoint(
    tiny_teacher, teacher_checkpoint, small_data, tmp_path
):
    L.seed_everything(0, verbose=False)
    data = TextDataModule(train_path=str(small_data["train"]), val_path=str(small_data["val"]), batch_size=16)
    model = SCHEMES["offline"](
        labels=data.labels, vocab=data.vocab, max_length=data.max_length, teacher=str(tiny_teacher),
        teacher_checkpoint=teacher_checkpoint, cache_dir=str(tmp_path / "cache"), student="bert", student_layers=1,
    )  # fmt: skip
    before = {k: v.clone() for k, v in model.student.state_dict().items()}
    trainer = L.Trainer(
        max_steps=3, limit_val_batches=1, default_root_dir=tmp_path, logger=False,
        enable_progress_bar=False, enable_model_summary=False,
    )  # fmt: skip
    trainer.fit(model, datamodule=data)
    [optimizer] = trainer.optimizers
    assert {g["name"]: g["initial_lr"] for g in optimizer.param_groups}["student"] == 1e-4  # the kind's default
    moved = [k for k, v in model.student.state_dict().items() if not torch.equal(v, before[k])]
    assert any("encoder.layer.0" in k for k in moved) and any("classifier" in k for k in moved)
    path = tmp_path / "student.ckpt"
    trainer.save_checkpoint(path)
    standalone = StudentPredictor.from_checkpoint(path)
    assert isinstance(standalone.student, BertClassifier)
    model.eval()
    with torch.no_grad():
        expected = model.student(**model.student.encode(TEXTS)).logits
    assert torch.allclose(standalone.logits(TEXTS), expected, atol=1e-5)
    figures = export_student(path, tmp_path / "export", TEXTS)
    assert figures["max_abs_diff"] <= 1e-5
    served = OnnxClassifier(tmp_path / "export", batch_size=3)  # its own WordPiece tokenizer, no transformers
    long_text = "请加微信领取免费会员" * 30  # truncated to max_length the same way by both tokenizers
    texts = [*TEXTS, long_text, "QQ群[MASK]领奖"]
    assert abs(served.probabilities(texts) - standalone.probabilities(texts).numpy()).max() <= 1e-5


def test_an_export_from_before_model_kinds_still_serves():
    """Export format 1 (commit f264973): the TextCNN's vocabulary at the top of student.json."""
    expected = json.loads(LEGACY.with_suffix(".json").read_text(encoding="utf-8"))
    served = OnnxClassifier(LEGACY.parent / "legacy_textcnn_export")
    assert abs(served.probabilities(expected["texts"]) - np.array(expected["probabilities"])).max() <= 1e-5


def test_an_unknown_kind_is_one_clear_error(small_data):
    data = TextDataModule(train_path=str(small_data["train"]), val_path=str(small_data["val"]))
    with pytest.raises(UserError, match=r"unknown model kind 'cnn'; choose from \['bert', 'textcnn'\]"):
        build_student("cnn", data.vocab, 2, data.max_length, {})
    with pytest.raises(UserError, match=r"--model.student: unknown model kind 'fastbert'"):  # its own scheme's
        SCHEMES["offline"](labels=data.labels, vocab=data.vocab, student="fastbert")
