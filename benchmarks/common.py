"""What the benchmark scripts share: train one scheme, evaluate after the last epoch, tabulate."""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

import lightning as L

from bert2textcnn.data.datamodule import TextDataModule
from bert2textcnn.schemes import SCHEMES


def train_and_evaluate(
    scheme: str,
    data: dict[str, Any],
    seed: int,
    workdir: Path,
    trainer: dict[str, Any],
    label: str | None = None,
    **hparams: Any,
) -> dict[str, Any]:
    """Train ``scheme`` and validate once after the last step (no checkpoint selection, so the
    validation file is not used twice). Returns the val metrics without their ``val/`` prefix,
    ``seconds`` of training, and the saved ``checkpoint``."""
    label = label or scheme
    L.seed_everything(seed, verbose=False)
    datamodule = TextDataModule(**data, learn_from_unlabeled=SCHEMES[scheme].distils)
    linked = {"labels": datamodule.labels, "vocab": datamodule.vocab, "max_length": datamodule.max_length}
    model = SCHEMES[scheme](**linked, **hparams)
    fitter = L.Trainer(
        limit_val_batches=0,
        num_sanity_val_steps=0,
        logger=False,
        default_root_dir=workdir / f"{label}-{seed}",
        enable_progress_bar=False,
        enable_model_summary=False,
        **trainer,
    )
    start = time.perf_counter()
    fitter.fit(model, datamodule=datamodule)
    result: dict[str, Any] = {"seconds": time.perf_counter() - start, "epochs": fitter.current_epoch}
    result["checkpoint"] = str(workdir / f"{label}-{seed}.ckpt")
    fitter.save_checkpoint(result["checkpoint"])
    evaluator = L.Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False)
    [metrics] = evaluator.validate(model, datamodule=datamodule, verbose=False)
    result.update({k.removeprefix("val/"): float(v) for k, v in metrics.items()})
    shown = {k: round(v, 4) for k, v in result.items() if isinstance(v, float) and not k.startswith("loss")}
    print(f"  {label:<24} seed {seed}: {shown}", flush=True)
    return result


def mean(runs: list[dict[str, Any]], key: str) -> float:
    return statistics.fmean(r[key] for r in runs)


def cell(runs: list[dict[str, Any]], key: str) -> str:
    values = [r[key] for r in runs if key in r]
    if not values:
        return "—"
    average = statistics.fmean(values)
    return f"{average:.3f}" if len(values) == 1 else f"{average:.3f} ± {statistics.stdev(values):.3f}"


def print_table(title: str, header: list[str], rows: list[list[str]]) -> None:
    print(f"\n{title}\n\n| " + " | ".join(header) + " |\n|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(row) + " |")
