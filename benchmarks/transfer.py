"""Few labels, much text: where distillation pays (issue 6). On sms_spam_zh, a stratified 5% of
train.csv keeps its labels (about 350) and the other 95% is the unlabelled pool. Rows, on dev.csv
after the last step, mean ± std over seeds (each seed also draws its own 5%):

- teacher fine-tuned on the 5% (learning rate 1e-4: the default 2e-5 under-trains on so few
  labels); plain student on the 5% (the two ends of the gap);
- offline (soft KD) on the 5% alone; with the pool; with hard pseudo-labels on the pool;
  with augmented copies of the 5% instead of the pool;
- joint_coupled with the pool (teacher and student trained together, 8 labelled + 24 unlabelled
  rows per batch).

"gap closed" = (student − plain) / (teacher − plain), on macro-F1.

    python benchmarks/transfer.py --seeds 3 --data ../shared/data/sms_spam_zh
"""

from __future__ import annotations

import argparse
import csv
import json
import tempfile
from pathlib import Path
from typing import Any

import torch
from common import cell, mean, print_table, train_and_evaluate

from bert2textcnn.data.augment import Augmentation
from bert2textcnn.data.records import read_records
from bert2textcnn.data.transfer import keep_label_fraction
from bert2textcnn.io import atomic_write_text

KEYS = ["macro_f1", "recall_spam"]


def write_split(train: Path, fraction: float, seed: int, directory: Path) -> tuple[str, str]:
    """The labelled share and the unlabelled rest of ``train`` as two files (the rest keeps no label)."""
    kept, dropped = keep_label_fraction(read_records(train), fraction, seed)
    labelled, pool = directory / f"labelled-{seed}.csv", directory / f"pool-{seed}.txt"
    with open(labelled, "w", encoding="utf-8", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["text", "label"])
        writer.writerows([r.text, r.label] for r in kept)
    pool.write_text("".join(r.text.replace("\n", " ") + "\n" for r in dropped), encoding="utf-8")
    return str(labelled), str(pool)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared/data/sms_spam_zh")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--label-fraction", type=float, default=0.05)
    parser.add_argument("--teacher-epochs", type=int, default=10, help="teacher fine-tuning on the labelled share")
    parser.add_argument("--teacher-lr", type=float, default=1e-4, help="2e-5 under-trains on ~350 labels")
    parser.add_argument("--teacher-batch-size", type=int, default=16)
    parser.add_argument("--student-steps", type=int, default=1000, help="optimizer steps of every offline/plain run")
    parser.add_argument("--joint-epochs", type=int, default=2, help="epochs of joint_coupled over labelled + pool")
    parser.add_argument("--joint-unlabeled-share", type=float, default=0.75)
    parser.add_argument("--augment-copies", type=int, default=10)
    parser.add_argument("--output", type=Path, help="also write every run's metrics to this JSON file")
    args = parser.parse_args()
    if not (args.data / "train.csv").is_file():
        raise SystemExit(f"no train.csv under {args.data}: pass --data DIR with train.csv and dev.csv")
    print(f"torch threads {torch.get_num_threads()}, data {args.data}, label fraction {args.label_fraction}")

    results: dict[str, list[dict[str, Any]]] = {}

    def record(name: str, result: dict[str, Any]) -> dict[str, Any]:
        results.setdefault(name, []).append(result)
        if args.output:
            atomic_write_text(args.output, json.dumps(results, indent=1))
        return result

    share = f"{args.label_fraction:.0%}"
    steps = {"max_steps": args.student_steps, "max_epochs": -1}
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        for seed in range(args.seeds):
            labelled, pool = write_split(args.data / "train.csv", args.label_fraction, seed, workdir)
            base = {"train_path": labelled, "val_path": str(args.data / "dev.csv"), "sample_seed": seed}
            with_pool = {**base, "unlabeled_path": pool}
            teacher_data = {**base, "batch_size": args.teacher_batch_size}
            teacher_trainer = {"max_epochs": args.teacher_epochs}
            teacher = train_and_evaluate(
                "teacher", teacher_data, seed, workdir, teacher_trainer, teacher_lr=args.teacher_lr
            )
            record("teacher", teacher)
            record("student", train_and_evaluate("student", base, seed, workdir, steps))
            offline = {"teacher_checkpoint": teacher["checkpoint"], "cache_dir": str(workdir / "cache")}
            variants = {
                f"offline, {share} only": (base, {}),
                "offline + pool (soft)": (with_pool, {}),
                "offline + pool (hard)": (with_pool, {"unlabeled_target": "hard"}),
                "offline + augmentation": ({**base, "augment": Augmentation(copies=args.augment_copies)}, {}),
            }
            for name, (data, hparams) in variants.items():
                record(name, train_and_evaluate("offline", data, seed, workdir, steps, name, **offline, **hparams))
            joint_data = {**with_pool, "unlabeled_share": args.joint_unlabeled_share}
            joint_trainer = {"max_epochs": args.joint_epochs}
            joint = train_and_evaluate(
                "joint_coupled", joint_data, seed, workdir, joint_trainer, "joint_coupled", teacher_lr=args.teacher_lr
            )
            record("joint_coupled + pool", joint)

    plain = mean(results["student"], "student_macro_f1")
    teacher = mean(results["teacher"], "teacher_macro_f1")
    rows = [["teacher (on the labelled share)"] + [cell(results["teacher"], f"teacher_{k}") for k in KEYS] + ["1.00"]]
    for name, runs in results.items():
        if name == "teacher":
            continue
        gap = (mean(runs, "student_macro_f1") - plain) / (teacher - plain) if teacher != plain else float("nan")
        rows.append([name, *(cell(runs, f"student_{k}") for k in KEYS), f"{gap:.2f}"])
    print_table(
        f"{args.label_fraction:.0%} of the labels, the rest unlabelled; dev.csv, {args.seeds} seed(s)",
        ["run", "macro-F1", "spam recall", "gap closed"],
        rows,
    )


if __name__ == "__main__":
    main()
