"""Compare the joint schemes on real data with the real default teacher (m3e-small).

Trains `teacher` (the time reference), `student`, `joint_isolated`, `joint_coupled` and
`multitask` for the same epochs and seeds on train.csv, then evaluates the last epoch on dev.csv
(no checkpoint selection, so dev is not used twice). Prints one table: mean ± std over seeds.

    make bench-joint
    python benchmarks/joint_schemes.py --epochs 2 --seeds 1 --data ../shared/data/sms_spam_zh
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import lightning as L
import torch

from bert2textcnn.data.datamodule import TextDataModule
from bert2textcnn.schemes import SCHEMES

SCHEMES_COMPARED = ["teacher", "student", "joint_isolated", "joint_coupled", "multitask"]
COLUMNS = ["student_macro_f1", "student_precision_spam", "student_recall_spam", "teacher_macro_f1"]


def run(scheme: str, data_dir: Path, epochs: int, seed: int, batch_size: int) -> dict[str, float]:
    L.seed_everything(seed, verbose=False)
    data = TextDataModule(str(data_dir / "train.csv"), str(data_dir / "dev.csv"), batch_size=batch_size)
    model = SCHEMES[scheme](labels=data.labels, vocab=data.vocab, max_length=data.max_length)
    trainer = L.Trainer(
        max_epochs=epochs,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    start = time.perf_counter()
    trainer.fit(model, datamodule=data)
    seconds_per_epoch = (time.perf_counter() - start) / epochs
    [metrics] = trainer.validate(model, datamodule=data, verbose=False)
    result = {"seconds_per_epoch": seconds_per_epoch}
    for role in ("student", "teacher"):
        for name in ("macro_f1", "precision_spam", "recall_spam"):
            key = f"val/{role}_{name}"
            if key in metrics:
                result[f"{role}_{name}"] = float(metrics[key])
    print(f"  {scheme:<15} seed {seed}: {result}", flush=True)
    return result


def summarise(values: list[float]) -> str:
    if not values:
        return "—"
    mean = statistics.fmean(values)
    return f"{mean:.3f}" if len(values) == 1 else f"{mean:.3f} ± {statistics.stdev(values):.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared/data/sms_spam_zh")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    if not (args.data / "train.csv").is_file():
        raise SystemExit(f"no train.csv under {args.data}: pass --data DIR with train.csv and dev.csv")

    print(f"torch threads: {torch.get_num_threads()}; data: {args.data}; epochs: {args.epochs}; seeds: {args.seeds}")
    results: dict[str, list[dict[str, float]]] = {s: [] for s in SCHEMES_COMPARED}
    for seed in range(args.seeds):
        for scheme in SCHEMES_COMPARED:
            results[scheme].append(run(scheme, args.data, args.epochs, seed, args.batch_size))

    reference = statistics.fmean(r["seconds_per_epoch"] for r in results["teacher"])
    header = ["scheme", *COLUMNS, "s/epoch", "time vs teacher"]
    print("\n| " + " | ".join(header) + " |\n|" + "---|" * len(header))
    for scheme, runs in results.items():
        seconds = statistics.fmean(r["seconds_per_epoch"] for r in runs)
        cells = [summarise([r[c] for r in runs if c in r]) for c in COLUMNS]
        print(f"| {scheme} | " + " | ".join(cells) + f" | {seconds:.0f} | {seconds / reference:.2f}× |")


if __name__ == "__main__":
    main()
