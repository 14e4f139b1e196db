"""Seeds from several sittings in one report: reading earlier results.csv files back, refusing a
run that came out otherwise, and the Spread table's figures (in-process, no training)."""

from __future__ import annotations

import csv
import re
import statistics
from pathlib import Path

import pytest

from bert2textcnn.bench.plan import plan, seed_list
from bert2textcnn.bench.report import spread_table
from bert2textcnn.bench.sittings import read_earlier, with_earlier
from bert2textcnn.errors import UserError


def row(name: str, seed: int, macro_f1: float, digest: str = "d", seconds: float = 10.0) -> dict:
    return {"name": name, "scheme": name.split(" ")[0], "seed": seed, "label_fraction": 1.0, "macro_f1": macro_f1,
            "probabilities_digest": f"{digest}{name}{seed}", "train_seconds": seconds}  # fmt: skip


def write_results(path: Path, rows: list[dict]) -> Path:
    with open(path, "w", encoding="utf-8", newline="") as file:
        writer = csv.DictWriter(file, list(dict.fromkeys(key for r in rows for key in r)))
        writer.writeheader()
        writer.writerows(rows)
    return path


def test_a_seed_list_plans_those_seeds_beside_the_one_teacher():
    runs = plan(["offline"], seeds=[3, 4], epochs=1)
    assert [(run.name, run.seed) for run in runs] == [
        ("teacher", 0), ("student", 3), ("offline", 3), ("student", 4), ("offline", 4),
    ]  # fmt: skip
    assert seed_list(3) == [0, 1, 2]
    for wrong in ([], [2, 2], [-1]):
        with pytest.raises(UserError, match="--seeds"):
            seed_list(wrong)


def test_earlier_rows_read_back_as_the_numbers_they_were(tmp_path):
    written = [
        row("teacher", 0, 0.95),
        row("student", 0, 0.9) | {"macro_f1_minus_plain": ""},
        row("offline", 0, 0.1 + 0.2),
    ]
    earlier = read_earlier([str(write_results(tmp_path / "results.csv", written))])
    assert [item.line for item in earlier] == [2, 3, 4]
    assert earlier[2].row["macro_f1"] == 0.1 + 0.2 and earlier[2].row["seed"] == 0  # exact, an int
    assert "macro_f1_minus_plain" not in earlier[1].row  # an empty cell is a column that row lacks


def test_rows_of_runs_not_trained_here_join_in_seed_order(tmp_path):
    earlier = read_earlier([str(write_results(tmp_path / "a.csv", [row("teacher", 0, 0.95), row("student", 0, 0.9),
                                                                    row("student", 1, 0.91)]))])  # fmt: skip
    here = [row("teacher", 0, 0.95), row("student", 2, 0.92)]
    merged = with_earlier(here, earlier)
    assert [(r["name"], r["seed"]) for r in merged] == [("teacher", 0), ("student", 0), ("student", 1), ("student", 2)]


def test_a_run_trained_in_both_sittings_keeps_the_faster_timing(tmp_path):
    """The teacher, fine-tuned again in a later sitting on a slower machine, is the same run: its
    earlier, faster time is what it costs, while its scores are the ones trained here."""
    before = [row("teacher", 0, 0.95, seconds=800.0) | {"seconds_per_epoch": 800.0}, row("student", 0, 0.9, "d", 40.0)]
    earlier = read_earlier([str(write_results(tmp_path / "a.csv", before))])
    here = [row("teacher", 0, 0.95, seconds=1200.0) | {"seconds_per_epoch": 1200.0, "accuracy": 0.96},
            row("student", 0, 0.9, seconds=30.0)]  # fmt: skip
    teacher, student = with_earlier(here, earlier)
    assert (teacher["train_seconds"], teacher["seconds_per_epoch"], teacher["accuracy"]) == (800.0, 800.0, 0.96)
    assert student["train_seconds"] == 30.0  # faster here: this sitting's time stands
    assert here[0]["train_seconds"] == 1200.0  # this sitting's own rows are not rewritten


def test_a_run_that_came_out_otherwise_in_an_earlier_sitting_is_refused(tmp_path):
    path = write_results(tmp_path / "a.csv", [row("student", 0, 0.9), row("teacher", 0, 0.95, digest="other")])
    with pytest.raises(UserError, match=re.escape(f"{path}:3: 'teacher' seed 0 came out otherwise")):
        with_earlier([row("teacher", 0, 0.95 + 1e-4)], read_earlier([str(path)]))


def test_a_run_that_differs_only_in_rounding_counts_as_the_same(tmp_path, capsys):
    """Another digest with every score the same is float rounding (another machine or load), while
    one per-class figure apart is another model, even at the same macro-F1."""
    scores = {"accuracy": 0.9, "precision_spam": 0.8, "recall_spam": 0.7}
    path = write_results(tmp_path / "a.csv", [row("teacher", 0, 0.95) | scores])
    here = row("teacher", 0, 0.95, digest="rounded otherwise") | scores
    assert with_earlier([here], read_earlier([str(path)])) == [here]
    assert f"{path}:2: 'teacher' seed 0: the test probabilities differ from that sitting's in rounding" in (
        capsys.readouterr().out
    )
    with pytest.raises(UserError, match="came out otherwise"):
        with_earlier([here | {"recall_spam": 0.71}], read_earlier([str(path)]))


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("name,seed\nteacher,0\n", r"a.csv: not a benchmark results.csv .*'macro_f1'"),
        ("name,seed,macro_f1,probabilities_digest\nteacher,zero,0.9,d\n", r"a.csv:2: seed is 'zero', not a number"),
        ("name,seed,macro_f1,probabilities_digest\nteacher,0,0.9,d,extra\n", r"a.csv:2: more fields than the header"),
        ("name,seed,macro_f1,probabilities_digest\nteacher,0,,d\n", r"a.csv:2: no value for \['macro_f1'\]"),
    ],
)
def test_a_damaged_earlier_file_is_named_with_its_line(tmp_path, content, problem):
    path = tmp_path / "a.csv"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(UserError, match=problem):
        read_earlier([str(path)])
    with pytest.raises(UserError, match=r"missing\.csv: cannot read earlier results"):
        read_earlier([str(tmp_path / "missing.csv")])


def test_the_spread_table_gives_mean_std_extremes_and_the_paired_difference():
    scores = {"direct": [0.990, 0.995, 0.980], "theseus": [0.993, 0.995, 0.990]}
    rows = [row(name, seed, value, seconds=100 + seed) for name, values in scores.items()
            for seed, value in enumerate(values)]  # fmt: skip
    lines = spread_table(rows, "direct")
    assert "| run | seeds | mean | std | min | max | Δ vs direct, paired | train s: median (fastest) |" in lines
    theseus = next(line for line in lines if line.startswith("| theseus |"))
    differences = [a - b for a, b in zip(scores["theseus"], scores["direct"], strict=True)]
    mean, error = statistics.fmean(differences), statistics.stdev(differences) / 3**0.5
    expected = (f"| theseus | 3 | {statistics.fmean(scores['theseus']):.4f} | {statistics.stdev(scores['theseus']):.4f}"
                f" | 0.9900 | 0.9950 | {mean:+.4f} ± {error:.4f} | 101 (100) |")  # fmt: skip
    assert theseus == expected
    assert next(line for line in lines if line.startswith("| direct |")).endswith("| — | 101 (100) |")
    assert "Δ vs" not in "".join(spread_table(rows, None))  # no reference: no paired column
