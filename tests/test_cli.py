"""End to end through ``python -m bert2textcnn`` in a subprocess, with a tiny random teacher."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bert2textcnn.inference.predictor import StudentPredictor

pytestmark = pytest.mark.slow  # end to end, in subprocesses: left out of `make test-fast`

REPO = Path(__file__).resolve().parents[1]
FAST = ["--trainer.max_epochs", "1", "--trainer.limit_train_batches", "3", "--trainer.limit_val_batches", "2"]
JOINT = ("joint_isolated", "joint_coupled", "multitask")
# A joint run in every phase: a teacher epoch, a joint epoch, a tail epoch.
PHASED = ["--trainer.max_epochs", "3", "--model.tail_epochs", "1"]
JOINT_BATCHES_ONLY = ["--model.teacher_epochs", "0", "--model.tail_epochs", "0"]


def phased(scheme: str) -> list[str]:
    return PHASED if scheme in JOINT else []


def run_cli(*args: str, cwd: Path, ok: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    result = subprocess.run(
        [sys.executable, "-m", "bert2textcnn", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )
    if ok:
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def only_checkpoint(root: Path, scheme: str) -> Path:
    [best] = (root / "runs" / scheme).glob("version_0/checkpoints/best.ckpt")
    return best


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, tiny_teacher, small_data) -> Path:
    root = tmp_path_factory.mktemp("cli")
    common = [
        "--data.train_path", str(small_data["train"]), "--data.val_path", str(small_data["val"]),
        "--data.test_path", str(small_data["val"]), "--model.teacher", str(tiny_teacher), *FAST,
    ]  # fmt: skip
    (root / "common.txt").write_text("\n".join(common), encoding="utf-8")
    return root


def common(workdir: Path) -> list[str]:
    return (workdir / "common.txt").read_text(encoding="utf-8").splitlines()


def tensorboard_events(run_dir: Path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir), size_guidance={"tensors": 0, "images": 0})
    events.Reload()
    return events


def hparams_tab(events) -> tuple[set[str], dict]:
    """(metric columns, hyper-parameters) of the HParams tab, as the last summaries wrote them."""
    from tensorboard.plugins.hparams import plugin_data_pb2

    content = events.PluginTagToContent("hparams")
    experiment = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/experiment"]).experiment
    session = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"])
    return {m.name.tag for m in experiment.metric_infos}, dict(session.session_start_info.hparams)


@pytest.mark.parametrize("scheme", ["student", "teacher", "joint_isolated", "joint_coupled", "multitask"])
def test_fit_writes_checkpoint_events_and_test_report(workdir, scheme):
    result = run_cli("fit", "--scheme", scheme, *common(workdir), *phased(scheme), cwd=workdir)
    assert only_checkpoint(workdir, scheme).is_file()
    events = tensorboard_events(workdir / "runs" / scheme / "version_0")
    roles = [role for role in ("student", "teacher") if role == scheme or scheme not in ("student", "teacher")]
    assert {f"val/{role}_pr_curve_spam" for role in roles} <= set(events.Tags()["tensors"])
    assert {f"val/{role}_confusion_matrix" for role in roles} <= set(events.Tags()["images"])
    columns, params = hparams_tab(events)
    assert {f"hp/{role}_macro_f1" for role in roles} <= columns and {f"hp/{role}_macro_f1" for role in roles} <= set(
        events.Tags()["scalars"]
    )
    assert params["scheme"].string_value == scheme and params["warmup_ratio"].number_value == 0.1
    assert ("alpha" in params) == (scheme not in ("student", "teacher"))  # a scheme logs the options it takes
    assert "Test report" in result.stdout and "macro avg" in result.stdout
    assert "tensorboard --logdir" in result.stdout


@pytest.mark.parametrize("scheme", ["joint_coupled", "multitask"])
def test_new_joint_schemes_test_and_predict_from_their_checkpoint(workdir, small_data, scheme):
    if not (workdir / "runs" / scheme).exists():
        run_cli("fit", "--scheme", scheme, *common(workdir), *PHASED, cwd=workdir)
    ckpt = only_checkpoint(workdir, scheme)
    result = run_cli("test", "--ckpt_path", str(ckpt), "--data.test_path", str(small_data["val"]), cwd=workdir)
    assert f"Test report · teacher ({scheme})" in result.stdout
    out = workdir / f"{scheme}.predictions.csv"
    run_cli(
        "predict", "--ckpt_path", str(ckpt), "--data.predict_path", str(small_data["val"]),
        "--predictions.output_path", str(out), cwd=workdir,
    )  # fmt: skip
    with open(out, encoding="utf-8") as file:
        assert len(list(csv.DictReader(file))) == 40


def test_offline_from_teacher_checkpoint_then_predict(workdir, teacher_checkpoint):
    # A teacher that learnt something: one trained for this file's three batches is a constant
    # guess, and the teacher gate (tests/test_teacher_gate.py) would stop the run.
    teacher_ckpt = teacher_checkpoint
    result = run_cli(
        "fit", "--scheme", "offline", "--model.teacher_checkpoint", str(teacher_ckpt), *common(workdir), cwd=workdir
    )
    assert "Computing teacher logits" in result.stderr
    student_ckpt = only_checkpoint(workdir, "offline")
    assert list((workdir / "runs" / "offline").glob("version_*/events.out.tfevents.*"))

    posts = workdir / "posts.csv"
    posts.write_text("text\n加微信领取免费会员\n今天地铁又晚点了\nQQ群有福利\n", encoding="utf-8")
    run_cli("predict", "--ckpt_path", str(student_ckpt), "--data.predict_path", str(posts), cwd=workdir)
    with open(workdir / "posts.predictions.csv", encoding="utf-8") as file:
        rows = list(csv.DictReader(file))
    assert [r["text"] for r in rows] == ["加微信领取免费会员", "今天地铁又晚点了", "QQ群有福利"]
    assert all(r["predicted"] in {"normal", "spam"} for r in rows)
    assert all(abs(float(r["prob_normal"]) + float(r["prob_spam"]) - 1) < 1e-5 for r in rows)

    # The same checkpoint predicts alone, without Lightning or a teacher, and agrees with the CLI.
    standalone = StudentPredictor.from_checkpoint(student_ckpt).predict([r["text"] for r in rows])
    for row, (label, probs) in zip(rows, standalone, strict=True):
        assert row["predicted"] == label
        assert abs(float(row["prob_spam"]) - probs["spam"]) < 1e-5


def test_test_subcommand_reads_scheme_and_vocab_from_checkpoint(workdir, small_data):
    if not (workdir / "runs" / "joint_isolated").exists():
        run_cli("fit", "--scheme", "joint_isolated", *common(workdir), *PHASED, cwd=workdir)
    ckpt = only_checkpoint(workdir, "joint_isolated")
    result = run_cli("test", "--ckpt_path", str(ckpt), "--data.test_path", str(small_data["val"]), cwd=workdir)
    assert "Test report · student (joint_isolated)" in result.stdout
    assert "Test report · teacher (joint_isolated)" in result.stdout


def test_fit_resumes_from_last_checkpoint(workdir):
    if not (workdir / "runs" / "joint_isolated").exists():
        run_cli("fit", "--scheme", "joint_isolated", *common(workdir), *PHASED, cwd=workdir)
    [last] = (workdir / "runs" / "joint_isolated").glob("version_0/checkpoints/last.ckpt")
    result = run_cli(
        "fit", "--ckpt_path", str(last), *common(workdir), *PHASED, "--trainer.max_epochs", "4",
        "--test_after_fit", "false", cwd=workdir,
    )  # fmt: skip
    assert "Restored all states from the checkpoint" in result.stderr + result.stdout
    best = result.stdout.split("Best checkpoint:")[1].split()[0]
    resumed = torch.load(workdir / Path(best).parent / "last.ckpt", weights_only=True)
    assert resumed["epoch"] == 3  # the fourth epoch, after the restored three
    assert len(resumed["optimizer_states"]) == 4  # teacher, student and the tail's two copies
    assert resumed["tail"]["chosen"] in [{"alpha": 1.0, "temperature": 2.0}, {"alpha": 0.5, "temperature": 1.0}]


def test_help_lists_every_scheme(workdir):
    out = run_cli("--help", cwd=workdir).stdout
    for scheme in ("student", "teacher", "offline", "joint_isolated", "joint_coupled", "multitask"):
        assert f"\n  {scheme} " in out


def test_bad_input_is_one_clear_line_not_a_traceback(workdir, small_data):
    bad = workdir / "bad_val.csv"
    bad.write_text("text,label\n好,spam\n   ,normal\n", encoding="utf-8")
    result = run_cli(
        "fit", "--scheme", "student", "--data.train_path", str(small_data["train"]), "--data.val_path", str(bad),
        cwd=workdir, ok=False,
    )  # fmt: skip
    assert result.returncode == 2
    assert f"error: {bad}:3: empty text" in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_teacher_directory_says_how_to_fix(workdir, small_data):
    result = run_cli(
        "fit", "--scheme", "teacher", "--data.train_path", str(small_data["train"]),
        "--data.val_path", str(small_data["val"]), "--model.teacher", str(workdir / "nowhere"), cwd=workdir, ok=False,
    )  # fmt: skip
    assert result.returncode == 2
    assert "does not exist" in result.stderr and "--model.teacher" in result.stderr
    assert "Traceback" not in result.stderr


def test_multi_teacher_with_a_historical_student_then_compare(workdir, small_data):
    if not (workdir / "runs" / "student").exists():
        run_cli("fit", "--scheme", "student", *common(workdir), cwd=workdir)
    old = only_checkpoint(workdir, "student")
    result = run_cli(
        "fit", "--scheme", "multi_teacher", "--model.historical", f"[{old}]", "--model.historical_weights", "[0.3]",
        *common(workdir), cwd=workdir,
    )  # fmt: skip
    assert f"Student vs {old} (old model)" in result.stdout
    new = only_checkpoint(workdir, "multi_teacher")
    result = run_cli(
        "test", "--ckpt_path", str(new), "--data.test_path", str(small_data["val"]), "--model.compare_to", str(old),
        cwd=workdir,
    )  # fmt: skip
    for figure in ("coverage", "negative flip rate", "positive flip rate", "agreement"):
        assert figure in result.stdout


def scalar_tags(run_dir: Path) -> set[str]:
    return set(tensorboard_events(run_dir).Tags()["scalars"])


def test_offline_learns_an_unlabelled_file_and_augmented_copies(workdir, teacher_checkpoint):
    pool = workdir / "stream.txt"
    pool.write_text("加微信领取免费会员\n今天地铁又晚点了\n\nQQ群有福利，点击链接\n", encoding="utf-8")
    result = run_cli(
        "fit", "--scheme", "offline", "--model.teacher_checkpoint", teacher_checkpoint, *common(workdir),
        "--data.unlabeled_path", str(pool), "--data.augment", "{copies: 2, mask_rate: 0.2}",
        "--trainer.logger.init_args.name", "offline_transfer", "--test_after_fit", "false", cwd=workdir,
    )  # fmt: skip
    assert "Training rows: 96 labelled" in result.stderr and "3 from " in result.stderr
    [run_dir] = (workdir / "runs" / "offline_transfer").glob("version_*")
    tags = scalar_tags(run_dir)
    assert {"train/loss_kd_unlabeled_epoch", "train/loss_ce_student_epoch", "train/loss_kd_epoch"} <= tags


def test_joint_coupled_with_a_label_fraction_and_hard_pseudo_labels(workdir):
    result = run_cli(
        "fit", "--scheme", "joint_coupled", *common(workdir), "--data.label_fraction", "0.5",
        "--data.unlabeled_share", "0.5", "--model.unlabeled_target", "hard",
        "--trainer.logger.init_args.name", "coupled_transfer", "--test_after_fit", "false",
        *JOINT_BATCHES_ONLY, "--data.augment", "null", cwd=workdir,
    )  # fmt: skip
    assert "Training rows: 48 labelled, 48 unlabelled (48 dropped labels" in result.stderr
    [run_dir] = (workdir / "runs" / "coupled_transfer").glob("version_*")
    tags = scalar_tags(run_dir)
    assert {"train/loss_ce_pseudo_epoch", "train/pseudo_label_kept_epoch", "train/loss_kd_teacher_epoch"} <= tags
    assert "train/loss_kd_unlabeled_epoch" not in tags  # hard targets replace the soft term on unlabelled rows


def test_label_only_schemes_say_they_ignore_unlabelled_data(workdir):
    pool = workdir / "ignored.txt"
    pool.write_text("一条短信\n", encoding="utf-8")
    result = run_cli(
        "fit", "--scheme", "student", *common(workdir), "--data.unlabeled_path", str(pool),
        "--trainer.logger.init_args.name", "student_ignoring", "--test_after_fit", "false", cwd=workdir,
    )  # fmt: skip
    assert "Ignoring --data.unlabeled_path: this scheme learns from labels only" in result.stderr


def test_fastbert_trains_both_stages_then_tests_and_predicts_at_the_speed_it_is_given(workdir, small_data):
    fit_args = ["--scheme", "fastbert", *common(workdir), "--trainer.max_epochs", "2", "--model.speed", "0.9"]
    result = run_cli("fit", *fit_args, cwd=workdir)
    assert "Early exit at speed 0.9:" in result.stdout and "layers run on average" in result.stdout
    best = only_checkpoint(workdir, "fastbert")
    events = tensorboard_events(best.parents[1])
    scalars = set(events.Tags()["scalars"])
    logged = {"train/loss_ce_final_epoch", "train/loss_kd_layer1_epoch", "val/layer1_macro_f1", "test/avg_layers"}
    assert logged <= scalars  # stage 1's loss, stage 2's, each exit's score, where texts left
    posts = workdir / "fast_posts.csv"
    posts.write_text("text\n加微信领取免费会员\n今天地铁又晚点了\n好\n", encoding="utf-8")
    exits = {}
    for speed in ("0.0", "1.0"):  # not the 0.9 it was trained with: test and predict take their own
        run_cli("predict", "--ckpt_path", str(best), "--data.predict_path", str(posts), "--model.speed", speed,
                cwd=workdir)  # fmt: skip
        with open(workdir / "fast_posts.predictions.csv", encoding="utf-8") as file:
            exits[speed] = [int(row["exit_layer"]) for row in csv.DictReader(file)]
    assert exits == {"0.0": [2, 2, 2], "1.0": [1, 1, 1]}
    tested = run_cli("test", "--ckpt_path", str(best), "--data.test_path", str(small_data["val"]),
                     "--model.speed", "0.0", cwd=workdir)  # fmt: skip
    assert "Early exit at speed 0.0: 2.00 of 2 layers run on average" in tested.stdout
    refused = run_cli(
        "export", "--ckpt_path", str(best), "--output", str(workdir / "fast_export"), cwd=workdir, ok=False
    )
    assert refused.returncode == 2 and "FastBERT is not exported to ONNX" in refused.stderr
