"""What the three joint schemes share: a BERT fine-tuned in this run beside the student, over a run
in phases (``distill.phases``): the teacher alone, the scheme's own joint batch, then the student
alone against the finished teacher's cached logits (``distill.tail``).

A scheme file states its joint batch (``loss_terms``) and which optimizer each of its losses moves
(``joint_optimizers``); the phases, the optimizers and their schedules are here. Optimisation is manual
(as in Lightning's GAN example): each phase steps only the optimizers of the models it trains, and
every learning-rate schedule spans its own model's phases.
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar

import torch
from lightning.pytorch.trainer.states import TrainerFn

from bert2textcnn.data.augment import Augmentation
from bert2textcnn.distill.finite import finite_or_stop
from bert2textcnn.distill.losses import labelled_ce
from bert2textcnn.distill.optimization import adamw_with_schedule, training_batches
from bert2textcnn.distill.options import OptimizationOptions, StudentOptions, TeacherTrainingOptions
from bert2textcnn.distill.phases import PHASES, Phase, PhaseOptions, PhasePlan
from bert2textcnn.distill.schemes.base import DistillationModule
from bert2textcnn.distill.tail import StudentTail
from bert2textcnn.distill.teachers import JointTeacher, TeacherSource
from bert2textcnn.errors import UserError
from bert2textcnn.option_groups import Options

log = logging.getLogger(__name__)
JOINT_ONLY = PhaseOptions(teacher_epochs=0, tail_epochs=0)


class JointScheme(DistillationModule):
    """A teacher fine-tuned beside its student, in phases; subclasses state the joint batch."""

    # The optimizers of the joint phase, each with the models it steps: two (each model its own,
    # stepped teacher first) or one for both (one summed loss).
    joint_optimizers: ClassVar[tuple[tuple[str, ...], ...]] = (("teacher",), ("student",))
    # The tail's transfer set: three augmented copies of each training text, labelled by the
    # finished teacher (on COLD the copies carried most of what the student learnt; README, "COLD").
    data_defaults: ClassVar[dict[str, Any]] = {"augment": Augmentation(copies=3)}

    def __init__(self, labels: list[str] | None = None, vocab: Any = None, max_length: int = 128, *,
                 options: Options) -> None:  # fmt: skip
        """As ``DistillationModule``; the phases come from ``PhaseOptions``."""
        super().__init__(labels, vocab, max_length, options=options)
        self.automatic_optimization = False  # each phase steps its own models' optimizers
        # A scheme without the phase options (multi_teacher) runs joint batches only.
        phases = self.options[PhaseOptions] if PhaseOptions in self.options else JOINT_ONLY  # noqa: SIM401
        self.phase_options = phases
        self.tail = StudentTail(self.student, phases.tail_kd) if phases.tail_epochs else None
        self.plan: PhasePlan | None = None  # known once a trainer gives the run's length

    def pick_teacher_source(self) -> TeacherSource:
        return JointTeacher()

    @property
    def trained_joint_optimizers(self) -> list[tuple[str, ...]]:
        """``joint_optimizers`` less a teacher that does not train here (a frozen one)."""
        trained = self.trained_modules()
        kept = [tuple(role for role in roles if role in trained) for roles in self.joint_optimizers]
        return [roles for roles in kept if roles]

    @property
    def optimizer_roles(self) -> list[tuple[str, ...]]:
        tail = [(f"tail{i}",) for i in range(len(self.tail.candidates))] if self.tail is not None else []
        return [*self.trained_joint_optimizers, *tail]

    @property
    def optimizer_steps_per_batch(self) -> int:
        return len(self.trained_joint_optimizers)

    @property
    def batches_done(self) -> int:
        """Training batches finished so far; the optimizers stepped per batch vary by phase."""
        if self._trainer is None:
            return 0
        return self.trainer.fit_loop.epoch_loop.batch_progress.total.completed

    @property
    def phase(self) -> Phase:
        return self.plan.phase(self.current_epoch) if self.plan is not None else "joint"

    def setup(self, stage: str) -> None:
        super().setup(stage)
        if stage != "fit":
            return
        self.plan = PhasePlan(self.phase_options, self.trainer.max_epochs)
        if self.tail is not None and len(self.tail.settings) > 1 and not self.trainer.datamodule.paths["val"]:
            raise UserError(
                "the tail chooses among its --model.tail_kd settings on validation rows: give --data.val_path, "
                "or one setting"
            )
        if self.plan.tail_start is not None:
            # Transfer rows wait for the finished teacher; each epoch reads its own phase's rows.
            self.trainer.datamodule.unlabeled_from_epoch = self.plan.tail_start
            self.trainer.reload_dataloaders_every_n_epochs = 1
        if self.plan.max_epochs is not None:
            log.info("%s: %s", self.name, self.plan.describe())

    # ---- optimizers ----------------------------------------------------------------------
    def configure_optimizers(self) -> Any:
        plan = self.plan or PhasePlan(self.phase_options, self.trainer.max_epochs)
        run = training_batches(self.trainer, self.optimizer_steps_per_batch)
        spans = {"teacher": (0, run), "student": (0, run)}
        if plan.max_epochs is not None:
            per_epoch = run // plan.max_epochs  # a teacher or joint epoch: the labelled rows
            bert_epochs = plan.teacher_epochs + plan.joint_epochs
            spans = {"teacher": (0, bert_epochs * per_epoch), "student": (plan.teacher_epochs * per_epoch,
                     plan.joint_epochs * per_epoch)}  # fmt: skip
            if self.tail is not None:
                tail_batches = self.tail_epoch_batches(per_epoch, plan.tail_start)
                tail_span = (bert_epochs * per_epoch, plan.tail_epochs * tail_batches)
                spans |= {f"tail{i}": tail_span for i in range(len(self.tail.candidates))}
        self.run_batches = spans["student"][1]  # the KD ramp is a share of the joint batches
        modules = self.trained_modules()
        if self.tail is not None:
            modules |= {f"tail{i}": candidate for i, candidate in enumerate(self.tail.candidates)}
        student_lr = self.options[StudentOptions].student_lr or self.student.default_lr
        lrs = {role: student_lr for role in modules if role != "teacher"}
        if self.teacher_trains:
            lrs["teacher"] = self.options[TeacherTrainingOptions].teacher_lr
        optim = self.options[OptimizationOptions]
        configs = adamw_with_schedule(
            modules, lrs, self.optimizer_roles, run, optim.warmup_ratio, optim.weight_decay, spans
        )
        return configs if isinstance(configs, list) else [configs]

    def tail_epoch_batches(self, per_epoch: int, tail_start: int) -> int:
        """Batches in a tail epoch: a labelled epoch's, scaled by the rows the transfer set adds."""
        data, limit = self.trainer.datamodule, self.trainer.limit_train_batches
        rows = len(data.train_loader(tail_start)) / max(1, len(data.train_loader(0)))
        batches = max(1, round(per_epoch * rows))
        return min(batches, limit) if isinstance(limit, int) else batches

    # ---- training ------------------------------------------------------------------------
    def training_terms(self, batch: dict[str, Any], batch_idx: int) -> dict[str, torch.Tensor]:
        phase = self.phase
        if phase == "joint":
            terms = super().training_terms(batch, batch_idx)
        else:
            batch["outputs"] = {}
            terms = self.teacher_phase_terms(batch) if phase == "teacher" else self.tail.loss_terms(batch)
            terms = finite_or_stop(terms, self, batch_idx)
        return {**terms, "phase": torch.tensor(float(PHASES.index(phase)))}

    def teacher_phase_terms(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """The teacher learns its labels; the student is not run, so no loss can reach it."""
        teacher_logits = self.teacher_logits(batch)
        gate_terms = self.watch_teacher(teacher_logits, batch["label"])
        ce = labelled_ce(teacher_logits, batch["label"])
        return {**gate_terms, "loss_ce_teacher": ce, "loss_teacher": ce}

    def steps(self) -> list[tuple[int, str]]:
        """(optimizer, the loss it minimises) for this phase's batch, in update order."""
        roles = self.optimizer_roles
        if self.phase == "teacher":
            return [(next(i for i, r in enumerate(roles) if "teacher" in r), "loss_teacher")]
        if self.phase == "tail":
            return [(roles.index((f"tail{i}",)), f"loss_tail{i}") for i in range(len(self.tail.candidates))]
        return [(roles.index(r), "loss" if len(r) > 1 else f"loss_{r[0]}") for r in self.trained_joint_optimizers]

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        terms = self.training_terms(batch, batch_idx)
        optimizers = as_list(self.optimizers())
        # Each loss lives on its own graph or is the one summed loss, so the order of the updates
        # cannot leak one model's loss into another.
        for index, loss in self.steps():
            optimizer = optimizers[index]
            optimizer.zero_grad()
            self.manual_backward(terms[loss])
            self.configure_gradient_clipping(optimizer)
            optimizer.step()
        for scheduler in as_list(self.lr_schedulers()):
            scheduler.step()  # every schedule counts batches; each is 0 outside its model's phases
        self.log_terms(terms, batch_size=len(batch["text"]))
        if self.phase == "tail" and batch_idx + 1 == self.trainer.num_training_batches:
            self.choose_tail_student()

    def on_train_epoch_start(self) -> None:
        if self.phase == "tail" and not self.tail.started:
            data = self.trainer.datamodule
            val_texts = data.texts_and_labels("val")[0] if data.paths["val"] else []
            self.tail.start(self.student, self.teacher, data.train_texts(), val_texts, len(self.labels),
                            data.batch_size)  # fmt: skip

    def choose_tail_student(self) -> None:
        """After each tail epoch's last batch, before it is validated: the copy that leads on the
        validation rows becomes the student."""
        data = self.trainer.datamodule
        texts, labels = data.texts_and_labels("val")
        metrics = self.tail.choose(self.student, texts, labels, self.labels, data.batch_size)
        if self.logger is not None:
            self.logger.log_metrics(metrics, step=self.global_step)

    def teacher_logits(self, batch: dict[str, Any]) -> torch.Tensor:
        fitting = self._trainer is not None and self.trainer.state.fn == TrainerFn.FITTING
        if fitting and self.tail is not None and self.tail.started and self.phase == "tail":
            return self.tail.teacher_logits(batch, training=self.trainer.training)  # it no longer changes
        return super().teacher_logits(batch)

    # ---- checkpoints ---------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        if self.plan is not None:  # the phase of the epoch this checkpoint ends, and the plan
            checkpoint["phase"] = {"phase": self.phase, "plan": self.plan.describe()}
        if self.tail is not None:
            checkpoint["tail"] = self.tail.state()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        if self.tail is not None and "tail" in checkpoint:
            self.tail.load_state(checkpoint["tail"])


def as_list(value: Any) -> list[Any]:
    """Lightning returns a single optimizer (or scheduler) bare and several as a list."""
    return value if isinstance(value, list) else [value]
