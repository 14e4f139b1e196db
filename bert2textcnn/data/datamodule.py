"""Lightning data module: validated records in, batches of raw text + label ids out.

Each model encodes the raw text itself (see ``DistillationModule.on_before_batch_transfer``), so
one batch feeds a char-level student, a WordPiece teacher and any other model from the same text.
The label map and the student vocabulary are built here, in ``__init__``, because LightningCLI
links them into the model's constructor right after this object is created.
"""

from __future__ import annotations

import logging
from dataclasses import asdict
from functools import cached_property
from importlib.resources import files
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader

from bert2textcnn.checkpoint import project_record
from bert2textcnn.data.augment import Augmentation, augment
from bert2textcnn.data.length_groups import LengthGroupedShuffle
from bert2textcnn.data.options import DataFiles
from bert2textcnn.data.records import (
    Record,
    check_label_kinds,
    check_labels,
    label_map,
    read_records,
    read_texts,
)
from bert2textcnn.data.survey import survey
from bert2textcnn.data.transfer import MixedBatchOrder, keep_label_fraction
from bert2textcnn.data.vocab import TokenizerKind, Vocab
from bert2textcnn.distill.losses import UNLABELED
from bert2textcnn.errors import UserError
from bert2textcnn.option_groups import Options, takes
from bert2textcnn.seeding import EpochShuffle, epoch_generator

log = logging.getLogger(__name__)


def demo_path(split: str) -> str:
    """The bundled demo corpus: the project's own hand-written posts (see README)."""
    return str(files("bert2textcnn.data.demo") / f"{split}.csv")


