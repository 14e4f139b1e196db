"""Command line: ``python -m bert2textcnn fit|validate|test|predict --scheme NAME [options]``.

A LightningCLI whose model class is the scheme named by ``--scheme``. Every option can also
come from YAML (``--config configs/joint_isolated.yaml``); ``--print_config`` shows them all.
"""

from __future__ import annotations

import argparse
import logging
import sys
import warnings
from pathlib import Path

import jsonargparse
import torch
import yaml
from jsonargparse import DefaultHelpFormatter
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from bert2textcnn.checkpoint import AtomicCheckpointIO, project_record
from bert2textcnn.commands import COMMANDS
from bert2textcnn.data.datamodule import TextDataModule
from bert2textcnn.distill.schemes import DEFAULT_SCHEME, SCHEMES, describe
from bert2textcnn.errors import UserError
from bert2textcnn.inference.prediction_writer import PredictionWriter
from bert2textcnn.seeding import EpochSeeding

RUNS_DIR = "runs"


def scheme_help() -> str:
    width = max(map(len, SCHEMES))
    rows = "\n".join(f"  {name:<{width}}  {describe(name)}" for name in SCHEMES)
    return (
        "Distil a BERT teacher into a TextCNN student.\n\n"
        f"Schemes (--scheme NAME, default {DEFAULT_SCHEME}):\n{rows}\n\n"
        "With no data paths the bundled demo corpus is used. "
        "`python -m bert2textcnn fit --scheme NAME --help` lists that scheme's options.\n\n"
        "Other commands (each with --help):\n"
        "  export     the student to ONNX for serving, checked against PyTorch\n"
        "  speed      student vs teacher throughput and latency on the same texts\n"
        "  benchmark  every scheme x seed on one data set, into a report folder (resumable)\n"
        "  check-data every data check on your files, without training"
    )


def _option(argv: list[str], name: str) -> list[str]:
    """Every value given for ``name`` as ``name VALUE`` or ``name=VALUE``."""
    values = []
    for i, arg in enumerate(argv):
        if arg == name and i + 1 < len(argv):
            values.append(argv[i + 1])
        elif arg.startswith(name + "="):
            values.append(arg.split("=", 1)[1])
    return values


def resolve_scheme(argv: list[str]) -> str:
    """The scheme picks the model class, so it is needed before LightningCLI parses anything.

    Precedence: ``--scheme``, then the scheme recorded in ``--ckpt_path`` (``last``: the newest
    ``runs/*/version_*/checkpoints/last.ckpt``), then a ``scheme:`` key in a ``--config`` file,
    then the default.
    """
    given = _option(argv, "--scheme")
    scheme = given[-1] if given else None
    for config in _option(argv, "--config") + _option(argv, "-c"):
        if scheme is None and Path(config).is_file():
            scheme = (yaml.safe_load(Path(config).read_text(encoding="utf-8")) or {}).get("scheme")
    for ckpt in _option(argv, "--ckpt_path"):
        ckpt = str(latest_checkpoint(scheme or "*")) if ckpt == "last" else ckpt
        if Path(ckpt).is_file():
            trained = project_record(ckpt)["scheme"]
            if given and trained != scheme:
                raise UserError(f"{ckpt} was trained with --scheme {trained}, not {scheme}")
            scheme = trained
    scheme = scheme or DEFAULT_SCHEME
    if scheme not in SCHEMES:
        raise UserError(f"unknown scheme {scheme!r}; choose one of: {', '.join(SCHEMES)}")
    return scheme


def latest_checkpoint(scheme: str = "*") -> Path:
    """``--ckpt_path last``: the newest ``last.ckpt`` under ``runs/<scheme>/`` (any scheme: ``*``)."""
    pattern = f"{scheme}/version_*/checkpoints/last.ckpt"
    candidates = sorted(Path(RUNS_DIR).glob(pattern), key=lambda path: path.stat().st_mtime)
    if not candidates:
        raise UserError(f"--ckpt_path last: no {RUNS_DIR}/{pattern} to resume from")
    return candidates[-1]


class HelpFormatter(argparse.RawDescriptionHelpFormatter, DefaultHelpFormatter):
    """Keeps the scheme table's line breaks in ``--help``."""


