"""Where a scheme's teacher logits come from: a part the scheme picks, not a class it inherits.

- ``JointTeacher``: a pre-trained BERT fine-tuned in this run, beside the student or alone.
- ``FrozenTeacher``: a teacher fine-tuned earlier, loaded from its checkpoint, never updated.
- ``CachedTeacher``: a frozen teacher's logits on the training texts, computed once and cached on
  disk (``logits_cache``), so training never runs the teacher.

The scheme keeps the BERT it holds as ``module.teacher`` (its weights are then checkpointed under
``teacher.`` and move with the module's device); a source says how it is built, checked before
training, and read for a batch.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import lightning as L
import torch

from bert2textcnn.checkpoint import load_trained_teacher
from bert2textcnn.distill.logits_cache import teacher_hints_cache, teacher_logits_cache
from bert2textcnn.distill.metrics import ClassificationMetrics
from bert2textcnn.distill.options import DistillOptions, PretrainedOptions
from bert2textcnn.distill.teacher_gate import check_teacher
from bert2textcnn.errors import UserError
from bert2textcnn.models.bert import BertClassifier, masked_mean
from bert2textcnn.models.protocol import ModelOutput, logits_in_order

if TYPE_CHECKING:
    from bert2textcnn.distill.schemes.base import DistillationModule

log = logging.getLogger(__name__)
T = TypeVar("T")


class TeacherSource:
    """The interface; a scheme with no teacher (``student``) has none."""

    trains: ClassVar[bool] = False  # fine-tuned in this run: it gets an optimizer, and the gate watches it
    holds_model: ClassVar[bool] = True  # a BERT in ``module.teacher``, evaluated on val and test

    def build(self, module: DistillationModule) -> BertClassifier | None:
        """The teacher model the scheme holds, built once per process (``configure_model``)."""
        return None

    def prepare(self, module: DistillationModule) -> None:
        """Before training: checks and caches. A source holding a BERT logs its tokenizer's fit."""
        if self.holds_model:
            log_tokenizer_fit(module, module.trainer.datamodule.train_texts())

    def output(self, module: DistillationModule, batch: dict[str, Any]) -> ModelOutput:
        return module.teacher_output(batch)

    def logits(self, module: DistillationModule, batch: dict[str, Any]) -> torch.Tensor:
        return self.output(module, batch).logits

    def hint_target(self, module: DistillationModule, batch: dict[str, Any], layer: int) -> torch.Tensor:
        """The sentence-level hint: the mask-aware mean of teacher layer ``layer``'s hidden states."""
        hidden = self.output(module, batch).hidden_states[layer]
        return masked_mean(hidden, batch["teacher_inputs"]["attention_mask"])


class JointTeacher(TeacherSource):
    trains = True

    def build(self, module: DistillationModule) -> BertClassifier:
        pretrained = module.options[PretrainedOptions]
        return BertClassifier.from_directory(
            pretrained.teacher, len(module.labels), module.max_length, pretrained.teacher_lowercase
        )


class FrozenTeacher(TeacherSource):
    def __init__(self, checkpoint: str | None) -> None:
        self.checkpoint = checkpoint

    def build(self, module: DistillationModule) -> BertClassifier:
        checkpoint = required(self.checkpoint)
        return load_trained_teacher(checkpoint, module.labels, module.max_length).requires_grad_(False)

    def prepare(self, module: DistillationModule) -> None:
        super().prepare(module)
        data = module.trainer.datamodule
        texts, labels = data.texts_and_labels("val")
        with torch.no_grad():
            logits = logits_in_order(module.teacher.eval(), texts, len(module.labels), data.batch_size)
        check_before_training(module, logits, labels, required(self.checkpoint))

    def output(self, module: DistillationModule, batch: dict[str, Any]) -> ModelOutput:
        module.teacher.eval()  # Lightning puts the whole module in train mode; a frozen teacher has no dropout
        with torch.no_grad():
            return super().output(module, batch)


