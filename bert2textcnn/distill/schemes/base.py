"""What every scheme shares: the student, the teacher it holds, text encoding, logging, checkpoint
contents and prediction. Where the teacher's logits come from (``teachers``), evaluation
(``Evaluation``) and optimizers (``optimization``) are collaborators, and options come in groups
(``distill.options``). A scheme subclass states only what differs: its option groups, its teacher
source, its loss terms, what is detached, and how many optimizers step per batch.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, ClassVar, Literal

import lightning as L
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from torch import nn

from bert2textcnn.checkpoint import drop_weights, write_record
from bert2textcnn.compat.historical import Reference, load_reference
from bert2textcnn.distill.evaluation import Evaluation, positive_index
from bert2textcnn.distill.finite import finite_or_stop
from bert2textcnn.distill.hints import REGRESSOR, Hints
from bert2textcnn.distill.losses import StudentTargets
from bert2textcnn.distill.optimization import adamw_with_schedule, training_batches
from bert2textcnn.distill.options import (
    CompareOptions,
    DistillOptions,
    EvaluationOptions,
    OptimizationOptions,
    StudentOptions,
    TeacherTrainingOptions,
)
from bert2textcnn.distill.teacher_gate import KDSchedule
from bert2textcnn.distill.teachers import TeacherSource
from bert2textcnn.errors import UserError
from bert2textcnn.models import build_student
from bert2textcnn.models.bert import BertClassifier
from bert2textcnn.models.protocol import ModelOutput
from bert2textcnn.option_groups import Options

log = logging.getLogger(__name__)

Role = Literal["student", "teacher"]


class DistillationModule(L.LightningModule):
    """Base class; pick a scheme with ``--scheme`` (see ``bert2textcnn.distill.schemes.SCHEMES``)."""

    name: ClassVar[str]
    option_groups: ClassVar[tuple[type, ...]] = ()  # set by ``@takes(...)`` on each scheme
    selects_on: ClassVar[Role] = "student"  # whose val macro-F1 picks the best checkpoint
    separate_optimizers: ClassVar[bool] = False  # one optimizer per trained model, stepped in turn
    distils: ClassVar[bool] = True  # the student learns from a teacher, so unlabelled rows are useful
    exits_early: ClassVar[bool] = False  # its model leaves early on easy texts: timed along its speeds, not exported
    data_defaults: ClassVar[dict[str, Any]] = {}  # ``--data.*`` defaults of its own, e.g. a transfer set

    def __init__(self, labels: list[str] | None = None, vocab: Any = None, max_length: int = 128, *,
                 options: Options) -> None:  # fmt: skip
        """Train a student, a teacher or both.

        Args:
            labels: Class names in id order (linked from the data; not set by hand).
            vocab: The student's vocabulary (linked from the data; not set by hand).
            max_length: Longest input in tokens (linked from ``--data.max_length``).
        """
        super().__init__()
        if labels is None or vocab is None:
            raise UserError("a scheme needs labels and a vocabulary from the data module")
        self.options = options
        self.save_hyperparameters(options.as_dict(saved_only=True))
        self.labels, self.vocab, self.max_length = list(labels), vocab, max_length
        self.student = None
        if StudentOptions in options:
            self.hparams.kernel_sizes = list(self.hparams.kernel_sizes)  # a plain list reads back from YAML anywhere
            student = options[StudentOptions]
            self.student = build_student(student.student, vocab, len(labels), max_length, self.hparams)
        self.teacher_source = self.pick_teacher_source()
        self.teacher: BertClassifier | None = None  # built in configure_model, and only when used
        # Parameters a method trains beside the student (a hint regressor, branch classifiers): a
        # scheme adds them here; they are checkpointed, and export and predict leave them out.
        self.student_extras = nn.ModuleDict()
        self.positive_index = positive_index(self.labels, options[EvaluationOptions].positive_label)
        self.evaluation = Evaluation(self.labels, self.roles, self.positive_index)
        self.reference: Reference | None = None  # loaded in setup, when there is one
        self.automatic_optimization = not self.separate_optimizers  # several: stepped in training_step
        distill = options[DistillOptions] if DistillOptions in options else DistillOptions()
        gate = distill.teacher_gate if self.teacher_learns_jointly else None  # a frozen teacher is checked once
        self.kd_schedule = KDSchedule(len(self.labels), distill.kd_warmup, gate)
        self.hints = Hints.of(options, self.student)  # FitNets hints, their regressor beside the student
        if self.hints is not None:
            self.student_extras[REGRESSOR] = self.hints.regressor
        self.run_batches: int | None = None  # set with the optimizers, for the KD ramp

    def pick_teacher_source(self) -> TeacherSource | None:
        """Where this scheme's teacher logits come from (``distill.teachers``); none by default."""
        return None

    @property
    def roles(self) -> list[Role]:
        """The models this scheme evaluates."""
        holds_teacher = self.teacher_source is not None and self.teacher_source.holds_model
        return [role for role, present in (("student", self.student), ("teacher", holds_teacher)) if present]

    @property
    def teacher_trains(self) -> bool:
        return self.teacher_source is not None and self.teacher_source.trains

    @property
    def teacher_learns_jointly(self) -> bool:
        """Whether a BERT teacher trains beside the student (its KD then waits for the gate)."""
        return self.teacher_trains and self.student is not None

    @property
    def batches_done(self) -> int:
        """Training batches finished so far (``global_step`` counts optimizer steps)."""
        return self.global_step // self.optimizer_steps_per_batch

    @property
    def kd_factor(self) -> float:
        """The KD schedule's factor at this batch (``--model.kd_warmup``, ``--model.teacher_gate``)."""
        return self.kd_schedule.factor(self.batches_done, self.run_batches)

    @property
    def student_targets(self) -> StudentTargets:
        distill = self.options[DistillOptions]
        threshold = distill.pseudo_label_threshold if distill.unlabeled_target == "hard" else None
        return StudentTargets(distill.alpha, distill.temperature, threshold, distill.trust_labels, self.kd_factor)

    def watch_teacher(self, teacher_logits: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        """Let the gate see the jointly trained teacher's logits before its update; terms for the logs."""
        self.kd_schedule.observe(teacher_logits, labels, self.batches_done)
        device = teacher_logits.device  # checked() stacks every term: they must share a device
        return {
            "kd_weight": torch.tensor(self.kd_factor, device=device),
            "teacher_balanced_accuracy": torch.tensor(self.kd_schedule.teacher_score, device=device),
        }

    def reference_source(self) -> str | list[str] | None:
        """The old model the student is compared with (``--model.compare_to``)."""
        return self.options[CompareOptions].compare_to if CompareOptions in self.options else None

    def setup(self, stage: str) -> None:
        source = self.reference_source()
        if source and stage != "predict" and self.student is not None and self.reference is None:
            self.reference = load_reference(source, self.labels, self.trainer.datamodule.columns[0])
            self.evaluation.compare_with_each(len(self.reference.part_sources))
            log.info(
                "Comparing the student with %s (coverage of its %r hits, flip rates)",
                self.reference.source,
                self.labels[self.positive_index],
            )

    # ---- models and inputs -------------------------------------------------------------
    def configure_model(self) -> None:
        """Load the teacher once per process, unless this run only predicts with the student."""
        predicting = self._trainer is not None and self.trainer.predicting and self.student is not None
        if self.teacher_source is not None and self.teacher is None and not predicting:
            self.teacher = self.teacher_source.build(self)

    def on_fit_start(self) -> None:
        if self.teacher_source is not None:
            self.teacher_source.prepare(self)

    def on_train_start(self) -> None:
        """Hyper-parameters of model and data, with the final metrics as HParams-tab columns."""
        if isinstance(self.logger, TensorBoardLogger):
            params = {"scheme": self.name, **self.trainer.datamodule.hparams, **self.hparams}
            columns = {f"hp/{role}_{name}": float("nan") for role in self.roles for name in ("macro_f1", "recall")}
            self.logger.log_hyperparams(params, columns)

    def on_before_batch_transfer(self, batch: dict[str, Any], dataloader_idx: int) -> dict[str, Any]:
        """Encode the batch's raw texts for each model present, each with its own tokenizer."""
        texts = batch["text"]
        if self.student is not None:
            batch["student_inputs"] = self.student.encode(texts)
        if self.teacher is not None:
            batch["teacher_inputs"] = self.teacher.encode(texts)
        if self.reference is not None and not self.trainer.training:
            batch["reference_logits"], batch["reference_mask"], batch["reference_parts"] = self.reference.scores(texts)
        return batch

    def student_output(self, batch: dict[str, Any]) -> ModelOutput:
        return run_once(batch, "student", lambda: self.student(**batch["student_inputs"]))

    def teacher_output(self, batch: dict[str, Any]) -> ModelOutput:
        return run_once(batch, "teacher", lambda: self.teacher(**batch["teacher_inputs"]))

    def student_logits(self, batch: dict[str, Any]) -> torch.Tensor:
        return self.student_output(batch).logits

    def teacher_logits(self, batch: dict[str, Any]) -> torch.Tensor:
        return self.teacher_source.logits(self, batch)

    # ---- training ---------------------------------------------------------------------
    def loss_terms(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """Named loss terms of one batch; ``loss`` is the one back-propagated (automatic schemes)."""
        raise NotImplementedError

    def training_terms(self, batch: dict[str, Any], batch_idx: int) -> dict[str, torch.Tensor]:
        """The scheme's loss terms, with the hint when it is on, checked. Each model runs once per
        batch: the hint reuses the forward passes the scheme's losses made."""
        batch["outputs"] = {}
        terms = self.loss_terms(batch)
        if self.hints is not None:
            terms = self.hints.add_to(terms, self, batch)
        return finite_or_stop(terms, self, batch_idx)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        terms = self.training_terms(batch, batch_idx)
        self.log_terms(terms, batch_size=len(batch["text"]))
        return terms["loss"]

    def log_terms(self, terms: dict[str, torch.Tensor], batch_size: int) -> None:
        self.log_dict(
            {f"train/{name}": value.detach() for name, value in terms.items()},
            on_step=True,
            on_epoch=True,
            batch_size=batch_size,
            sync_dist=True,
        )

    def trained_modules(self) -> dict[Role, nn.Module]:
        """The models this scheme updates. Their order is the optimizers' (and param groups') order,
        which a resumed checkpoint's optimizer state relies on: with separate optimizers the
        teacher steps first."""
        modules: dict[Role, nn.Module] = {}
        if self.student is not None:
            modules["student"] = self.student_side
        if self.teacher_trains:
            modules["teacher"] = self.teacher
        return dict(reversed(modules.items())) if self.separate_optimizers else modules

    @property
    def student_side(self) -> nn.Module:
        """The student with the parameters a method adds beside it (``student_extras``): they share
        its optimizer, learning rate and clipping."""
        return nn.ModuleList([self.student, self.student_extras]) if len(self.student_extras) else self.student

    @property
    def optimizer_steps_per_batch(self) -> int:
        return len(self.trained_modules()) if self.separate_optimizers else 1

    def configure_optimizers(self) -> Any:
        lrs = {}
        if self.teacher_trains:
            lrs["teacher"] = self.options[TeacherTrainingOptions].teacher_lr
        if self.student is not None:
            lrs["student"] = self.options[StudentOptions].student_lr or self.student.default_lr
        self.run_batches = training_batches(self.trainer, self.optimizer_steps_per_batch)
        modules = self.trained_modules()
        per_optimizer = [[role] for role in modules] if self.separate_optimizers else [list(modules)]
        optim = self.options[OptimizationOptions]
        return adamw_with_schedule(
            modules, lrs, per_optimizer, self.run_batches, optim.warmup_ratio, optim.weight_decay
        )

    def configure_gradient_clipping(
        self, optimizer: Any, gradient_clip_val: Any = None, gradient_clip_algorithm: Any = None
    ) -> None:
        if max_norm := self.options[OptimizationOptions].max_grad_norm:
            self.clip_gradients(optimizer, max_norm, "norm")

    # ---- evaluation -------------------------------------------------------------------
    def evaluated_logits(self, batch: dict[str, Any]) -> dict[Role, torch.Tensor]:
        logits: dict[Role, torch.Tensor] = {}
        if self.student is not None:
            logits["student"] = self.student_logits(batch)
        if self.teacher is not None:
            logits["teacher"] = self.teacher_logits(batch)
        return logits

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self.evaluation.update(self, "val", self.evaluated_logits(batch), batch)

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self.evaluation.update(self, "test", self.evaluated_logits(batch), batch)

    def on_validation_epoch_end(self) -> None:
        self.evaluation.finish(self, "val")

    def on_test_epoch_end(self) -> None:
        results = self.evaluation.finish(self, "test")
        if self.trainer.is_global_zero:
            reference = self.reference
            sources = (reference.source, reference.part_sources) if reference else (None, [])
            self.evaluation.print_test_report(results, self.name, *sources)

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Any]:
        model = self.student_logits if self.student is not None else self.teacher_logits
        return {"text": batch["text"], "probs": model(batch).softmax(dim=-1)}

    # ---- checkpoints ------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        write_record(checkpoint, self.name, self.labels, self.vocab, self.max_length, self.student)
        checkpoint["kd_schedule"] = self.kd_schedule.state_dict()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if "kd_schedule" in checkpoint:  # absent from checkpoints written before the schedule existed
            self.kd_schedule.load_state_dict(checkpoint["kd_schedule"])
        if self.teacher is None:  # predicting with the student only: the teacher was not built
            drop_weights(checkpoint, "teacher")
        drop_weights(checkpoint, "student_extras", keep=self.state_dict().keys())  # e.g. predict without hints


def run_once(batch: dict[str, Any], role: str, forward: Callable[[], ModelOutput]) -> ModelOutput:
    """``forward()``, computed once per training batch (``training_terms`` gives the batch an
    ``outputs`` memo); elsewhere — validation, tests — every call runs the model."""
    outputs = batch.get("outputs")
    if outputs is None:
        return forward()
    if role not in outputs:
        outputs[role] = forward()
    return outputs[role]