class DistillCLI(LightningCLI):
    def __init__(self, scheme: str, **kwargs) -> None:
        self.scheme = scheme
        model_class = SCHEMES[scheme]
        super().__init__(
            model_class,
            TextDataModule,
            seed_everything_default=42,
            auto_configure_optimizers=False,  # each scheme builds its own optimizers
            load_from_checkpoint_support=False,  # hparams stay plain values; see checkpoint.py
            parser_kwargs={
                "prog": "python -m bert2textcnn",
                "description": scheme_help(),
                "formatter_class": HelpFormatter,
                **{c: {"description": scheme_help(), "formatter_class": HelpFormatter} for c in self.subcommands()},
            },
            trainer_defaults={
                "max_epochs": 5,
                "log_every_n_steps": 10,
                "logger": {
                    "class_path": "lightning.pytorch.loggers.TensorBoardLogger",
                    "init_args": {"save_dir": RUNS_DIR, "name": scheme, "default_hp_metric": False},
                },
                "callbacks": [
                    ModelCheckpoint(
                        monitor=f"val/{model_class.selects_on}_macro_f1",
                        mode="max",
                        filename="best",
                        auto_insert_metric_name=False,
                    ),
                    # Every epoch, whatever the metric: what a resume needs. (`save_last=True` on the
                    # callback above would only refresh last.ckpt when the best one changes.)
                    ModelCheckpoint(filename="last", enable_version_counter=False),
                    LearningRateMonitor(logging_interval="step"),
                    EpochSeeding(),
                ],
                "plugins": [AtomicCheckpointIO()],
            },
            **kwargs,
        )

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_argument(
            "--scheme",
            choices=list(SCHEMES),
            default=self.scheme,
            help="Co-training scheme (see the list above).",
        )
        parser.add_argument(
            "--test_after_fit",
            type=bool,
            default=True,
            help="After fit, test the best checkpoint on --data.test_path (if any) and print the report.",
        )
        scheme = SCHEMES[self.scheme]
        parser.set_defaults({"data.learn_from_unlabeled": scheme.distils})
        parser.set_defaults({f"data.{name}": value for name, value in scheme.data_defaults.items()})
        parser.link_arguments("data.labels", "model.labels", apply_on="instantiate")
        parser.link_arguments("data.vocab", "model.vocab", apply_on="instantiate")
        parser.link_arguments("data.max_length", "model.max_length", apply_on="instantiate")
        parser.add_lightning_class_args(PredictionWriter, "predictions")

    def before_instantiate_classes(self) -> None:
        config = self.config[self.subcommand]
        if config.scheme != self.scheme:
            raise UserError(f"--scheme {config.scheme} conflicts with the scheme {self.scheme} chosen earlier")
        if self.subcommand == "predict":  # predictions go to a CSV: no TensorBoard run, no config.yaml
            config.trainer.logger = False
            self.save_config_callback = None
        if config.trainer.strategy == "ddp" and SCHEMES[self.scheme].separate_optimizers:
            # Each optimizer's loss reaches only its own model's parameters; plain DDP refuses that.
            config.trainer.strategy = "ddp_find_unused_parameters_true"
            logging.getLogger(__name__).info(
                "--trainer.strategy ddp → ddp_find_unused_parameters_true (two optimizers)"
            )
        ckpt_path = config.get("ckpt_path")
        if ckpt_path == "last":
            config.ckpt_path = ckpt_path = str(latest_checkpoint(self.scheme))
        if ckpt_path and Path(ckpt_path).is_file():
            config.data.checkpoint = ckpt_path  # encode text exactly as the checkpoint was trained

    def after_fit(self) -> None:
        best = self.trainer.checkpoint_callback.best_model_path if self.trainer.checkpoint_callback else ""
        if self.config.fit.test_after_fit and best and self.datamodule.paths["test"]:
            self.trainer.test(self.model, datamodule=self.datamodule, ckpt_path=best)
        log_dir = self.trainer.log_dir  # every process must ask: it is a collective call under DDP
        if self.trainer.is_global_zero:
            print(f"\nBest checkpoint: {best or '(none)'}")
            print(f"TensorBoard:     tensorboard --logdir {Path(log_dir).parent if log_dir else RUNS_DIR}")


def main(args: list[str] | None = None) -> None:
    # Encoding raw text in the LightningModule hook is deliberate (each model owns its tokenizer).
    warnings.filterwarnings("ignore", message=".*overridden `on_before_batch_transfer`.*")
    # A frozen teacher stays in eval mode on purpose (no dropout in what it gives), as Lightning warns.
    warnings.filterwarnings("ignore", message=r".*module\(s\) in eval mode at the start of training.*")
    # A joint run's schedules count batches from its first, also those of a model not stepped yet.
    warnings.filterwarnings("ignore", message=r"Detected call of `lr_scheduler.step\(\)` before `optimizer.step\(\)`")
    package_log = logging.getLogger("bert2textcnn")
    if not package_log.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        package_log.addHandler(handler)
        package_log.setLevel(logging.INFO)
    argv = sys.argv[1:] if args is None else args
    try:
        if argv and argv[0] in COMMANDS:
            jsonargparse.CLI(COMMANDS, args=argv, as_positional=False, prog="python -m bert2textcnn")
        else:
            DistillCLI(resolve_scheme(argv), args=args)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    finally:
        # DDP on CPU: gloo's threads must be joined before the interpreter exits, or a process
        # that finished its work can still abort ("terminate called without an active exception").
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
