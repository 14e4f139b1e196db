"""Compare the schemes on real data with the real default teacher (m3e-small); two tables.

1. Joint schemes (issue 4): `teacher` (the time reference), `student`, `joint_isolated`,
   `joint_coupled`, `multitask` — student and teacher macro-F1, spam precision / recall, and
   wall time per epoch relative to fine-tuning the teacher alone.
2. Replacing a production model (issue 5): the plain `student` plays the old production model;
   the new students of `joint_isolated` and `multi_teacher` (old model as historical teacher) are
   compared with it — macro-F1, spam recall, coverage of the old model's spam hits, negative flip
   rate (NFR).

Every run trains for the same epochs with the same seeds on train.csv and is evaluated after its
last epoch on dev.csv (no checkpoint selection, so dev is not used twice). Mean ± std over seeds.

    make bench
    python benchmarks/schemes.py --epochs 2 --seeds 1 --data ../shared/data/sms_spam_zh
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path
from typing import Any

import torch
from common import cell, print_table, train_and_evaluate

JOINT_TABLE = ["teacher", "student", "joint_isolated", "joint_coupled", "multitask"]
REPLACEMENT_TABLE = ["joint_isolated", "multi_teacher"]


def run(scheme: str, args: argparse.Namespace, seed: int, workdir: Path, **hparams: Any) -> dict[str, Any]:
    data = {"train_path": str(args.data / "train.csv"), "val_path": str(args.data / "dev.csv")}
    result = train_and_evaluate(
        scheme, {**data, "batch_size": args.batch_size}, seed, workdir, {"max_epochs": args.epochs}, **hparams
    )
    result["seconds_per_epoch"] = result["seconds"] / args.epochs
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared/data/sms_spam_zh")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--historical-weight", type=float, default=0.3)
    args = parser.parse_args()
    if not (args.data / "train.csv").is_file():
        raise SystemExit(f"no train.csv under {args.data}: pass --data DIR with train.csv and dev.csv")
    print(f"torch threads {torch.get_num_threads()}, data {args.data}, epochs {args.epochs}, seeds {args.seeds}")

    results: dict[str, list[dict[str, Any]]] = {s: [] for s in [*JOINT_TABLE, "multi_teacher"]}
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        for seed in range(args.seeds):
            for scheme in ("teacher", "student"):
                results[scheme].append(run(scheme, args, seed, workdir))
            old = results["student"][-1]["checkpoint"]  # the "production" model of the second table
            for scheme in ("joint_isolated", "joint_coupled", "multitask"):
                results[scheme].append(run(scheme, args, seed, workdir, compare_to=old))
            hparams = {"historical": [old], "historical_weights": [args.historical_weight]}
            results["multi_teacher"].append(run("multi_teacher", args, seed, workdir, **hparams))

    reference = statistics.fmean(r["seconds_per_epoch"] for r in results["teacher"])
    columns = ["student_macro_f1", "student_precision_spam", "student_recall_spam", "teacher_macro_f1"]
    rows = []
    for scheme in JOINT_TABLE:
        ratio = statistics.fmean(r["seconds_per_epoch"] for r in results[scheme]) / reference
        rows.append([scheme, *(cell(results[scheme], c) for c in columns), cell(results[scheme], "seconds_per_epoch")])
        rows[-1].append(f"{ratio:.2f}×")
    print_table(
        "Joint schemes (dev.csv, after the last epoch)", ["scheme", *columns, "s / epoch", "time vs teacher"], rows
    )

    compat = ["student_macro_f1", "student_recall_spam", "compat_coverage", "compat_negative_flip_rate"]
    old = results["student"]
    old_row = ["old: student", cell(old, "student_macro_f1"), cell(old, "student_recall_spam")]
    print_table(
        "Replacing the old model (the plain student): new students compared with it on dev.csv",
        ["new model", "macro-F1", "spam recall", "coverage of old spam hits", "NFR vs old", "PFR vs old"],
        [[*old_row, "1", "0", "0"]]
        + [
            [scheme, *(cell(results[scheme], c) for c in compat), cell(results[scheme], "compat_positive_flip_rate")]
            for scheme in REPLACEMENT_TABLE
        ],
    )


if __name__ == "__main__":
    main()
