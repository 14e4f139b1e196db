"""Compare the schemes on one data set — every scheme × seed, scored on the test file — into a
report folder. Finished runs are skipped on a second call, so an interrupted benchmark resumes.

    python -m bert2textcnn benchmark --data.train_path train.csv --data.test_path dev.csv \\
        --schemes all --seeds 3 --output reports/sms_spam_zh [--label_fraction 0.05]

The teacher is fine-tuned once, with length-grouped batches (faster, and harmless to BERT here),
and reused by every seed: `offline` and `multi_teacher` read it through the logits cache
(`multi_teacher` beside its historical models). Each seed trains the plain `student`: the baseline, and the
"production" model that `multi_teacher` learns from and every student is compared with
(coverage, negative flip rate) — or, with ``--old_models``, other old models of that seed: a
jieba TextCNN, a small BERT, several of them (compared with each and with their average).
Every run trains for the same epochs (the full-label teacher may take fewer: ``--teacher_epochs``,
for data sets where one BERT epoch costs the better part of an hour) and is scored after its last
one — no checkpoint selection, so the test file is read once, after training.
``--label_fraction`` adds a low-label scenario: a teacher and a plain student on that stratified
share of the labels, and `offline` students that also learn the rest of the training file as
unlabelled text (soft targets; hard pseudo-labels).

The folder gets ``results.csv`` (a row per run), ``report.md`` (mean ± std per run name, and the
share of the plain → teacher gap each closes), ``macro_f1.png``, ``pr_curves.png``, ``speed.png``
and ``runs/`` (each run's metrics, test-set probabilities and checkpoint).
"""

from __future__ import annotations

import csv
import json
import time
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import lightning as L
import torch

from bert2textcnn.bench.plan import (
    BenchmarkData,
    Run,
    chooses_on_validation,
    defaults,
    old_models_of,
    same_run,
    same_settings,
    settings,
)
from bert2textcnn.bench.report import HALVES, own_row, test_targets, write_report
from bert2textcnn.bench.sittings import EarlierRow, check_agrees, read_earlier
from bert2textcnn.checkpoint import AtomicCheckpointIO
from bert2textcnn.data.augment import Augmentation
from bert2textcnn.data.datamodule import TextDataModule, demo_path
from bert2textcnn.data.records import Record, read_records
from bert2textcnn.distill.route import INDEX
from bert2textcnn.distill.schemes import SCHEMES
from bert2textcnn.distill.schemes.base import DistillationModule
from bert2textcnn.errors import UserError
from bert2textcnn.files import atomic_write, atomic_write_text
from bert2textcnn.inference.predictor import StudentPredictor
from bert2textcnn.models.protocol import logits_in_order
from bert2textcnn.seeding import EpochSeeding


def train(run: Run, data: BenchmarkData, teacher: str | None, folder: Path, done: dict) -> dict[str, Any]:
    """Fit one run, save its checkpoint, and keep its models' probabilities on the test file.

    As ``fit`` trains (the same scheme and data module classes, epoch seeding, atomic checkpoint
    writes), with two differences on purpose: nothing is validated, because the test file must not
    choose a checkpoint, so the last epoch's weights are scored; and there is no TensorBoard log."""
    L.seed_everything(run.seed, verbose=False)
    scheme = SCHEMES[run.scheme]
    shared = {k: v for k, v in asdict(data).items() if k not in ("val_path", "test_path")}
    # The test file doubles as a validation file that is never evaluated (limit_val_batches=0). A
    # run that picks among KD settings picks on the test file's odd rows, so the report's even
    # rows quote it unflattered (its Selection table).
    val_path = choice_rows(data, folder) if chooses_on_validation(run) else data.test_path
    options = dict(run.data)
    if isinstance(options.get("augment"), dict):
        options["augment"] = Augmentation(**options["augment"])
    # The run's own data options win over the shared ones (an old model's own tokenizer).
    datamodule = TextDataModule(**(shared | options), val_path=val_path, learn_from_unlabeled=scheme.distils)
    hparams = {"teacher": teacher, **run.hparams}
    declared = defaults(scheme)  # what the scheme takes decides what it is given
    if "teacher_checkpoint" in declared and run.teacher_run:  # the benchmark's fine-tuned teacher, frozen
        hparams["teacher_checkpoint"] = done[run.teacher_run]["checkpoint"]
    if "teacher_route" in declared:  # rco: the anchors saved along that teacher's run
        hparams["teacher_route"] = done[run.teacher_run]["anchors"]
    anchors = folder / "anchors" / run.key if run.hparams.get("save_anchors") else None
    if anchors:
        hparams["anchor_dir"] = str(anchors)
    if "cache_dir" in declared:
        hparams["cache_dir"] = str(folder / "cache")
    if "historical" in declared:  # the old models of the same seed (the plain student) play production
        hparams["historical"] = [done[key]["checkpoint"] for key in old_models_of(run)]
    model = scheme(labels=datamodule.labels, vocab=datamodule.vocab, max_length=datamodule.max_length, **hparams)
    trainer = L.Trainer(
        max_epochs=run.epochs,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        default_root_dir=folder / "lightning",
        callbacks=[EpochSeeding()],
        plugins=[AtomicCheckpointIO()],
    )
    start = time.perf_counter()
    trainer.fit(model, datamodule=datamodule)
    seconds = time.perf_counter() - start
    checkpoint = folder / "runs" / f"{run.key}.ckpt"
    trainer.save_checkpoint(checkpoint, weights_only=False)  # atomic (the plugin); the full state, as `fit` saves
    texts = [r.text for r in read_records(data.test_path, data.text_column, data.label_column)]
    return {
        "run": asdict(run),
        "settings": settings(run),
        "checkpoint": str(checkpoint),
        "train_seconds": seconds,
        "epochs": trainer.current_epoch,
        "probabilities": probabilities_on(model, texts),
        **({"anchors": str(anchors / INDEX)} if anchors else {}),
    }