@takes(DataFiles)
class TextDataModule(L.LightningDataModule):
    def __init__(
        self,
        label_fraction: float = 1.0,
        augment: Augmentation | None = None,
        unlabeled_share: float | None = None,
        learn_from_unlabeled: bool = True,
        sample_seed: int = 0,
        min_freq: int = 1,
        max_vocab_size: int = 50_000,
        batch_size: int = 32,
        length_grouping: int = 1,
        num_workers: int = 0,
        checkpoint: str | None = None,
        *,
        options: Options,
    ) -> None:
        """Read, check and batch the data.

        Args:
            label_fraction: Keep the labels of this stratified share of the training file and use
                the other rows as unlabelled text, to reproduce a low-label setting.
            augment: Add augmented copies of the labelled texts as unlabelled rows, e.g.
                ``'{copies: 10, mask_rate: 0.1, pos_rate: 0.1, ngram_rate: 0.25, ngram_max: 5}'``.
            unlabeled_share: Share of each training batch taken from the unlabelled rows; the
                shorter stream is recycled. Default: plain shuffling (their share of the rows).
            learn_from_unlabeled: Train on unlabelled rows. Off by default for the schemes that
                learn from labels only (``student``, ``teacher``).
            sample_seed: Seed of the rows ``label_fraction`` keeps and of the augmentation.
            min_freq: Drop student tokens seen fewer times than this in the training file.
            max_vocab_size: Keep at most this many student tokens (the most frequent).
            batch_size: Texts per batch.
            length_grouping: Sort each window of this many shuffled training batches by text
                length, so a batch pads little: about 2× faster BERT steps on short texts. Where
                length predicts the label it costs a TextCNN accuracy (sms_spam_zh, 2 epochs,
                window 4: macro-F1 0.974 against 0.990), so the default, 1, shuffles plainly; use
                it to fine-tune a teacher alone. Not used with ``unlabeled_share``.
            num_workers: DataLoader worker processes.
            checkpoint: Take the label map, vocabulary and max length from this bert2textcnn
                checkpoint instead of the training file. Set automatically from ``--ckpt_path``.
        """
        super().__init__()
        files = options[DataFiles]
        own = {"label_fraction": label_fraction, "unlabeled_share": unlabeled_share, "sample_seed": sample_seed,
               "learn_from_unlabeled": learn_from_unlabeled, "min_freq": min_freq, "max_vocab_size": max_vocab_size,
               "batch_size": batch_size, "length_grouping": length_grouping, "num_workers": num_workers}  # fmt: skip
        # Checkpoints hold plain types only. (Not save_hyperparameters: it reads the constructor's
        # frame, which does not hold the option groups' fields.)
        self.hparams.update({**options.as_dict(), **own, "augment": asdict(augment) if augment else None})
        if files.max_length < 1 or batch_size < 1:
            raise UserError("--data.max_length and --data.batch_size must be positive")
        if length_grouping < 1:
            raise UserError(f"--data.length_grouping must be at least 1 (1: plain shuffling), got {length_grouping}")
        self.paths = {split: path for split, path in files.paths.items() if split != "unlabeled"}
        if not any(self.paths.values()):
            self.paths.update({split: demo_path(split) for split in ("train", "val", "test")})
            log.info("No data paths given: using the bundled demo corpus (%s)", Path(self.paths["train"]).parent)
        self.columns = (files.text_column, files.label_column)
        self.batch_size, self.num_workers = batch_size, num_workers
        self.length_grouping = length_grouping
        self.max_length = files.max_length
        self.tokenization: tuple[TokenizerKind, bool] = (files.tokenizer, files.lowercase)
        self.records: dict[str, list[Record]] = {}
        ignored = [name for name, value in (("unlabeled_path", files.unlabeled_path), ("augment", augment)) if value]
        if ignored and not learn_from_unlabeled:
            log.warning("Ignoring --data.%s: this scheme learns from labels only", " and --data.".join(ignored))
        self.unlabeled_path = files.unlabeled_path if learn_from_unlabeled else None
        self.augmentation = augment if learn_from_unlabeled else None
        self.label_fraction, self.sample_seed = label_fraction, sample_seed
        self.learn_from_unlabeled, self.unlabeled_share = learn_from_unlabeled, unlabeled_share
        self._unlabelled: list[str] | None = None
        # The first epoch that reads the unlabelled rows: a joint run keeps them for its tail, when
        # the teacher is finished (``distill.phases``); the scheme sets it before training.
        self.unlabeled_from_epoch = 0
        if checkpoint:
            record = project_record(checkpoint)
            self.labels: list[str] = list(record["labels"])
            self.vocab = Vocab.from_dict(record["vocab"])
            self.max_length = int(record["max_length"])
            self.tokenization = (self.vocab.kind, self.vocab.lowercase)
            log.info("Label map and %s vocabulary (%d tokens) from %s", self.vocab.kind, len(self.vocab), checkpoint)
        elif self.paths["train"]:
            train = self._read("train")
            self.labels = label_map(train, self.paths["train"])
            # The vocabulary covers every text the student trains on, except augmented copies.
            labelled, dropped = self._label_split
            texts = [r.text for r in labelled]
            if learn_from_unlabeled:
                texts += [r.text for r in dropped] + self._unlabeled_file_texts
            self.vocab = Vocab.build(texts, *self.tokenization, min_freq, max_vocab_size)
            log.info(
                "Built a %s vocabulary of %d tokens on %d training texts", files.tokenizer, len(self.vocab), len(texts)
            )
        else:
            raise UserError("--data.train_path is required unless --ckpt_path names a trained model")

    def _read(self, split: str) -> list[Record]:
        if split not in self.records:
            path = self.paths[split]
            if path is None:
                raise UserError(f"--data.{split}_path is required for this command")
            records = read_records(path, *self.columns, require_label=split != "predict")
            check_label_kinds(records, path)
            if split != "train" and hasattr(self, "labels"):
                check_labels(records, self.labels, path)
            for warning in survey(records, *self.tokenization, self.max_length).warnings(self.max_length):
                log.warning("%s: %s", path, warning)
            self.records[split] = records
        return self.records[split]

    def setup(self, stage: str) -> None:
        # Read every file the stage needs now, so a bad row stops the run before training starts.
        needed = {"fit": ["train", "val"], "validate": ["val"], "test": ["test"], "predict": ["predict"]}
        for split in needed[stage]:
            self._read(split)
        if stage == "fit":
            self.unlabeled_texts()

    @cached_property
    def _unlabeled_file_texts(self) -> list[str]:
        return read_texts(self.unlabeled_path, *self.columns) if self.unlabeled_path else []

    @cached_property
    def _label_split(self) -> tuple[list[Record], list[Record]]:
        """(rows that keep their label, rows whose label ``label_fraction`` drops), computed once."""
        return keep_label_fraction(self._read("train"), self.label_fraction, self.sample_seed)

    def labelled_train_records(self) -> list[Record]:
        return self._label_split[0]

    def unlabeled_texts(self) -> list[str]:
        """Texts the student learns from the teacher alone: dropped labels, the unlabelled file,
        augmented copies of the labelled texts. Built once; empty when not learning from them."""
        if self._unlabelled is None:
            self._unlabelled = []
            if self.learn_from_unlabeled:
                labelled, dropped = self._label_split
                pool = self._unlabeled_file_texts
                copies = (
                    augment([r.text for r in labelled], self.augmentation, self.sample_seed)
                    if self.augmentation
                    else []
                )
                self._unlabelled = [r.text for r in dropped] + pool + copies
                log.info(
                    "Training rows: %d labelled, %d unlabelled (%d dropped labels, %d from %s, %d augmented copies)",
                    len(labelled), len(self._unlabelled), len(dropped), len(pool), self.unlabeled_path, len(copies),
                )  # fmt: skip
        return self._unlabelled

    def train_texts(self) -> list[str]:
        """Every training text in row-index order: labelled rows first, then unlabelled ones."""
        return [r.text for r in self.labelled_train_records()] + self.unlabeled_texts()

    def texts_and_labels(self, split: str) -> tuple[list[str], torch.Tensor]:
        """A labelled split's texts and label ids, in file order (to score a model on it whole)."""
        rows = self._rows(self._read(split))
        return [row["text"] for row in rows], torch.tensor([row["label"] for row in rows], dtype=torch.long)

    def _rows(self, records: list[Record]) -> list[dict[str, Any]]:
        label_ids = {label: i for i, label in enumerate(self.labels)}
        return [{"text": r.text, "label": label_ids.get(r.label, UNLABELED), "index": i} for i, r in enumerate(records)]

    def _loader(self, rows: list[dict[str, Any]], **kwargs: Any) -> DataLoader:
        return DataLoader(
            rows,  # type: ignore[arg-type]  # a list is a valid map-style dataset
            batch_size=self.batch_size,
            num_workers=self.num_workers,
            collate_fn=collate,
            **kwargs,
        )

    def train_dataloader(self) -> DataLoader:
        epoch = self.trainer.current_epoch if self.trainer is not None else 0  # a resumed run starts mid-way
        return self.train_loader(epoch)

    def train_loader(self, epoch: int) -> DataLoader:
        """The training batches of ``epoch``; its rows are the same whatever reads them."""
        labelled = self._rows(self.labelled_train_records())
        unlabelled = [
            {"text": text, "label": UNLABELED, "index": len(labelled) + i}
            for i, text in enumerate(self.unlabeled_texts() if epoch >= self.unlabeled_from_epoch else [])
        ]
        rows = labelled + unlabelled
        if self.unlabeled_share is None or not unlabelled:
            lengths = [len(row["text"]) for row in rows]
            order: EpochShuffle = LengthGroupedShuffle(lengths, self.batch_size, self.length_grouping, epoch)
        else:
            first_unlabelled = range(len(labelled), len(rows))
            order = MixedBatchOrder(
                range(len(labelled)), first_unlabelled, self.batch_size, self.unlabeled_share, epoch
            )
        # A DataLoader iterator draws its worker seed from the generator it is given, else from the
        # global one — which would shift every dropout mask after it (see seeding.py).
        return self._loader(rows, sampler=order, generator=epoch_generator(epoch))

    def val_dataloader(self) -> DataLoader:
        return self._loader(self._rows(self._read("val")))

    def test_dataloader(self) -> DataLoader:
        return self._loader(self._rows(self._read("test")))

    def predict_dataloader(self) -> DataLoader:
        return self._loader(self._rows(self._read("predict")))


def collate(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Raw texts stay strings; every model turns them into its own ids on the way to the device.

    ``index`` is the row's position among the split's rows, to trace a row back to its file.
    """
    return {
        "text": [row["text"] for row in rows],
        "label": torch.tensor([row["label"] for row in rows], dtype=torch.long),
        "index": torch.tensor([row["index"] for row in rows], dtype=torch.long),
    }
