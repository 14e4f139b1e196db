"""Commands beside LightningCLI's fit / validate / test / predict; each works on a checkpoint.

python -m bert2textcnn export --ckpt_path runs/…/best.ckpt --output exports/student
python -m bert2textcnn speed --ckpt_path runs/…/best.ckpt --output speed.json
"""

from __future__ import annotations

from typing import Any, Literal

from bert2textcnn.bench.benchmark import run_all
from bert2textcnn.bench.plan import DISTILLED, BenchmarkData, plan
from bert2textcnn.checkpoint import read_checkpoint, student_description
from bert2textcnn.data.datamodule import demo_path
from bert2textcnn.data.options import DataFiles
from bert2textcnn.data.records import (
    Record,
    check_label_kinds,
    check_labels,
    label_map,
    read_records,
)
from bert2textcnn.data.survey import survey
from bert2textcnn.errors import DataError, UserError
from bert2textcnn.models.fastbert import FastBert


def _records(path: str | None, text_column: str, label_column: str) -> list[Record]:
    """The file's texts, with their labels where it has them; default: the demo corpus (labelled)."""
    if path:
        return read_records(path, text_column, label_column, require_label=False)
    return [record for split in ("test", "val", "train") for record in read_records(demo_path(split))]


def export(
    ckpt_path: str,
    output: str = "exports/student",
    texts: str | None = None,
    text_column: str = "text",
    label_column: str = "label",
    precision: Literal["fp32", "bf16", "int8"] = "fp32",
) -> None:
    """Export a trained student to ONNX for serving (student.onnx + student.json), checked against PyTorch.

    Args:
        ckpt_path: A bert2textcnn checkpoint with a student (any scheme but ``teacher``).
        output: Folder to write student.onnx and student.json into.
        texts: Texts for the parity check (CSV/TSV/JSONL/.txt); default: the bundled demo corpus.
        text_column: Text column of that file.
        label_column: Its label column: where every text has a label, a lower precision must also
            keep macro-F1 within 0.002 of fp32's.
        precision: ``fp32`` (probabilities within 1e-5 of PyTorch); ``int8``: ONNX Runtime's
            static quantisation calibrated on the texts, written only if it gives fp32's label on
            at least 99.5 % of them (and keeps macro-F1, above). ``bf16`` is refused with the
            reason: ONNX Runtime's CPU provider has no bf16 convolutions (``speed`` times bf16).
    """
    from bert2textcnn.inference.export import export_student  # needs the `export` extra (onnx, onnxruntime)

    records = _records(texts, text_column, label_column)
    labels = [r.label for r in records] if all(r.label is not None for r in records) else None
    figures = export_student(ckpt_path, output, [r.text for r in records], precision, labels)
    print(f"Exported to {output}/ (student.onnx, student.json), {precision}")
    print(f"Parity with PyTorch on {figures['texts']} texts: max |Δ probability| = {figures['max_abs_diff']:.1e}")
    if "label_agreement" in figures:
        gate = f"{precision}: the fp32 export's label on {figures['label_agreement']:.2%} of them"
        if "macro_f1" in figures:
            gate += f", macro-F1 {figures['macro_f1']:.4f} (fp32 {figures['macro_f1_fp32']:.4f})"
        print(gate)
    print(f"Serve it with: OnnxClassifier({output!r}).predict([...])  (needs onnxruntime, numpy, jieba only)")