def choice_rows(data: BenchmarkData, folder: Path) -> str:
    """The test file's odd rows (``report.HALVES``), written once into the report folder."""
    path = folder / "choice_rows.csv"
    if not path.is_file():
        records = read_records(data.test_path, data.text_column, data.label_column)[HALVES["odd_rows"]]
        columns = (data.text_column, data.label_column)

        def write(tmp: Path) -> None:
            with open(tmp, "w", encoding="utf-8", newline="") as file:
                writer = csv.writer(file)
                writer.writerow(columns)
                writer.writerows((r.text, r.label) for r in records)

        atomic_write(path, write)
    return str(path)


@torch.inference_mode()
def probabilities_on(model: DistillationModule, texts: list[str], batch_size: int = 64) -> dict[str, list]:
    """Each trained model's class probabilities on the test texts, in file order."""
    probabilities: dict[str, list] = {}
    if model.student is not None:
        probabilities["student"] = StudentPredictor(model.student, model.labels).probabilities(texts).tolist()
    if model.teacher is not None:
        teacher_logits = logits_in_order(model.teacher.eval(), texts, len(model.labels), batch_size)
        probabilities["teacher"] = teacher_logits.softmax(-1).tolist()
    return probabilities


def check_sitting(record: dict[str, Any], test: list[Record], earlier: Sequence[EarlierRow]) -> None:
    """Stop at a run that came out otherwise in an earlier sitting (see ``sittings``)."""
    if earlier:
        labels, targets, _ = test_targets(record["checkpoint"], test)
        check_agrees(own_row(record, labels, targets), earlier)


def run_all(
    data: BenchmarkData,
    output: str,
    runs: list[Run],
    teacher: str | None,
    speed: bool,
    threads: int,
    train_missing: bool = True,
    earlier_results: Sequence[str] = (),
    reference: str | None = None,
) -> Path:
    """Train every run not finished earlier (or, without ``train_missing``, leave it out), then
    write the report folder, with the rows of ``earlier_results`` (other sittings' results.csv)."""
    if data.train_path is None and data.test_path is None:
        data = replace(data, train_path=demo_path("train"), test_path=demo_path("test"))
    if not data.train_path or not data.test_path:
        raise UserError("benchmark needs --data.train_path and --data.test_path (or neither: the demo corpus)")
    test = read_records(data.test_path, data.text_column, data.label_column)  # a bad file stops us before training
    earlier = read_earlier(earlier_results)
    names = {run.name for run in runs} | {item.row["name"] for item in earlier}
    if reference is not None and reference not in names:
        raise UserError(f"--reference {reference!r}: no run has that name; the runs: {sorted(names)}")
    folder = Path(output)
    done: dict[str, dict[str, Any]] = {}
    trained_now: set[str] = set()
    for number, run in enumerate(runs, start=1):
        path = folder / "runs" / f"{run.key}.json"
        where = f"[{number}/{len(runs)}] {run.name} · seed {run.seed}"
        if path.is_file():
            record = json.loads(path.read_text(encoding="utf-8"))
            retrained_inputs = sorted(({run.teacher_run, run.plain_run} | set(run.old_runs)) & trained_now)
            if not same_run(record["run"], run) or not same_settings(record.get("settings"), settings(run)):
                print(f"{where}: trained earlier with other settings, training again", flush=True)
            elif retrained_inputs:
                print(f"{where}: {', '.join(retrained_inputs)} trained again since, training again", flush=True)
            elif Path(record["checkpoint"]).is_file():
                done[run.key] = record
                print(f"{where}: finished earlier, skipped", flush=True)
                check_sitting(record, test, earlier)
                continue
        if not train_missing:
            print(f"{where}: not trained, left out of the report", flush=True)
            continue
        print(f"{where}: training …", flush=True)
        done[run.key] = train(run, data, teacher, folder, done)
        trained_now.add(run.key)
        atomic_write_text(path, json.dumps(done[run.key]))
        print(f"{where}: done in {done[run.key]['train_seconds']:.0f} s", flush=True)
        # the teacher differs from an earlier sitting's: say so now, not after the students' hours
        check_sitting(done[run.key], test, earlier)
    finished = [run for run in runs if run.key in done]
    if runs[0] not in finished:
        raise UserError(f"{folder}: the {runs[0].name} run has not finished; there is nothing to report yet")
    write_report(folder, finished, done, test, speed, threads, teacher, earlier, reference)
    return folder