class CachedTeacher(TeacherSource):
    holds_model = False

    def __init__(self, checkpoint: str | None, cache_dir: str) -> None:
        self.checkpoint, self.cache_dir = checkpoint, Path(cache_dir)
        # Plain tensors on the CPU, not buffers: DDP would broadcast a buffer at every step.
        self.cached_logits = torch.empty(0)
        self.cached_hints = torch.empty(0)  # with hints on: the teacher's hint vectors, same rows
        self.cached_rows: dict[str, int] = {}  # text → its row in cached_logits

    def prepare(self, module: DistillationModule) -> None:
        data, trainer = module.trainer.datamodule, module.trainer
        val_texts, val_labels = data.texts_and_labels("val")
        texts = data.train_texts()
        checkpoint = required(self.checkpoint)
        where = (checkpoint, module.labels, module.max_length, self.cache_dir)
        if trainer.is_global_zero:  # the gate, before the long pass over the training texts
            val_logits = teacher_logits_cache(val_texts, *where)
            check_before_training(module, val_logits, val_labels, checkpoint)
            log_teacher_on_val(module, val_logits, val_labels)
        self.cached_logits = first_builds(trainer, lambda: teacher_logits_cache(texts, *where), "teacher logits")
        if module.hints is not None:
            self.cached_hints = self.hints_cache(module, texts, where)
        self.cached_rows = {text: row for row, text in enumerate(texts)}

    @staticmethod
    def hints_cache(module: DistillationModule, texts: list[str], where: tuple) -> torch.Tensor:
        """The hint vectors of the training texts, cached beside the logits."""
        layer = module.hints.layer
        hints = first_builds(module.trainer, lambda: teacher_hints_cache(texts, *where, layer), "teacher hints")
        if hints.shape[1] != module.hints.regressor.out_features:
            raise UserError(
                f"the teacher checkpoint's hidden size is {hints.shape[1]}, the --model.teacher folder's "
                f"{module.hints.regressor.out_features}: give --model.teacher the folder it was fine-tuned from"
            )
        return hints

    def logits(self, module: DistillationModule, batch: dict[str, Any]) -> torch.Tensor:
        return self.cached_logits[self.rows(batch)].to(batch["label"].device)

    def hint_target(self, module: DistillationModule, batch: dict[str, Any], layer: int) -> torch.Tensor:
        return self.cached_hints[self.rows(batch)].to(batch["label"].device)

    def rows(self, batch: dict[str, Any]) -> torch.Tensor:
        """The batch's rows in the cache, looked up by text: whatever order the data module gives
        its rows in, a row gets its own text's values (a text the cache lacks is an error, never
        another row's values)."""
        missing = [text for text in batch["text"] if text not in self.cached_rows]
        if missing:
            raise UserError(f"{len(missing)} training texts have no cached teacher logits, e.g. {missing[0][:40]!r}")
        return torch.tensor([self.cached_rows[text] for text in batch["text"]])


def first_builds(trainer: L.Trainer, build: Callable[[], T], what: str) -> T:
    """``build()`` on the first process; the others (DDP) wait for it, then run ``build()`` too,
    which reads what the first one cached instead of computing it again."""
    built = build() if trainer.is_global_zero else None
    trainer.strategy.barrier(what)
    return built if trainer.is_global_zero else build()


def required(checkpoint: str | None) -> str:
    """The teacher checkpoint, needed from the moment the teacher is read (predicting with the
    student alone does without it)."""
    if not checkpoint:
        raise UserError("this scheme distils a fine-tuned teacher: give --model.teacher_checkpoint")
    return checkpoint


def check_before_training(module: DistillationModule, logits: torch.Tensor, labels: torch.Tensor, source: str) -> None:
    """Stop before training when a frozen teacher is no better than a constant guess on validation."""
    options = module.options  # a scheme that does not distil (theseus) checks at the default margin
    margin = options[DistillOptions].teacher_gate if DistillOptions in options else DistillOptions.teacher_gate
    if margin is None:
        log.info("Teacher gate off: %s is distilled unchecked", source)
        return
    score = check_teacher(logits, labels, len(module.labels), margin, source)
    log.info("Teacher %s: balanced accuracy %.3f on validation (a constant guess: %.3f)",
             source, score, 1 / len(module.labels))  # fmt: skip


def log_teacher_on_val(module: DistillationModule, logits: torch.Tensor, labels: torch.Tensor) -> None:
    """A teacher read from a cache is not evaluated beside the student each epoch, so its
    validation metrics (fixed: it never trains) go to the logger once, at step 0, under the names a
    held teacher's take (``val/teacher_macro_f1`` …): TensorBoard shows what the student learns from."""
    if module.logger is None:
        return
    metrics = ClassificationMetrics(module.labels, synchronised=False)  # the first process's figures alone
    metrics.update(logits, labels)
    module.logger.log_metrics(metrics.scalars(metrics.compute(), "val/teacher_"), step=0)


def log_tokenizer_fit(module: DistillationModule, texts: list[str]) -> None:
    """How much of the training text the teacher cannot see: [UNK] rates as cased and lowercased."""
    rates = {}
    for lowercase in (False, True):
        texts_rate, tokens_rate = module.teacher.unknown_rates(texts, lowercase)
        case = "lowercased" if lowercase else "as_is"
        rates[f"data/teacher_unk_texts_{case}"] = texts_rate
        rates[f"data/teacher_unk_tokens_{case}"] = tokens_rate
    log.info(
        "Teacher tokenizer [UNK] on training texts: %.1f%% of texts / %.2f%% of tokens as written, "
        "%.1f%% / %.2f%% lowercased (lowercasing is %s)",
        100 * rates["data/teacher_unk_texts_as_is"],
        100 * rates["data/teacher_unk_tokens_as_is"],
        100 * rates["data/teacher_unk_texts_lowercased"],
        100 * rates["data/teacher_unk_tokens_lowercased"],
        "on" if module.teacher.lowercase else "off",
    )
    if module.logger is not None:
        module.logger.log_metrics(rates, step=0)
