"""A run killed with SIGKILL mid-epoch resumes from ``last.ckpt`` and ends exactly where an
uninterrupted run with the same seed ends.

Exact, not approximate: shuffling and dropout depend only on (seed, epoch) (see seeding.py), and
the resumed run replays the interrupted epoch from its start, on the same single CPU process. Each
run uses one intra-op thread: with two, one run of the suite on busy cores ended up to 5e-7
apart, most likely float sums taken in another order; far smaller than what a broken resume
leaves, but enough to fail an exact comparison.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from test_serving import trained_checkpoint

pytestmark = pytest.mark.slow  # end to end, in subprocesses: left out of `make test-fast`

REPO = Path(__file__).resolve().parents[1]


def fit(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    path = f"{REPO}{os.pathsep}{Path(__file__).parent}"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PYTHONPATH": path}
    return subprocess.run([sys.executable, "-m", "bert2textcnn", "fit", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)  # fmt: skip


def final_state(run_dir: Path) -> dict[str, torch.Tensor]:
    checkpoint = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert checkpoint["epoch"] == 2, (run_dir, checkpoint["epoch"], checkpoint["global_step"])
    return {**checkpoint["state_dict"], **{f"optimizer{i}": s for i, s in enumerate(checkpoint["optimizer_states"])}}


SCHEMES = [
    "student",
    "teacher",
    "offline",
    "joint_isolated",
    "joint_coupled",
    "multitask",
    "multi_teacher",
    "rco",
    "theseus",
    "fastbert",  # killed in stage 1, resumed across the switch to stage 2
]


@pytest.mark.parametrize("scheme", SCHEMES)
def test_sigkill_mid_epoch_then_resume_matches_an_uninterrupted_run(
    scheme, small_data, tiny_teacher, teacher_checkpoint, teacher_anchors, tmp_path
):
    args = [
        "--scheme", scheme, "--data.train_path", str(small_data["train"]), "--data.val_path", str(small_data["val"]),
        "--data.batch_size", "16", "--model.teacher", str(tiny_teacher), "--trainer.max_epochs", "3",
        "--trainer.limit_val_batches", "2", "--test_after_fit", "false",
    ]  # fmt: skip
    if scheme in ("offline", "theseus"):  # theseus: killed in its second stage
        args += ["--model.teacher_checkpoint", teacher_checkpoint]
    if scheme == "rco":  # killed on the second of three anchors
        route = [str(teacher_anchors.parent / "anchor_1.ckpt"), str(teacher_anchors.parent / "anchor_2.ckpt")]
        args += ["--model.teacher_route", json.dumps([*route, teacher_checkpoint])]
    if scheme == "multi_teacher":
        args += ["--model.historical", f"[{trained_checkpoint('student', small_data, tmp_path)}]"]
    if scheme in ("joint_isolated", "joint_coupled", "multitask"):  # a teacher, a joint (killed), a tail epoch
        args += ["--model.tail_epochs", "1"]
    whole, interrupted = tmp_path / "whole", tmp_path / "interrupted"
    whole.mkdir(), interrupted.mkdir()
    uninterrupted = fit(whole, *args)
    assert uninterrupted.returncode == 0
    assert "eval mode at the start of training" not in uninterrupted.stderr  # frozen teachers are eval on purpose

    killer = json.dumps({"class_path": "killer.KillAtBatch", "init_args": {"epoch": 1, "batch": 3}})
    killed = fit(interrupted, *args, f"--trainer.callbacks+={killer}")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    last = interrupted / "runs" / scheme / "version_0" / "checkpoints" / "last.ckpt"
    assert torch.load(last, weights_only=True)["epoch"] == 0  # the end of the first epoch survived the kill

    resumed = fit(interrupted, *args, "--ckpt_path", "last")  # the newest runs/<scheme>/…/last.ckpt
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    expected, actual = (
        final_state(whole / "runs" / scheme / "version_0"),
        final_state(interrupted / "runs" / scheme / "version_1"),
    )
    assert expected.keys() == actual.keys()
    for key, value in expected.items():
        if isinstance(value, torch.Tensor):
            assert torch.equal(value, actual[key]), key
    if scheme == "offline":
        assert "Reusing cached teacher logits" in resumed.stderr  # the cache survived the kill too


def test_sigkill_in_the_tail_resumes_to_the_same_student_and_choice(small_data, tiny_teacher, tmp_path):
    """Killed in the second tail epoch: the resumed run restores the cached teacher logits, the
    copies and their optimizers, and ends with the same weights and the same KD setting chosen."""
    args = [
        "--scheme", "joint_isolated", "--data.train_path", str(small_data["train"]),
        "--data.val_path", str(small_data["val"]), "--data.batch_size", "16", "--model.teacher", str(tiny_teacher),
        "--trainer.max_epochs", "3", "--model.teacher_epochs", "0", "--model.tail_epochs", "2",
        "--trainer.limit_val_batches", "2", "--test_after_fit", "false",
    ]  # fmt: skip
    whole, interrupted = tmp_path / "whole", tmp_path / "interrupted"
    whole.mkdir(), interrupted.mkdir()
    assert fit(whole, *args).returncode == 0
    killer = json.dumps({"class_path": "killer.KillAtBatch", "init_args": {"epoch": 2, "batch": 5}})
    assert fit(interrupted, *args, f"--trainer.callbacks+={killer}").returncode == -signal.SIGKILL
    resumed = fit(interrupted, *args, "--ckpt_path", "last")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "the finished teacher scores" not in resumed.stderr  # its logits came back with the checkpoint
    checkpoints = [run / "runs" / "joint_isolated" / version / "checkpoints" / "last.ckpt"
                   for run, version in ((whole, "version_0"), (interrupted, "version_1"))]  # fmt: skip
    expected, actual = (torch.load(path, weights_only=True) for path in checkpoints)
    assert actual["epoch"] == expected["epoch"] == 2
    assert actual["phase"] == {"phase": "tail", "plan": "0 teacher, 1 joint and 2 tail epoch(s)"}
    for key, value in expected["state_dict"].items():
        assert torch.equal(value, actual["state_dict"][key]), key
    assert (
        actual["tail"]["chosen"] == expected["tail"]["chosen"]
        and actual["tail"]["scores"] == expected["tail"]["scores"]
    )
    assert torch.equal(actual["tail"]["train_logits"], expected["tail"]["train_logits"])
