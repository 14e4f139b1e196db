"""ONNX export (parity with PyTorch), the torch-free OnnxClassifier, and the speed command."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import lightning as L
import numpy as np
import onnx
import onnx.numpy_helper
import pytest
import torch
from conftest import read_demo

from bert2textcnn.bench.speed import PATHS
from bert2textcnn.data.datamodule import TextDataModule
from bert2textcnn.data.records import read_records
from bert2textcnn.distill.schemes import SCHEMES
from bert2textcnn.errors import UserError
from bert2textcnn.inference import export as export_module
from bert2textcnn.inference.precision import cpu_has_bf16, precision_gate
from bert2textcnn.inference.predictor import StudentPredictor
from bert2textcnn.inference.serving import OnnxClassifier
from bert2textcnn.models.folded_textcnn import FoldedTextCNN
from bert2textcnn.models.protocol import logits_in_order

REPO = Path(__file__).resolve().parents[1]
TEXTS = [row["text"] for row in read_demo("test")] + ["好", "QQ", "加微信领取免费会员，点击 http://x.cn 立即领取"]


def trained_checkpoint(scheme: str, small_data, root: Path, **hparams) -> str:
    L.seed_everything(0, verbose=False)
    data = TextDataModule(train_path=str(small_data["train"]), val_path=str(small_data["val"]), batch_size=16)
    model = SCHEMES[scheme](labels=data.labels, vocab=data.vocab, max_length=data.max_length, **hparams)
    trainer = L.Trainer(max_steps=4, limit_val_batches=0, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)  # fmt: skip
    trainer.fit(model, datamodule=data)
    path = root / f"{scheme}.ckpt"
    trainer.save_checkpoint(path)
    return str(path)


@pytest.fixture(scope="module")
def student_checkpoint(small_data, tmp_path_factory) -> str:
    return trained_checkpoint("student", small_data, tmp_path_factory.mktemp("student"), kernel_sizes=(2, 3, 5))


@pytest.fixture(scope="module")
def exported(student_checkpoint, tmp_path_factory) -> Path:
    output = tmp_path_factory.mktemp("export") / "student"
    figures = export_module.export_student(student_checkpoint, output, TEXTS)
    assert figures["max_abs_diff"] <= export_module.PARITY_TOLERANCE
    return output


def test_export_agrees_with_pytorch_and_predicts_the_same_labels(exported, student_checkpoint):
    assert sorted(p.name for p in exported.iterdir()) == ["student.json", "student.onnx"]
    torch_model = StudentPredictor.from_checkpoint(student_checkpoint)
    served = OnnxClassifier(exported, batch_size=7)  # batches of mixed lengths, padded differently
    assert abs(served.probabilities(TEXTS) - torch_model.probabilities(TEXTS).numpy()).max() <= 1e-5
    assert [label for label, _ in served.predict(TEXTS)] == [label for label, _ in torch_model.predict(TEXTS)]
    assert served.probabilities([]).shape == (0, 2)
    # The graph is the folded student (row lookups, no convolution), checked against the trained form.
    assert isinstance(torch_model.serving, FoldedTextCNN)
    operators = {node.op_type for node in onnx.load(str(exported / "student.onnx")).graph.node}
    assert "Gather" in operators and "Conv" not in operators
    trained = logits_in_order(torch_model.student, TEXTS, 2).softmax(-1).numpy()
    assert abs(served.probabilities(TEXTS) - trained).max() <= 1e-5


@pytest.mark.slow
def test_onnx_classifier_needs_no_torch_and_no_lightning(exported, student_checkpoint):
    script = (
        "import sys, json\n"
        "for name in ('torch', 'lightning', 'transformers'):\n"
        "    sys.modules[name] = None  # importing any of them now fails\n"
        "from bert2textcnn.inference.serving import OnnxClassifier\n"
        f"print(json.dumps([label for label, _ in OnnxClassifier({str(exported)!r}).predict({TEXTS!r})]))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    expected = [label for label, _ in StudentPredictor.from_checkpoint(student_checkpoint).predict(TEXTS)]
    assert json.loads(result.stdout.splitlines()[-1]) == expected


def test_failed_parity_check_writes_nothing(student_checkpoint, tmp_path, monkeypatch):
    monkeypatch.setattr(export_module, "PARITY_TOLERANCE", -1.0)
    with pytest.raises(UserError, match="disagree"):
        export_module.export_student(student_checkpoint, tmp_path / "out", TEXTS)
    assert list((tmp_path / "out").iterdir()) == []


@pytest.mark.slow
def test_speed_command_writes_comparable_json(small_data, tiny_teacher, tmp_path):
    checkpoint = trained_checkpoint(
        "joint_isolated", small_data, tmp_path, teacher=str(tiny_teacher), teacher_epochs=0, tail_epochs=0
    )
    output = tmp_path / "speed.json"
    result = subprocess.run(
        [sys.executable, "-m", "bert2textcnn", "speed", "--ckpt_path", checkpoint, "--min_seconds", "0.01",
         "--latency_texts", "12", "--output", str(output)],
        capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    figures = json.loads(output.read_text(encoding="utf-8"))
    for model in ("student", "student_folded", "teacher", "student_onnx"):
        assert {"texts_per_s_b64", "ms_b1_p50", "ms_b1_p95"} <= set(figures[model])
        assert figures[model]["texts_per_s_b64"] > 0 and figures[model]["ms_b1_p50"] > 0
    assert figures["ratio_b64"] == pytest.approx(
        figures["student"]["texts_per_s_b64"] / figures["teacher"]["texts_per_s_b64"]
    )
    assert figures["ratio_b1"] == pytest.approx(figures["teacher"]["ms_b1_p50"] / figures["student"]["ms_b1_p50"])
    assert figures["student_matmul_bound"] > 0
    assert "student / teacher" in result.stdout and "student ceiling" in result.stdout
    # Every path side by side: each lower precision timed, or the reason it is not.
    assert ("student_bf16" in figures) == cpu_has_bf16() != ("student_bf16" in figures["unavailable"])
    assert ("student_onnx_int8" in figures) != ("student_onnx_int8" in figures["unavailable"])
    best = figures["best_b64"]
    assert best in PATHS and best != "teacher"
    rates = {path: figures[path]["texts_per_s_b64"] for path in PATHS if path in figures and path != "teacher"}
    assert figures[best]["texts_per_s_b64"] == max(rates.values())
    assert figures["ratio_b64_best"] == pytest.approx(max(rates.values()) / figures["teacher"]["texts_per_s_b64"])
    assert "best student path / teacher" in result.stdout
    fastest = figures["best_fp32_b64"]  # the fastest fp32 path, against the ceiling, and its tokenising share
    assert fastest in ("student", "student_folded", "student_onnx")
    row = figures[fastest]
    assert figures["tokenising_share"] == pytest.approx(
        max(0.0, 1 - row["texts_per_s_b64"] / row["texts_per_s_b64_encoded"])
    )
    assert figures["ceiling_reached_end_to_end"] == pytest.approx(
        row["texts_per_s_b64"] / figures["student_matmul_bound"]
    )
    assert f"fastest fp32 path ({fastest})" in result.stdout


@pytest.fixture(scope="module")
def trained_student(small_data, tmp_path_factory) -> str:
    """A student sure enough of its labels that int8 rounding does not flip them."""
    return trained_checkpoint("student", small_data, tmp_path_factory.mktemp("trained"), student_lr=3e-3)


def test_an_int8_export_passes_its_gate_and_serves(trained_student, small_data, tmp_path):
    records = read_records(small_data["val"])
    texts, labels = [r.text for r in records], [r.label for r in records]
    figures = export_module.export_student(trained_student, tmp_path / "int8", texts, "int8", labels)
    assert figures["label_agreement"] >= 0.995 and figures["macro_f1_fp32"] - figures["macro_f1"] <= 0.002
    metadata = json.loads((tmp_path / "int8" / "student.json").read_text(encoding="utf-8"))
    assert metadata["precision"] == "int8"
    fp32 = export_module.export_student(trained_student, tmp_path / "fp32", texts)
    assert "label_agreement" not in fp32
    int8_model = onnx.load(str(tmp_path / "int8" / "student.onnx"))
    int8_operators = {node.op_type for node in int8_model.graph.node}
    assert {"DequantizeLinear", "Conv"} <= int8_operators  # the trained form's convolutions, quantised
    served = OnnxClassifier(tmp_path / "int8").probabilities(texts)
    assert (served.argmax(1) == OnnxClassifier(tmp_path / "fp32").probabilities(texts).argmax(1)).mean() >= 0.995


def test_the_gate_refuses_a_broken_int8_model_and_writes_nothing(trained_student, small_data, tmp_path, monkeypatch):
    real = export_module.quantize_int8

    def broken(fp32, int8, encode, texts):  # quantise, then zero the embeddings: one label for every text
        real(fp32, int8, encode, texts)
        model = onnx.load(str(int8))
        [embedding] = [tensor for tensor in model.graph.initializer if tensor.name.endswith("embedding.weight")]
        zeros = np.zeros_like(onnx.numpy_helper.to_array(embedding))
        embedding.CopyFrom(onnx.numpy_helper.from_array(zeros, embedding.name))
        onnx.save(model, str(int8))

    monkeypatch.setattr(export_module, "quantize_int8", broken)
    records = read_records(small_data["val"])
    with pytest.raises(UserError, match=r"int8 export refused, nothing written: the same label as fp32 on"):
        export_module.export_student(trained_student, tmp_path / "out", [r.text for r in records], "int8")
    assert not (tmp_path / "out" / "student.onnx").exists() and not (tmp_path / "out" / "student.json").exists()
    with pytest.raises(UserError, match="ONNX Runtime's CPU provider has no bf16"):
        export_module.export_student(trained_student, tmp_path / "out", ["好"], "bf16")


def test_the_gate_says_by_how_much_a_lower_precision_missed():
    fp32 = np.array([[0.9, 0.1]] * 100 + [[0.1, 0.9]] * 100, dtype=np.float32)
    lower = fp32.copy()
    lower[:2] = [0.4, 0.6]  # 2 of 200 labels flip: 99.0 % agreement, 0.5 % short
    targets = torch.tensor([0] * 100 + [1] * 100)
    with pytest.raises(UserError) as refused:
        precision_gate("int8", fp32, lower, ["normal", "spam"], targets)
    assert "99.00% of the check texts, 0.50% short of 99.5%" in str(refused.value)
    assert "macro-F1 0.9900 against fp32's 1.0000, 0.0080 past the 0.002 allowed" in str(refused.value)
    assert precision_gate("int8", fp32, fp32, ["normal", "spam"], targets)["label_agreement"] == 1.0