def speed(
    ckpt_path: str,
    texts: str | None = None,
    text_column: str = "text",
    label_column: str = "label",
    threads: int = 2,
    batch_size: int = 64,
    latency_texts: int = 200,
    min_seconds: float = 2.0,
    teacher: str | None = None,
    speeds: list[float] | None = None,
    output: str | None = None,
) -> None:
    """Student vs teacher speed on the same texts: throughput and batch-1 latency, end to end.
    A FastBERT checkpoint (``--scheme fastbert``) gets its speed/quality curve instead: macro-F1
    (when the texts are labelled), layers run and texts/s at each early-exit speed.

    Args:
        ckpt_path: A bert2textcnn checkpoint with a student; its teacher is used when it holds one.
        texts: Texts to time (CSV/TSV/JSONL/.txt); default: the bundled demo corpus.
        text_column: Text column of that file.
        label_column: Its label column (a FastBERT curve scores macro-F1 where every text has one).
        threads: torch.set_num_threads and ONNX Runtime intra-op threads.
        batch_size: Texts per batch for throughput (a FastBERT curve: 64).
        latency_texts: How many texts are timed one by one.
        min_seconds: Repeat each throughput pass for at least this long.
        teacher: Teacher directory when the checkpoint holds none (default: m3e-small).
        speeds: A FastBERT's early-exit speeds to measure (default: 0, 0.1, 0.2, 0.3, 0.5, 0.8).
        output: Also write the figures as JSON to this file.
    """
    from bert2textcnn.bench.speed import measure, report, write_json  # needs the `export` extra

    records = _records(texts, text_column, label_column)
    if student_description(read_checkpoint(ckpt_path))["kind"] == FastBert.kind:
        from bert2textcnn.bench.exit_curve import EXIT_SPEEDS, curve_table, measure_curve

        results = measure_curve(ckpt_path, records, threads, speeds or EXIT_SPEEDS, latency_texts, min_seconds)
        setup = results["setup"]
        print(f"{setup['texts']} texts, torch.set_num_threads({threads}); macro-F1 needs every text labelled\n")
        print("\n".join(curve_table(results["exit_curve"])))
    else:
        results = measure(
            ckpt_path, [r.text for r in records], threads, batch_size, latency_texts, min_seconds, teacher
        )
        print(report(results))
    if output:
        write_json(results, output)
        print(f"Figures written to {output}")


