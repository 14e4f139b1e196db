"""Files from other teams never run code here, and damaged files are explained or rebuilt."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bert2textcnn.checkpoint import read_checkpoint
from bert2textcnn.compat.historical import load_historical
from bert2textcnn.data.datamodule import TextDataModule
from bert2textcnn.distill import logits_cache
from bert2textcnn.errors import UserError

REPO = Path(__file__).resolve().parents[1]


class Payload:
    """Unpickling this runs a shell command that leaves a marker file: proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture
def planted(tmp_path) -> tuple[Path, Path]:
    marker = tmp_path / "code_ran"
    evil = tmp_path / "evil.ckpt"
    torch.save({"bert2textcnn": {"scheme": "student"}, "state_dict": {}, "extra": Payload(marker)}, evil)
    return evil, marker


def test_a_checkpoint_with_pickled_code_is_refused_without_running(planted):
    evil, marker = planted
    with pytest.raises(UserError, match=r"refused .*pickled Python objects \(posix.system\)"):
        read_checkpoint(evil)
    with pytest.raises(UserError, match="refused"):
        load_historical(str(evil), ["normal", "spam"], "text")
    assert not marker.exists()


@pytest.mark.slow
@pytest.mark.parametrize(
    "args",
    [
        ["test", "--ckpt_path", "{evil}"],
        ["predict", "--ckpt_path", "{evil}", "--data.predict_path", "{texts}"],
        ["fit", "--scheme", "student", "--model.compare_to", "{evil}", "--trainer.max_steps", "1"],
    ],
    ids=["test", "predict", "compare_to"],
)
def test_the_cli_refuses_it_in_one_line(planted, tmp_path, args):
    evil, marker = planted
    texts = tmp_path / "posts.txt"
    texts.write_text("一条短信\n", encoding="utf-8")
    argv = [a.format(evil=evil, texts=texts) for a in args]
    result = subprocess.run(
        [sys.executable, "-m", "bert2textcnn", *argv], cwd=tmp_path, capture_output=True, text=True, timeout=300,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    assert result.returncode == 2, result.stderr[-2000:]
    assert f"error: {evil}: refused" in result.stderr and "Traceback" not in result.stderr
    assert not marker.exists()


def test_a_truncated_checkpoint_says_so(teacher_checkpoint, tmp_path):
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(Path(teacher_checkpoint).read_bytes()[:5000])
    with pytest.raises(UserError, match="not a readable PyTorch checkpoint"):
        read_checkpoint(truncated)


@pytest.mark.parametrize("damage", ["truncated", "planted", "wrong_shape"])
def test_a_damaged_logits_cache_is_rebuilt(teacher_checkpoint, small_data, tmp_path, caplog, damage):
    caplog.set_level(logging.WARNING, logger="bert2textcnn")
    data = TextDataModule(train_path=str(small_data["train"]), val_path=str(small_data["val"]))
    texts, cache = data.train_texts(), tmp_path / "cache"
    good = logits_cache.teacher_logits_cache(texts, teacher_checkpoint, data.labels, data.max_length, cache)
    [path] = cache.glob("*.pt")
    marker = tmp_path / "code_ran"
    if damage == "truncated":
        path.write_bytes(path.read_bytes()[:100])
    elif damage == "planted":
        torch.save({"logits": Payload(marker)}, path)
    else:
        torch.save(torch.zeros(3, 2), path)
    rebuilt = logits_cache.teacher_logits_cache(texts, teacher_checkpoint, data.labels, data.max_length, cache)
    assert torch.allclose(rebuilt, good) and "recomputing them" in caplog.text
    assert not marker.exists()
    assert torch.equal(torch.load(path, weights_only=True), rebuilt)  # the rebuilt file replaced the bad one


def test_a_checkpoint_write_killed_half_way_leaves_the_old_file(tmp_path, monkeypatch):
    from lightning.pytorch.plugins.io import TorchCheckpointIO

    from bert2textcnn.checkpoint import AtomicCheckpointIO

    path = tmp_path / "last.ckpt"
    AtomicCheckpointIO().save_checkpoint({"epoch": 1, "weights": torch.ones(3)}, path)

    def dies_mid_write(self, checkpoint, target, storage_options=None):
        Path(target).write_bytes(b"half a checkpoi")
        raise KeyboardInterrupt  # the process is stopped while writing

    monkeypatch.setattr(TorchCheckpointIO, "save_checkpoint", dies_mid_write)
    with pytest.raises(KeyboardInterrupt):
        AtomicCheckpointIO().save_checkpoint({"epoch": 2, "weights": torch.zeros(3)}, path)
    assert torch.load(path, weights_only=True)["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]  # no temporary file left behind
