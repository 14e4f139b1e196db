"""Two processes on one CPU (DDP over gloo): the joint and offline schemes train, metrics cover
both processes' rows, and the offline logits cache is built by one process only."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from bert2textcnn.checkpoint import project_record

pytestmark = pytest.mark.slow  # end to end, in subprocesses: left out of `make test-fast`

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("scheme", ["joint_isolated", "offline"])
def test_two_process_ddp_on_cpu(scheme, small_data, tiny_teacher, teacher_checkpoint, tmp_path):
    args = [
        "fit", "--scheme", scheme, "--data.train_path", str(small_data["train"]),
        "--data.val_path", str(small_data["val"]), "--data.test_path", str(small_data["val"]),
        "--model.teacher", str(tiny_teacher), "--trainer.max_epochs", "1", "--trainer.limit_val_batches", "2",
        "--trainer.strategy", "ddp", "--trainer.devices", "2", "--trainer.accelerator", "cpu",
    ]  # fmt: skip
    if scheme == "joint_isolated":  # one epoch: joint batches alone
        args += ["--model.teacher_epochs", "0", "--model.tail_epochs", "0"]
    if scheme == "offline":
        args += ["--model.teacher_checkpoint", teacher_checkpoint]
    result = subprocess.run(
        [sys.executable, "-m", "bert2textcnn", *args], cwd=tmp_path, capture_output=True, text=True, timeout=600,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    [best] = (tmp_path / "runs" / scheme).glob("version_0/checkpoints/best.ckpt")
    assert project_record(best)["scheme"] == scheme
    # 40 validation rows, split 20 + 20 over the processes: the report counts them all.
    report = output.split("Test report · student")[1]
    assert re.search(r"macro avg\s+[\d.]+\s+[\d.]+\s+[\d.]+\s+(\d+)", report)[1] == "40"
    if scheme == "offline":
        # The first process scores the validation file (the teacher gate) and the training file; the
        # second reads the training file's logits from the cache.
        assert output.count("Computing teacher logits") == 2 and output.count("Reusing cached teacher logits") == 1
    else:
        assert "ddp_find_unused_parameters_true (two optimizers)" in output
