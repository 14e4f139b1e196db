"""The benchmark command on the demo corpus: every file it promises, and a resumed run that
trains only what is new."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pytest
from hand_metrics import hand_macro_f1

pytestmark = pytest.mark.slow  # end to end, in subprocesses: left out of `make test-fast`

REPO = Path(__file__).resolve().parents[1]


def benchmark(output: Path, teacher: Path, schemes: str, *extra: str) -> str:
    # The tiny teacher learns something in 4 epochs at a high rate; a constant guess would be
    # stopped by the teacher gate.
    teacher_options = ["--teacher_epochs", "4", "--teacher_model", "{teacher_lr: 3e-3, warmup_ratio: 0.0}"]
    args = ["benchmark", "--output", str(output), "--schemes", schemes, "--seeds", "1", "--epochs", "1",
            "--teacher", str(teacher), "--data.max_length", "48", *teacher_options, *extra]  # fmt: skip
    result = subprocess.run(
        [sys.executable, "-m", "bert2textcnn", *args], capture_output=True, text=True, timeout=600,
        env={**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"},
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout


@pytest.fixture(scope="module")
def report(tiny_teacher, tmp_path_factory) -> tuple[Path, str]:
    output = tmp_path_factory.mktemp("bench") / "report"
    first = benchmark(output, tiny_teacher, "[offline]")
    assert first.count("training …") == 3  # teacher, plain student, offline
    return output, benchmark(output, tiny_teacher, "[offline, multi_teacher, fastbert]")


def test_benchmark_writes_every_file(report):
    output, _ = report
    pictures = ("macro_f1.png", "pr_curves.png", "speed.png", "quality_vs_speed.png")
    for name in ("results.csv", "report.md", "speed.json", "exit_curve.json", *pictures):
        assert (output / name).is_file() and (output / name).stat().st_size > 0, name
    with open(output / "results.csv", encoding="utf-8") as file:
        rows = list(csv.DictReader(file))
    assert [row["name"] for row in rows] == ["teacher", "student", "offline", "fastbert", "multi_teacher"]
    assert {"macro_f1", "precision_spam", "recall_spam", "coverage", "negative_flip_rate", "train_seconds"} <= set(
        rows[0]
    )
    from bert2textcnn.data.datamodule import demo_path
    from bert2textcnn.data.records import read_records

    test = read_records(demo_path("test"))
    targets = [sorted({r.label for r in test}).index(r.label) for r in test]
    offline = json.loads((output / "runs" / "offline-seed0.json").read_text(encoding="utf-8"))
    assert float(rows[2]["macro_f1"]) == pytest.approx(hand_macro_f1(offline["probabilities"]["student"], targets))
    mixed = json.loads((output / "runs" / "multi_teacher-seed0.json").read_text(encoding="utf-8"))
    assert set(mixed["probabilities"]) == {"student"}  # multi_teacher reads its teacher's cached logits, no BERT
    assert all(float(row["texts_per_s"]) > 0 for row in rows)  # every row's own model, timed
    plain_f1 = float(rows[1]["macro_f1"])  # the same seed's plain student
    assert float(rows[2]["macro_f1_minus_plain"]) == pytest.approx(float(rows[2]["macro_f1"]) - plain_f1)
    assert rows[1]["macro_f1_minus_plain"] == ""  # the plain student is not compared with itself
    text = (output / "report.md").read_text(encoding="utf-8")
    assert "| offline | 1 |" in text and "gap closed" in text and "Δ vs plain, paired" in text
    assert "## Speed" in text and "Student ceiling" in text and "| texts/s |" in text
    assert "## Selection" in text and "| offline | " in text.split("## Selection")[1]
    curve = json.loads((output / "exit_curve.json").read_text(encoding="utf-8"))
    assert curve["run"] == "fastbert" and [row["speed"] for row in curve["rows"]] == [0.0, 0.1, 0.2, 0.3, 0.5, 0.8]
    fastbert = json.loads((output / "runs" / "fastbert-seed0.json").read_text(encoding="utf-8"))
    # at s = 0 every text runs every layer: the FastBERT's own full-depth predictions, scored on every test text
    assert curve["rows"][0]["avg_layers"] == 2 and curve["rows"][0]["macro_f1"] == pytest.approx(
        hand_macro_f1(fastbert["probabilities"]["student"], targets), abs=1e-6
    )
    assert "## Early exit: fastbert (seed 0)" in text and "| 0.8 |" in text


def test_selection_halves_are_the_odd_and_even_test_rows(report):
    from bert2textcnn.data.datamodule import demo_path
    from bert2textcnn.data.records import read_records

    output, _ = report
    test = read_records(demo_path("test"))
    names = sorted({r.label for r in test})
    labels = [names.index(r.label) for r in test]
    runs = {k: json.loads((output / "runs" / f"{k}-seed0.json").read_text())["probabilities"]["student"]
            for k in ("offline", "student")}  # fmt: skip
    with open(output / "results.csv", encoding="utf-8") as file:
        offline = next(row for row in csv.DictReader(file) if row["name"] == "offline")
    for column, rows in (("odd_rows", slice(1, None, 2)), ("even_rows", slice(0, None, 2))):
        offline_f1, plain_f1 = (hand_macro_f1(runs[k][rows], labels[rows]) for k in ("offline", "student"))
        expected = offline_f1 - plain_f1
        assert float(offline[f"macro_f1_minus_plain_{column}"]) == pytest.approx(expected, abs=1e-6)


def test_second_call_trains_only_new_runs(report):
    _, second = report
    assert second.count("finished earlier, skipped") == 3
    assert second.count("training …") == 2 and "multi_teacher · seed 0: training …" in second
    assert "fastbert · seed 0: training …" in second


def test_compare_schemes_notebook_runs_on_the_report(report):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    output, _ = report
    notebook = nbformat.read(REPO / "notebooks" / "compare_schemes.ipynb", as_version=4)
    os.environ["BENCHMARK_DIR"] = str(output)
    try:
        nbclient.NotebookClient(notebook, timeout=120, kernel_name="python3").execute()
    finally:
        del os.environ["BENCHMARK_DIR"]
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert sum("image/png" in o.get("data", {}) for o in outputs) >= 2


def test_model_overrides_train_a_variant_beside_the_reused_runs(report, tiny_teacher, tmp_path):
    output = tmp_path / "variant"
    shutil.copytree(report[0], output)  # the other tests keep reading the original report
    variants = "[{temperature: 2.0}, {student: bert, student_layers: 1}]"  # a small-BERT student is a variant too
    third = benchmark(output, tiny_teacher, "[offline]", "--model", variants, "--speed", "false")
    assert third.count("finished earlier, skipped") == 2  # the teacher and the plain student
    assert third.count("training …") == 2 and "offline (temperature=2.0) · seed 0: training …" in third
    record = json.loads((output / "runs" / "offline__temperature_2_0_-seed0.json").read_text(encoding="utf-8"))
    assert record["run"]["hparams"]["temperature"] == 2.0
    bert = json.loads((output / "runs" / "offline__student_bert__student_layers_1_-seed0.json").read_text("utf-8"))
    assert bert["settings"]["model"].items() >= {"student": "bert", "student_layers": 1, "student_lr": 1e-4}.items()
    text = (output / "report.md").read_text(encoding="utf-8")
    assert "| offline (temperature=2.0) | 1 |" in text and "| offline (student=bert, student_layers=1) | 1 |" in text


def test_train_false_reports_the_finished_runs_only(report, tiny_teacher, tmp_path):
    output = tmp_path / "partial"
    shutil.copytree(report[0], output)
    third = benchmark(output, tiny_teacher, "[offline, joint_isolated]", "--train", "false", "--speed", "false")
    assert "training …" not in third and "joint_isolated · seed 0: not trained, left out of the report" in third
    with open(output / "results.csv", encoding="utf-8") as file:
        assert [row["name"] for row in csv.DictReader(file)] == ["teacher", "student", "offline"]


def test_a_run_trained_under_other_defaults_is_trained_again(report, tiny_teacher, tmp_path):
    output = tmp_path / "stale"
    shutil.copytree(report[0], output)
    path = output / "runs" / "offline-seed0.json"
    record = json.loads(path.read_text(encoding="utf-8"))
    assert record["settings"]["model"]["alpha"] == 0.5  # the default it was trained under
    record["settings"]["model"]["alpha"] = 0.9  # as if the default had been 0.9 back then
    path.write_text(json.dumps(record), encoding="utf-8")
    third = benchmark(output, tiny_teacher, "[offline]", "--speed", "false")
    assert "offline · seed 0: trained earlier with other settings, training again" in third
    assert third.count("finished earlier, skipped") == 2 and third.count("training …") == 1


def test_runs_built_on_a_retrained_teacher_are_trained_again(report, tiny_teacher, tmp_path):
    output = tmp_path / "new_teacher"
    shutil.copytree(report[0], output)
    (output / "runs" / "teacher-seed0.json").unlink()
    third = benchmark(output, tiny_teacher, "[offline]", "--speed", "false")
    assert "teacher · seed 0: training …" in third and "student · seed 0: finished earlier, skipped" in third
    assert "offline · seed 0: teacher-seed0 trained again since, training again" in third


def test_a_second_sitting_adds_a_seed_to_the_first_sittings_rows(report, tiny_teacher, tmp_path):
    """A fresh folder trains seed 1 alone and reports it with the first sitting's seed 0: the teacher
    it fine-tunes again comes out the same (same digest), so the two sittings share one table."""
    first, _ = report
    output = tmp_path / "second_sitting"
    extra = ["--seeds", "[1]", "--speed", "false", "--reference", "student"]
    second = benchmark(output, tiny_teacher, "[offline]", *extra, "--earlier_results", f"[{first / 'results.csv'}]")
    assert second.count("training …") == 3 and "student · seed 1: training …" in second
    assert not (output / "runs" / "student-seed0.json").exists()  # seed 0 was not trained here
    with open(output / "results.csv", encoding="utf-8") as file:
        rows = list(csv.DictReader(file))
    seeds = {name: [row["seed"] for row in rows if row["name"] == name] for name in ("teacher", "student", "offline")}
    assert seeds == {"teacher": ["0"], "student": ["0", "1"], "offline": ["0", "1"]}
    assert {row["name"] for row in rows} >= {"multi_teacher", "fastbert"}  # only the first sitting trained them
    with open(first / "results.csv", encoding="utf-8") as file:
        earlier = {(row["name"], row["seed"]): row for row in csv.DictReader(file)}
    teacher = next(row for row in rows if row["name"] == "teacher")
    assert teacher["probabilities_digest"] == earlier["teacher", "0"]["probabilities_digest"]
    offline = {row["seed"]: float(row["macro_f1"]) for row in rows if row["name"] == "offline"}
    plain = {row["seed"]: float(row["macro_f1"]) for row in rows if row["name"] == "student"}
    spread = (output / "report.md").read_text(encoding="utf-8").split("## Spread over seeds")[1]
    line = next(line for line in spread.splitlines() if line.startswith("| offline |"))
    differences = [offline[seed] - plain[seed] for seed in ("0", "1")]
    assert line.startswith(f"| offline | 2 | {sum(offline.values()) / 2:.4f} |")
    assert f"| {sum(differences) / 2:+.4f} ± " in line  # paired with the reference of the same seed


def test_an_earlier_sitting_whose_teacher_came_out_otherwise_is_refused(report, tiny_teacher, tmp_path):
    first, _ = report
    with open(first / "results.csv", encoding="utf-8") as file:
        rows = list(csv.DictReader(file))
    rows[0]["probabilities_digest"] = "0" * 16  # the teacher row, as if trained otherwise
    rows[0]["macro_f1"] = str(float(rows[0]["macro_f1"]) - 0.01)
    other = tmp_path / "other_sitting.csv"
    with open(other, "w", encoding="utf-8", newline="") as file:
        writer = csv.DictWriter(file, list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    output = tmp_path / "refused"  # fresh: the teacher trains here, then the check must stop the call
    args = ["benchmark", "--output", str(output), "--schemes", "[offline]", "--seeds", "1", "--epochs", "1",
            "--teacher", str(tiny_teacher), "--data.max_length", "48", "--teacher_epochs", "4", "--teacher_model",
            "{teacher_lr: 3e-3, warmup_ratio: 0.0}", "--speed", "false", "--earlier_results", f"[{other}]"]  # fmt: skip
    result = subprocess.run(
        [sys.executable, "-m", "bert2textcnn", *args], capture_output=True, text=True, timeout=600,
        env={**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"},
    )  # fmt: skip
    assert result.returncode == 2
    assert f"{other}:2: 'teacher' seed 0 came out otherwise in that sitting" in result.stderr
    assert "Traceback" not in result.stderr
    assert "teacher · seed 0: training …" in result.stdout
    assert "student · seed 0: training …" not in result.stdout  # refused on the teacher, before any student


def test_a_record_without_an_option_added_since_is_still_current():
    from bert2textcnn.bench.plan import Run, same_settings, settings

    current = settings(Run("offline", "offline", 0))
    older = json.loads(json.dumps(current))
    del older["model"]["kd_warmup"]  # written before the option existed
    assert same_settings(older, current) and same_settings(None, current)
    older["model"]["alpha"] = 0.9
    assert not same_settings(older, current)


def test_a_new_kd_default_does_not_train_the_teacher_or_the_plain_student_again():
    from bert2textcnn.bench.plan import Run, same_settings, settings
    from bert2textcnn.distill.options import DistillOptions

    for scheme in ("teacher", "student"):
        current = settings(Run(scheme, scheme, 0))
        assert not {option.name for option in fields(DistillOptions)} & current["model"].keys()
        older = json.loads(json.dumps(current))
        older["model"] |= {"trust_labels": True, "alpha": 0.2}  # recorded when they were kept
        assert same_settings(older, current)
        older["model"]["weight_decay"] = 1.0
        assert not same_settings(older, current)
    distilled = settings(Run("offline", "offline", 0))
    assert distilled["model"]["trust_labels"] is False  # offline's own default
    older = json.loads(json.dumps(distilled))
    older["model"]["trust_labels"] = True
    assert not same_settings(older, distilled)


def test_distilled_data_variants_are_named_and_reach_only_the_distilled_runs():
    from bert2textcnn.bench.plan import plan

    runs = plan(["offline"], seeds=1, epochs=2, distilled_data={"augment": {"copies": 3}}, teacher_epochs=1)
    by_scheme = {run.scheme: run for run in runs}
    assert by_scheme["offline"].name == "offline (augment={'copies': 3})"
    assert by_scheme["offline"].data == {"augment": {"copies": 3}}
    assert by_scheme["student"].data == {} and by_scheme["teacher"].epochs == 1 and by_scheme["offline"].epochs == 2


def test_a_joint_run_gets_its_schemes_transfer_set_and_chooses_on_validation():
    from bert2textcnn.bench.plan import chooses_on_validation, plan

    runs = {run.scheme: run for run in plan(["joint_isolated", "offline"], seeds=1, epochs=5)}
    assert runs["joint_isolated"].data["augment"]["copies"] == 3 and runs["offline"].data == {}
    assert chooses_on_validation(runs["joint_isolated"]) and not chooses_on_validation(runs["offline"])
    single = plan(["joint_isolated"], seeds=1, epochs=5, model={"tail_kd": [{"alpha": 1.0, "temperature": 2.0}]})
    assert not chooses_on_validation(single[-1])


def test_a_joint_run_chooses_its_kd_setting_on_the_test_files_odd_rows_only(tiny_teacher, tmp_path):
    from bert2textcnn.checkpoint import read_checkpoint
    from bert2textcnn.data.datamodule import demo_path
    from bert2textcnn.data.records import read_records

    output = tmp_path / "joint"
    extra = ["--epochs", "3", "--model", "{tail_epochs: 1}", "--distilled_data", "{augment: {copies: 1}}"]
    benchmark(output, tiny_teacher, "[joint_isolated]", "--speed", "false", *extra)
    choice = read_records(output / "choice_rows.csv")
    assert [r.text for r in choice] == [r.text for r in read_records(demo_path("test"))[1::2]]
    [record] = (output / "runs").glob("joint_isolated*-seed0.json")
    tail = read_checkpoint(json.loads(record.read_text(encoding="utf-8"))["checkpoint"])["tail"]
    assert tail["chosen"] in tail["settings"] and len(tail["scores"]) == 2
    assert len(tail["val_logits"]) == len(choice)  # the rows it chose on: the odd ones


def test_a_list_of_model_options_trains_each_variant_beside_one_teacher_and_plain_student():
    from bert2textcnn.bench.plan import plan

    runs = plan(["offline"], seeds=2, epochs=2, label_fraction=0.1, model=[{}, {"alpha": 1.0, "temperature": 2.0}])
    names = [run.name for run in runs if run.seed == 0]
    assert names.count("teacher") == 1 and names.count("student") == 1
    assert {"offline", "offline (alpha=1.0, temperature=2.0)"} <= set(names)
    assert {"offline · 10% + pool (hard)", "offline · 10% + pool (hard) (alpha=1.0, temperature=2.0)"} <= set(names)
    variant = next(run for run in runs if run.name == "offline (alpha=1.0, temperature=2.0)" and run.seed == 1)
    assert variant.hparams == {"alpha": 1.0, "temperature": 2.0} and variant.plain_run == "student-seed1"
    assert len({run.key for run in runs}) == len(runs)  # no two runs share a record


def test_selection_halves_score_each_half_alone():
    """The distilled run differs from plain on one odd row only: the odd half moves, the even one cannot."""
    from dataclasses import asdict

    import torch

    from bert2textcnn.bench.plan import Run
    from bert2textcnn.bench.report import score

    targets = torch.tensor([0, 1, 0, 1, 0, 0, 1, 1])
    plain = [[0.9, 0.1] if y == 0 else [0.1, 0.9] for y in targets.tolist()]
    plain[1] = [0.9, 0.1]  # row 1 (odd): plain misses a spam text
    distilled = [row[:] for row in plain]
    distilled[1] = [0.1, 0.9]  # the distilled run catches it
    record = {"run": asdict(Run("offline", "offline", 0, plain_run="student-seed0")),
              "probabilities": {"student": distilled}, "train_seconds": 1.0, "epochs": 1}  # fmt: skip
    done = {"student-seed0": {"probabilities": {"student": plain}}}
    row = score(record, ["normal", "spam"], targets, 1, done)
    assert row["macro_f1_minus_plain_even_rows"] == 0
    # odd rows 1, 3, 5, 7 (labels 1, 1, 0, 1): plain F1 spam 4/5, normal 2/3; distilled all right
    assert row["macro_f1_minus_plain_odd_rows"] == pytest.approx(1.0 - (4 / 5 + 2 / 3) / 2)


def test_rco_follows_the_anchors_its_benchmark_teacher_kept(tiny_teacher, tmp_path):
    output = tmp_path / "rco"
    benchmark(output, tiny_teacher, "[rco]", "--rco_anchors", "2", "--speed", "false", "--label_fraction", "null")
    teacher = json.loads((output / "runs" / "teacher-seed0.json").read_text(encoding="utf-8"))
    index = json.loads(Path(teacher["anchors"]).read_text(encoding="utf-8"))
    assert teacher["run"]["hparams"]["save_anchors"] == 2 and len(index["anchors"]) == 2
    with open(output / "results.csv", encoding="utf-8") as file:
        assert "rco" in {row["scheme"] for row in csv.DictReader(file)}


def test_a_variant_runs_only_for_the_schemes_that_take_its_options():
    from bert2textcnn.bench.plan import plan
    from bert2textcnn.errors import UserError

    runs = plan(["offline", "rco"], 1, 1, model=[{}, {"hint_weight": 0.01}])
    names = {run.name for run in runs}
    assert {"offline", "offline (hint_weight=0.01)", "rco"} <= names and "rco (hint_weight=0.01)" not in names
    assert next(run for run in runs if run.scheme == "teacher").hparams["save_anchors"] == 3  # rco's route
    assert "save_anchors" not in next(run for run in plan(["offline"], 1, 1) if run.scheme == "teacher").hparams
    low = plan(["offline", "rco"], 1, 1, label_fraction=0.05, model=[{}, {"hint_weight": 0.01}])
    assert {"rco · 5% + pool", "rco · 5% + pool (hard)", "offline · 5% + pool (hint_weight=0.01)"} <= {
        run.name for run in low
    }
    assert all(run.hparams.get("save_anchors") == 3 for run in low if run.scheme == "teacher")
    with pytest.raises(UserError, match=r"takes \['hint_wieght'\]"):
        plan(["offline"], 1, 1, model={"hint_wieght": 0.1})
    kinds = {run.name for run in plan(["offline", "fastbert", "theseus"], 1, 1, model=[{}, {"student": "bert"}])}
    assert {"offline (student=bert)", "fastbert", "theseus"} <= kinds  # a student kind is a variant where it is free
    assert not {"fastbert (student=bert)", "theseus (student=bert)"} & kinds


def test_old_models_are_trained_per_seed_and_share_the_historical_weight():
    from bert2textcnn.bench.plan import plan
    from bert2textcnn.errors import UserError

    runs = plan(["offline", "multi_teacher"], seeds=2, epochs=1, historical_weight=0.3,
                old_models=[{}, {"data": {"tokenizer": "jieba"}}])  # fmt: skip
    old = next(run for run in runs if run.name == "old (tokenizer=jieba)" and run.seed == 1)
    assert old.scheme == "student" and old.data == {"tokenizer": "jieba"} and old.plain_run == "student-seed1"
    mixed = next(run for run in runs if run.scheme == "multi_teacher" and run.seed == 1)
    assert mixed.old_runs == ["student-seed1", "old__tokenizer_jieba_-seed1"]
    assert mixed.hparams["historical_weights"] == [0.15, 0.15]
    assert next(run for run in runs if run.scheme == "offline" and run.seed == 1).old_runs == mixed.old_runs
    assert [run.name for run in runs].index("old (tokenizer=jieba)") < [run.name for run in runs].index("offline")
    default = plan(["multi_teacher"], seeds=1, epochs=1)  # the plain student alone, as before the option
    assert all(run.old_runs == [] for run in default)
    assert next(run for run in default if run.scheme == "multi_teacher").hparams["historical_weights"] == [0.3]
    with pytest.raises(UserError, match=r"--old_models: the plain student takes no \['alpha'\]"):
        plan(["offline"], 1, 1, old_models=[{"model": {"alpha": 0.5}}])
    with pytest.raises(UserError, match=r"--old_models: \['tokenizer'\]"):
        plan(["offline"], 1, 1, old_models=[{"tokenizer": "jieba"}])


def test_a_record_written_before_old_runs_existed_is_still_current():
    from dataclasses import asdict

    from bert2textcnn.bench.plan import Run, same_run

    run = Run("offline", "offline", 0, plain_run="student-seed0")
    older = {key: value for key, value in asdict(run).items() if key != "old_runs"}
    assert same_run(older, run)
    assert not same_run(older, Run("offline", "offline", 0, plain_run="student-seed0", old_runs=["old-seed0"]))


def test_flips_are_measured_against_each_old_model_and_their_average():
    import torch

    from bert2textcnn.bench.report import compatibility_with_old

    targets = torch.tensor([0, 1, 0, 1])
    first = [[0.9, 0.1], [0.1, 0.9], [0.9, 0.1], [0.6, 0.4]]  # wrong, unsure, on row 3
    second = [[0.4, 0.6], [0.1, 0.9], [0.9, 0.1], [0.1, 0.9]]  # wrong, unsure, on row 0
    new = [[0.3, 0.7], [0.1, 0.9], [0.9, 0.1], [0.6, 0.4]]  # wrong on rows 0 and 3
    figures = compatibility_with_old(new, [first, second], targets, positive=1)
    assert figures["negative_flip_rate_old1"] == 0.25 and figures["negative_flip_rate_old2"] == 0.25
    assert figures["positive_flip_rate_old1"] == 0.0 and figures["coverage_old1"] == 1.0
    # Their average, [0.65, 0.35] on row 0 and [0.35, 0.65] on row 3, is right where each is wrong:
    # two flips, against one for either model alone.
    assert figures["negative_flip_rate"] == 0.5 and figures["agreement"] == 0.5
    wrong_twice = [[0.2, 0.8], [0.1, 0.9], [0.9, 0.1], [0.8, 0.2]]  # wrong on rows 0 and 3, as new is
    alone = compatibility_with_old(new, [wrong_twice], targets, positive=1)
    assert alone["negative_flip_rate"] == 0.0 and not any(key.endswith("_old1") for key in alone)


def test_a_jieba_old_model_beside_the_plain_one_reaches_the_report(tiny_teacher, tmp_path):
    output = tmp_path / "old"
    benchmark(output, tiny_teacher, "[multi_teacher]", "--speed", "false", "--label_fraction", "null",
              "--old_models", "[{}, {data: {tokenizer: jieba}}]")  # fmt: skip
    old = json.loads((output / "runs" / "old__tokenizer_jieba_-seed0.json").read_text(encoding="utf-8"))
    mixed = json.loads((output / "runs" / "multi_teacher-seed0.json").read_text(encoding="utf-8"))
    import torch

    hparams = torch.load(mixed["checkpoint"], map_location="cpu", weights_only=True)["hyper_parameters"]
    assert hparams["historical"] == [str(output / "runs" / "student-seed0.ckpt"), old["checkpoint"]]
    assert hparams["historical_weights"] == [0.15, 0.15]
    with open(output / "results.csv", encoding="utf-8") as file:
        row = next(row for row in csv.DictReader(file) if row["name"] == "multi_teacher")
    assert {"negative_flip_rate_old1", "negative_flip_rate_old2", "negative_flip_rate"} <= row.keys()
    report_text = (output / "report.md").read_text(encoding="utf-8")
    assert "## Old models" in report_text and "NFR vs old (tokenizer=jieba)" in report_text
