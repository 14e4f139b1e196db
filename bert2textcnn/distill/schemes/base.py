"""What every scheme shares: the student, the teacher, text encoding, logging, checkpoint contents
and prediction; evaluation (``Evaluation``) and optimizers (``optimization``) are collaborators.
A scheme subclass states only what differs: its loss terms, what is detached, and how many
optimizers step per batch.
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar, Literal

import lightning as L
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from torch import nn

from bert2textcnn.checkpoint import RECORD_KEY, drop_weights
from bert2textcnn.compat.historical import HistoricalModel, load_historical
from bert2textcnn.distill.evaluation import Evaluation, positive_index
from bert2textcnn.distill.losses import StudentTargets
from bert2textcnn.distill.optimization import adamw_with_schedule, training_batches
from bert2textcnn.distill.teacher_gate import KDSchedule, check_teacher
from bert2textcnn.errors import UserError
from bert2textcnn.models import build_student
from bert2textcnn.models.bert import BertClassifier, StudentInit

log = logging.getLogger(__name__)

Role = Literal["student", "teacher"]


class DistillationModule(L.LightningModule):
    """Base class; pick a scheme with ``--scheme`` (see ``bert2textcnn.distill.schemes.SCHEMES``)."""

    name: ClassVar[str]
    has_student: ClassVar[bool] = True
    has_teacher: ClassVar[bool] = False  # a trainable BERT teacher held as a submodule
    selects_on: ClassVar[Role] = "student"  # whose val macro-F1 picks the best checkpoint
    separate_optimizers: ClassVar[bool] = False  # one optimizer per trained model, stepped in turn
    distils: ClassVar[bool] = True  # the student learns from a teacher, so unlabelled rows are useful

    def __init__(
        self,
        labels: list[str] | None = None,
        vocab: Any = None,
        max_length: int = 128,
        alpha: float = 0.5,
        temperature: float = 1.0,
        unlabeled_target: Literal["soft", "hard"] = "soft",
        pseudo_label_threshold: float = 0.0,
        trust_labels: bool = True,
        kd_warmup: float = 0.0,
        teacher_gate: float | None = 0.05,
        teacher: str | None = None,
        teacher_lowercase: bool | None = None,
        student: str = "textcnn",
        student_layers: int = 1,
        student_init: StudentInit = "first",
        embedding_dim: int = 128,
        kernel_sizes: tuple[int, ...] = (2, 3, 4),
        num_filters: int = 128,
        dropout: float = 0.5,
        student_lr: float | None = None,
        teacher_lr: float = 2e-5,
        weight_decay: float = 0.01,
        warmup_ratio: float = 0.1,
        max_grad_norm: float = 1.0,
        compare_to: str | None = None,
        positive_label: str | None = None,
    ) -> None:
        """
        Args:
            labels: Class names in id order (linked from the data; not set by hand).
            vocab: The student's vocabulary (linked from the data; not set by hand).
            max_length: Longest input in tokens (linked from ``--data.max_length``).
            alpha: Weight α of the soft (KD) term in the student loss α·KD + (1−α)·CE.
            temperature: Softmax temperature T of the KD term (which is scaled by T²). Above 1 it
                holds the student near the teacher's confidence on rows the teacher is unsure of;
                on sms_spam_zh T = 2 cost spam recall against the plain student, T = 1 did not.
            unlabeled_target: What the student learns on unlabelled rows (``--data.unlabeled_path``,
                ``--data.label_fraction``, ``--data.augment``): ``soft``, the KD term alone, or
                ``hard``, CE with the teacher's argmax class as a pseudo-label.
            pseudo_label_threshold: With ``hard`` targets, skip unlabelled rows whose teacher
                probability (at T = 1) is below this; 0 keeps every row.
            trust_labels: On a labelled row whose label the teacher gets wrong, learn the label
                alone (CE) instead of α·KD + (1−α)·CE, so the teacher's mistakes — and a joint
                teacher's early guesses — are not distilled.
            kd_warmup: Share of the run's batches over which the KD weight ramps linearly from 0
                to α (and unlabelled rows' loss from 0 to full; in ``joint_coupled`` the teacher-side
                β·KD too), starting when the teacher gate opens. While it is 0 the student learns
                the labels alone and no KD gradient reaches it. 0: full weight at once.
            teacher_gate: A teacher must beat a constant guess by this much balanced accuracy
                (mean per-class recall; a constant guess scores 1/C) before it teaches. A frozen
                teacher (``offline``, ``multi_teacher`` with a checkpoint) is checked on validation
                before training and the run stops if it fails; a teacher that trains beside the
                student is watched on each batch before its update, and KD (both directions) waits
                until it passes. ``null``: no gate.
            teacher: Local Hugging Face BERT directory; default: the bundled m3e-small.
            teacher_lowercase: Lowercase text for the teacher's tokenizer. Default: on when
                its vocabulary knows only lowercase Latin letters (true of m3e-small).
            student: The student's kind, a name in ``bert2textcnn.models.STUDENT_KINDS``:
                ``textcnn`` (over the data's char/jieba vocabulary) or ``bert``, a small BERT cut
                from the ``teacher`` folder (its tokenizer and config).
            student_layers: A ``bert`` student's encoder layers (1 to the teacher's layer count).
            student_init: How a ``bert`` student starts: ``first``, the teacher folder's embeddings
                and first layers; ``every_kth``, every (n/L)-th layer ending with the last;
                ``random``, the same shape drawn afresh. Always from the pre-trained folder, not
                from a fine-tuned teacher checkpoint.
            embedding_dim: TextCNN student token-embedding size.
            kernel_sizes: Student convolution widths, one filter bank each.
            num_filters: Filters per kernel width.
            dropout: Dropout before the student's classifier.
            student_lr: Peak learning rate of the student (AdamW). Default: the kind's own,
                1e-3 for ``textcnn``, 1e-4 for ``bert``.
            teacher_lr: Peak learning rate of the teacher (AdamW).
            weight_decay: AdamW weight decay on both models' weight matrices (none on biases and LayerNorm).
            warmup_ratio: Share of training spent warming the learning rates up linearly;
                they then decay linearly to zero.
            max_grad_norm: Clip each model's gradient to this L2 norm (0 disables).
            compare_to: An old (production) model to compare the student with on val and test:
                a bert2textcnn checkpoint or a scores file. Logs coverage, flip rates, agreement.
            positive_label: The class whose hits "coverage" counts. Default: ``spam`` if it is a
                label, else the last label.
        """
        super().__init__()
        if labels is None or vocab is None:
            raise UserError("a scheme needs labels and a vocabulary from the data module")
        if temperature <= 0:
            raise UserError(f"--model.temperature must be positive, got {temperature}")
        if not 0 <= alpha <= 1:
            raise UserError(f"--model.alpha must lie in [0, 1], got {alpha}")
        if not 0 <= pseudo_label_threshold < 1:
            raise UserError(f"--model.pseudo_label_threshold must lie in [0, 1), got {pseudo_label_threshold}")
        # Evaluation-only options stay out of the hyper-parameters, so that `test --ckpt_path …
        # --model.compare_to …` is not overridden by the value the checkpoint was trained with.
        self.save_hyperparameters(ignore=["labels", "vocab", "max_length", "compare_to", "positive_label"])
        self.compare_to = compare_to
        self.hparams.kernel_sizes = list(kernel_sizes)  # a plain list reads back from YAML anywhere
        self.labels, self.vocab, self.max_length = list(labels), vocab, max_length
        self.student = (
            build_student(student, vocab, len(labels), max_length, self.hparams) if self.has_student else None
        )
        self.teacher: BertClassifier | None = None  # built in configure_model, and only when used
        # Parameters a method trains beside the student (a hint regressor, branch classifiers): a
        # scheme adds them here; they are checkpointed, and export and predict leave them out.
        self.student_extras = nn.ModuleDict()
        self.positive_index = positive_index(self.labels, positive_label)
        self.evaluation = Evaluation(self.labels, self.roles, self.positive_index)
        self.reference: HistoricalModel | None = None  # loaded in setup, when there is one
        gate = teacher_gate if self.teacher_learns_jointly else None  # a frozen teacher is checked once instead
        self.kd_schedule = KDSchedule(len(self.labels), kd_warmup, gate)
        self.run_batches: int | None = None  # set with the optimizers, for the KD ramp

    @property
    def roles(self) -> list[Role]:
        """The models this scheme evaluates."""
        return [r for r, present in (("student", self.has_student), ("teacher", self.has_teacher)) if present]

    @property
    def teacher_learns_jointly(self) -> bool:
        """Whether a BERT teacher trains beside the student (its KD then waits for the gate)."""
        return self.has_teacher and self.has_student

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
        hard = self.hparams.unlabeled_target == "hard"
        return StudentTargets(
            self.hparams.alpha,
            self.hparams.temperature,
            self.hparams.pseudo_label_threshold if hard else None,
            self.hparams.trust_labels,
            self.kd_factor,
        )

    def watch_teacher(self, teacher_logits: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        """Let the gate see the jointly trained teacher's logits before its update; terms for the logs."""
        self.kd_schedule.observe(teacher_logits, labels, self.batches_done)
        device = teacher_logits.device  # checked() stacks every term: they must share a device
        return {
            "kd_weight": torch.tensor(self.kd_factor, device=device),
            "teacher_balanced_accuracy": torch.tensor(self.kd_schedule.teacher_score, device=device),
        }

    def check_frozen_teacher(self, logits: torch.Tensor, labels: torch.Tensor, source: str) -> None:
        """Stop before training when a frozen teacher is no better than a constant guess on validation."""
        if self.hparams.teacher_gate is None:
            log.info("Teacher gate off: %s is distilled unchecked", source)
            return
        score = check_teacher(logits, labels, len(self.labels), self.hparams.teacher_gate, source)
        log.info("Teacher %s: balanced accuracy %.3f on validation (a constant guess: %.3f)",
                 source, score, 1 / len(self.labels))  # fmt: skip

    def reference_source(self) -> str | None:
        """The old model the student is compared with (``--model.compare_to``)."""
        return self.compare_to

    def setup(self, stage: str) -> None:
        source = self.reference_source()
        if source and stage != "predict" and self.has_student and self.reference is None:
            self.reference = load_historical(source, self.labels, self.trainer.datamodule.columns[0])
            log.info(
                "Comparing the student with %s (coverage of its %r hits, flip rates)",
                source,
                self.labels[self.positive_index],
            )

    # ---- models and inputs -------------------------------------------------------------
    def configure_model(self) -> None:
        """Load the teacher once per process, unless this run only predicts with the student."""
        predicting = self._trainer is not None and self.trainer.predicting and self.has_student
        if self.has_teacher and self.teacher is None and not predicting:
            self.teacher = self.build_teacher()

    def build_teacher(self) -> BertClassifier:
        return BertClassifier.from_directory(
            self.hparams.teacher, len(self.labels), self.max_length, self.hparams.teacher_lowercase
        )

    def on_fit_start(self) -> None:
        if self.teacher is not None:
            self.log_tokenizer_fit(self.trainer.datamodule.train_texts())

    def on_train_start(self) -> None:
        """Hyper-parameters of model and data, with the final metrics as HParams-tab columns."""
        if isinstance(self.logger, TensorBoardLogger):
            params = {"scheme": self.name, **self.trainer.datamodule.hparams, **self.hparams}
            columns = {f"hp/{role}_{name}": float("nan") for role in self.roles for name in ("macro_f1", "recall")}
            self.logger.log_hyperparams(params, columns)

    def log_tokenizer_fit(self, texts: list[str]) -> None:
        """How much of the training text the teacher cannot see: [UNK] rates as cased and lowercased."""
        rates = {}
        for lowercase in (False, True):
            texts_rate, tokens_rate = self.teacher.unknown_rates(texts, lowercase)
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
            "on" if self.teacher.lowercase else "off",
        )
        if self.logger is not None:
            self.logger.log_metrics(rates, step=0)

    def on_before_batch_transfer(self, batch: dict[str, Any], dataloader_idx: int) -> dict[str, Any]:
        """Encode the batch's raw texts for each model present, each with its own tokenizer."""
        texts = batch["text"]
        if self.student is not None:
            batch["student_inputs"] = self.student.encode(texts)
        if self.teacher is not None:
            batch["teacher_inputs"] = self.teacher.encode(texts)
        if self.reference is not None and not self.trainer.training:
            batch["reference_logits"], batch["reference_mask"] = self.reference.logits(texts)
        return batch

    def student_logits(self, batch: dict[str, Any]) -> torch.Tensor:
        return self.student(**batch["student_inputs"]).logits

    def teacher_logits(self, batch: dict[str, Any]) -> torch.Tensor:
        return self.teacher(**batch["teacher_inputs"]).logits

    # ---- training ---------------------------------------------------------------------
    def loss_terms(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """Named loss terms of one batch; ``loss`` is the one back-propagated (automatic schemes)."""
        raise NotImplementedError

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        terms = self.checked(self.loss_terms(batch), batch_idx)
        self.log_terms(terms, batch_size=len(batch["text"]))
        return terms["loss"]

    def checked(self, terms: dict[str, torch.Tensor], batch_idx: int) -> dict[str, torch.Tensor]:
        """Stop before a non-finite loss reaches any optimizer, naming where it appeared."""
        if bool(torch.stack([value.detach().float() for value in terms.values()]).isfinite().all()):
            return terms
        bad = ", ".join(f"{name} = {value.item()}" for name, value in terms.items() if not value.isfinite())
        callback = self.trainer.checkpoint_callback
        last = callback.last_model_path if callback is not None else ""
        raise UserError(
            f"non-finite loss at epoch {self.current_epoch}, batch {batch_idx} (global step {self.global_step}): "
            f"{bad}. Training stopped before this update; the last checkpoint ({last or 'none saved yet'}) "
            "is intact. Lower the learning rates, check the data, or resume from that checkpoint."
        )

    def log_terms(self, terms: dict[str, torch.Tensor], batch_size: int) -> None:
        self.log_dict(
            {f"train/{name}": value.detach() for name, value in terms.items()},
            on_step=True,
            on_epoch=True,
            batch_size=batch_size,
            sync_dist=True,
        )

    def trained_modules(self) -> dict[Role, nn.Module]:
        """The models this scheme updates, with their own learning rates."""
        modules: dict[Role, nn.Module] = {}
        if self.student is not None:
            modules["student"] = self.student_side
        if self.teacher is not None:
            modules["teacher"] = self.teacher
        return modules

    @property
    def student_side(self) -> nn.Module:
        """The student with the parameters a method adds beside it (``student_extras``): they share
        its optimizer, learning rate and clipping."""
        return nn.ModuleList([self.student, self.student_extras]) if len(self.student_extras) else self.student

    @property
    def optimizer_steps_per_batch(self) -> int:
        return len(self.trained_modules()) if self.separate_optimizers else 1

    def configure_optimizers(self) -> Any:
        lrs = {"teacher": self.hparams.teacher_lr}
        if self.student is not None:
            lrs["student"] = self.hparams.student_lr or self.student.default_lr
        self.run_batches = training_batches(self.trainer, self.optimizer_steps_per_batch)
        modules = self.trained_modules()
        per_optimizer = [[role] for role in modules] if self.separate_optimizers else [list(modules)]
        hp = self.hparams
        return adamw_with_schedule(modules, lrs, per_optimizer, self.run_batches, hp.warmup_ratio, hp.weight_decay)

    def configure_gradient_clipping(
        self, optimizer: Any, gradient_clip_val: Any = None, gradient_clip_algorithm: Any = None
    ) -> None:
        if self.hparams.max_grad_norm:
            self.clip_gradients(optimizer, self.hparams.max_grad_norm, "norm")

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
            self.evaluation.print_test_report(results, self.name, self.reference and self.reference.source)

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Any]:
        model = self.student_logits if self.student is not None else self.teacher_logits
        return {"text": batch["text"], "probs": model(batch).softmax(dim=-1)}

    # ---- checkpoints ------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Everything needed to encode raw text for the student, so a checkpoint predicts alone."""
        checkpoint[RECORD_KEY] = {
            "scheme": self.name,
            "labels": self.labels,
            "vocab": self.vocab.to_dict(),
            "max_length": self.max_length,
        }
        if self.student is not None:
            checkpoint[RECORD_KEY]["student"] = self.student.describe()
        checkpoint["kd_schedule"] = self.kd_schedule.state_dict()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if "kd_schedule" in checkpoint:  # absent from checkpoints written before the schedule existed
            self.kd_schedule.load_state_dict(checkpoint["kd_schedule"])
        if self.teacher is None:  # predicting with the student only: the teacher was not built
            drop_weights(checkpoint, "teacher")