def benchmark(
    data: BenchmarkData | None = None,
    output: str = "reports/benchmark",
    schemes: list[str] | Literal["all"] = "all",
    seeds: int | list[int] = 3,
    epochs: int = 2,
    label_fraction: float | None = None,
    low_label_epochs: int = 10,
    low_label_teacher_lr: float = 1e-4,
    historical_weight: float = 0.3,
    model: dict[str, Any] | list[dict[str, Any]] | None = None,
    teacher: str | None = None,
    speed: bool = True,
    threads: int = 2,
    train: bool = True,
    teacher_length_grouping: int = 4,
    distilled_data: dict[str, Any] | None = None,
    teacher_epochs: int | None = None,
    teacher_model: dict[str, Any] | None = None,
    rco_anchors: int = 3,
    old_models: list[dict[str, Any]] | None = None,
    earlier_results: list[str] | None = None,
    reference: str | None = None,
) -> None:
    """Train the teacher, the plain student and every scheme for each seed; write a report folder.

    Resumable: finished runs are kept under OUTPUT/runs/ and skipped when the command runs again.

    Args:
        data: Training and test files and the options every run shares (``--data.train_path`` …);
            with no paths, the bundled demo corpus.
        output: Report folder: results.csv, report.md, figures, runs/.
        schemes: Distillation schemes to train besides the teacher and the plain student, or all.
        seeds: Seeds per scheme: a count (3: seeds 0, 1, 2), or a list of seeds to train alone,
            e.g. ``'[3, 4]'`` in a sitting that adds to an earlier one's (``earlier_results``).
        epochs: Epochs of every full-label run.
        label_fraction: Also run the low-label scenario with this stratified share of the labels
            (teacher, plain student, offline students over the unlabelled rest).
        low_label_epochs: Epochs of every low-label run (their labelled set is small).
        low_label_teacher_lr: Teacher learning rate with few labels (2e-5 under-trains there).
        historical_weight: Weight of the plain student as ``multi_teacher``'s historical teacher.
        model: Hyper-parameters (``--model.*`` of ``fit``) for every distilled run, e.g.
            ``'{temperature: 2.0, trust_labels: false}'``, or a list of such sets, each trained
            as its own variant: ``'[{}, {alpha: 1.0, temperature: 2.0}]'`` (``{}``: the
            defaults). Their names show them, so variants in one folder share its teacher, its
            plain students and its report. A variant runs for the schemes that take all its
            options (hints: not for ``rco``).
        teacher: Local Hugging Face BERT directory (default: m3e-small).
        speed: Also time the best student against the teacher (``speed``) and draw speed.png.
        threads: Threads for the speed measurement.
        train: Train the runs not finished yet. ``false`` writes the report from the finished
            runs alone (the teacher's must be one), e.g. while another call is still training.
        teacher_length_grouping: ``--data.length_grouping`` of the runs that fine-tune BERT
            alone; the other runs shuffle plainly (grouping costs a TextCNN accuracy).
        distilled_data: Data options (``--data.*`` of ``fit``) for every distilled run, e.g. a
            transfer set at full labels: ``'{augment: {copies: 10}}'``. Shown in their names.
        teacher_epochs: Epochs of the full-label teacher that ``offline`` and ``multi_teacher``
            distil (default: ``epochs``); the joint schemes train theirs for ``epochs``.
        teacher_model: Hyper-parameters of that teacher (``--model.*`` of ``fit --scheme
            teacher``), e.g. ``'{teacher_lr: 1e-4}'``.
        rco_anchors: Checkpoints that teacher keeps along its run (``--model.save_anchors``)
            when ``rco`` is benchmarked: the route it follows.
        old_models: The production models each seed's students replace, trained per seed, that
            coverage and flip rates are measured against and ``multi_teacher`` learns from (sharing
            ``historical_weight``). Each is a plain student's ``data`` and ``model`` options:
            ``'[{data: {tokenizer: jieba}}]'``, ``'[{}, {model: {student: bert, student_layers: 1}}]'``
            (``{}``: the plain student itself, the default). Several: compared with their averaged
            probabilities and with each (the report's Old models table).
        earlier_results: results.csv files of earlier sittings (kept from folders of other
            machines or calls), whose rows join this folder's tables and results.csv: seeds
            trained in several sittings report as one. A run both trained (the teacher, which
            each sitting fine-tunes again) must have come out the same (the same test
            probabilities, or the same scores where only rounding differs), or the call stops.
        reference: A run name, e.g. ``'theseus (student_layers=2, replace_epochs=0)'``: the
            report's Spread table adds each run's macro-F1 minus that run's of the same seed.
    """
    chosen = DISTILLED if schemes == "all" else list(schemes)
    runs = plan(
        chosen, seeds, epochs, label_fraction, low_label_epochs, low_label_teacher_lr, historical_weight, model,
        teacher_length_grouping, distilled_data, teacher_epochs, teacher_model, rco_anchors, old_models,
    )  # fmt: skip
    run_all(data or BenchmarkData(), output, runs, teacher, speed, threads, train, earlier_results or [], reference)


def check_data(data: DataFiles) -> None:
    """Run every data check on the files, without training, and summarise what they hold.

    Each problem that would stop ``fit`` is printed as ``file:line: problem``; warnings (texts that
    will be cut, texts with conflicting labels) follow each file's summary. Exits 2 on a problem.

    Args:
        data: The files to check, as ``--data.train_path`` … in ``fit``.
    """
    paths = data.paths
    if not any(paths.values()):
        raise UserError("give at least one file: --data.train_path, --data.val_path, …")
    labels, problems, warnings = None, 0, 0
    for split, path in paths.items():
        if not path:
            continue
        try:
            records = read_records(
                path, data.text_column, data.label_column, require_label=split in ("train", "val", "test")
            )
            if split != "unlabeled":
                check_label_kinds(records, path)
            if split == "train":
                labels = label_map(records, path)
            elif labels and split != "unlabeled":
                check_labels(records, labels, path)
        except DataError as err:
            print(f"{err}")
            problems += 1
            continue
        found = survey(records, data.tokenizer, data.lowercase, data.max_length)
        print(f"{path}: {found.summary()}")
        for warning in found.warnings(data.max_length):
            print(f"  warning: {warning}")
            warnings += 1
    print(f"\n{problems} problem(s) that stop training, {warnings} warning(s)")
    if problems:
        raise SystemExit(2)


COMMANDS = {"export": export, "speed": speed, "benchmark": benchmark, "check-data": check_data}
