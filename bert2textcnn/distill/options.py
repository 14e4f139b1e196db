"""The schemes' options (``--model.*``) in groups; each scheme takes the groups it uses.

Every field is a flat option (``--model.alpha``); the group only decides which schemes list it
and where its default and its checks are written (see ``bert2textcnn.option_groups``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

from bert2textcnn.errors import UserError
from bert2textcnn.models import STUDENT_KINDS
from bert2textcnn.models.bert import StudentInit


@dataclass(frozen=True)
class StudentOptions:
    """The student model.

    Args:
        student: The student's kind, a name in ``bert2textcnn.models.STUDENT_KINDS``: ``textcnn``
            (over the data's char/jieba vocabulary) or ``bert``, a small BERT cut from the
            ``teacher`` folder (its tokenizer and config).
        student_layers: A ``bert`` student's encoder layers (1 to the teacher's layer count).
        student_init: How a ``bert`` student starts: ``first``, the teacher folder's embeddings and
            first layers; ``every_kth``, every (n/L)-th layer ending with the last; ``random``, the
            same shape drawn afresh. Always from the pre-trained folder, not from a fine-tuned
            teacher checkpoint.
        embedding_dim: TextCNN student token-embedding size.
        kernel_sizes: Student convolution widths, one filter bank each.
        num_filters: Filters per kernel width.
        dropout: Dropout before the student's classifier.
        student_lr: Peak learning rate of the student (AdamW). Default: the kind's own, 1e-3 for
            ``textcnn``, 1e-4 for ``bert``.
    """

    student: str = "textcnn"
    student_layers: int = 1
    student_init: StudentInit = "first"
    embedding_dim: int = 128
    kernel_sizes: tuple[int, ...] = (2, 3, 4)
    num_filters: int = 128
    dropout: float = 0.5
    student_lr: float | None = None

    def __post_init__(self) -> None:
        if self.student not in STUDENT_KINDS:
            raise UserError(
                f"--model.student: unknown model kind {self.student!r}; choose from {sorted(STUDENT_KINDS)}"
            )


@dataclass(frozen=True)
class PretrainedOptions:
    """The pre-trained BERT folder: the teacher to fine-tune, and the source of a small-BERT student.

    Args:
        teacher: Local Hugging Face BERT directory; default: the bundled m3e-small.
        teacher_lowercase: Lowercase text for the teacher's tokenizer. Default: on when its
            vocabulary knows only lowercase Latin letters (true of m3e-small).
    """

    teacher: str | None = None
    teacher_lowercase: bool | None = None


@dataclass(frozen=True)
class TeacherTrainingOptions:
    """A BERT teacher fine-tuned in this run.

    Args:
        teacher_lr: Peak learning rate of the teacher (AdamW).
    """

    teacher_lr: float = 2e-5


@dataclass(frozen=True)
class DistillOptions:
    """How the student learns from its teacher.

    Args:
        alpha: Weight α of the soft (KD) term in the student loss α·KD + (1−α)·CE.
        temperature: Softmax temperature T of the KD term (which is scaled by T²). Above 1 it holds
            the student near the teacher's confidence on rows the teacher is unsure of; on
            sms_spam_zh T = 2 cost spam recall against the plain student, T = 1 did not.
        unlabeled_target: What the student learns on unlabelled rows (``--data.unlabeled_path``,
            ``--data.label_fraction``, ``--data.augment``): ``soft``, the KD term alone, or
            ``hard``, CE with the teacher's argmax class as a pseudo-label.
        pseudo_label_threshold: With ``hard`` targets, skip unlabelled rows whose teacher
            probability (at T = 1) is below this; 0 keeps every row.
        trust_labels: On a labelled row whose label the teacher gets wrong, learn the label alone
            (CE) instead of α·KD + (1−α)·CE, so the teacher's mistakes — and a joint teacher's
            early guesses — are not distilled.
        kd_warmup: Share of the run's batches over which the KD weight ramps linearly from 0 to α
            (and unlabelled rows' loss from 0 to full; in ``joint_coupled`` the teacher-side β·KD
            too), starting when the teacher gate opens. While it is 0 the student learns the
            labels alone and no KD gradient reaches it. 0: full weight at once.
        teacher_gate: A teacher must beat a constant guess by this much balanced accuracy (mean
            per-class recall; a constant guess scores 1/C) before it teaches. A frozen teacher
            (``offline``, ``multi_teacher`` with a checkpoint) is checked on validation before
            training and the run stops if it fails; a teacher that trains beside the student is
            watched on each batch before its update, and KD (both directions) waits until it
            passes. ``null``: no gate.
    """

    alpha: float = 0.5
    temperature: float = 1.0
    unlabeled_target: Literal["soft", "hard"] = "soft"
    pseudo_label_threshold: float = 0.0
    trust_labels: bool = True
    kd_warmup: float = 0.0
    teacher_gate: float | None = 0.05

    def __post_init__(self) -> None:
        if self.temperature <= 0:
            raise UserError(f"--model.temperature must be positive, got {self.temperature}")
        if not 0 <= self.alpha <= 1:
            raise UserError(f"--model.alpha must lie in [0, 1], got {self.alpha}")
        if not 0 <= self.pseudo_label_threshold < 1:
            raise UserError(f"--model.pseudo_label_threshold must lie in [0, 1), got {self.pseudo_label_threshold}")


@dataclass(frozen=True)
class FrozenTeacherDistillOptions(DistillOptions):
    """As ``DistillOptions``, for a teacher that finished training before the student starts.

    Args:
        trust_labels: As in every scheme, but off by default here: the rows where a fully trained
            teacher disagrees with the label are noisy or hard ones, where its view carries the
            most (on COLD, on 5.5 % of the training rows: dropping them cost most of KD's gain;
            on sms_spam_zh it cost 0.0035 macro-F1; README, Results).
    """

    trust_labels: bool = False


@dataclass(frozen=True)
class OptimizationOptions:
    """AdamW and its schedule, for every model a scheme trains.

    Args:
        weight_decay: AdamW weight decay on the models' weight matrices (none on biases and LayerNorm).
        warmup_ratio: Share of training spent warming the learning rates up linearly; they then
            decay linearly to zero.
        max_grad_norm: Clip each model's gradient to this L2 norm (0 disables).
    """

    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    max_grad_norm: float = 1.0


@dataclass(frozen=True)
class EvaluationOptions:
    """How val and test results are reported (left out of the hyper-parameters, so ``test
    --ckpt_path … --model.compare_to …`` is not overridden by the value a checkpoint trained with).

    Args:
        positive_label: The class whose hits "coverage", recall and the PR curve count. Default:
            ``spam`` if it is a label, else the last label.
    """

    hyperparameters: ClassVar[bool] = False
    positive_label: str | None = None


@dataclass(frozen=True)
class CompareOptions:
    """An old (production) model the student is measured against.

    Args:
        compare_to: An old model to compare the student with on val and test: a bert2textcnn
            checkpoint or a scores file. Logs coverage, flip rates, agreement. Several (a list):
            compared with their averaged probabilities (an ensemble, ``compat_*``) and with
            each one (``compat_old1_*``, …).
    """

    hyperparameters: ClassVar[bool] = False
    compare_to: str | list[str] | None = None


@dataclass(frozen=True)
class TeacherCheckpointOptions:
    """A teacher fine-tuned earlier, distilled frozen.

    Args:
        teacher_checkpoint: A bert2textcnn checkpoint holding a fine-tuned teacher (from
            ``--scheme teacher`` or a joint scheme).
    """

    teacher_checkpoint: str | None = None


@dataclass(frozen=True)
class CacheOptions:
    """Teacher logits kept on disk.

    Args:
        cache_dir: Where teacher logits are cached between runs.
    """

    cache_dir: str = "runs/logits_cache"


@dataclass(frozen=True)
class HistoricalOptions:
    """Old (production) models as extra, frozen teachers.

    Args:
        historical: Bert2textcnn checkpoints and/or scores files (CSV/TSV/JSONL with the text and
            one column per class).
        historical_weights: Weight of each historical model in the soft target; BERT gets 1 − their
            sum, which must stay positive. Default: every teacher weighs the same.
        historical_temperatures: Softmax temperature per historical model (default: T).
        focal: Focal distillation (Yan et al. 2021), e.g. ``{alpha: 1.0, beta: 5.0}``: the
            historical models leave the mixed soft target and each adds its own term
            w_k·mean_rows(f·KD(s, old_k)), with f = alpha + beta·[old_k's class = the label] on
            labelled rows and alpha on unlabelled ones, so the student is held hardest to the old
            model where it was right (fewer negative flips); BERT then teaches through L_s alone.
            Default: off.
    """

    historical: list[str] | None = None
    historical_weights: list[float] | None = None
    historical_temperatures: list[float] | None = None
    focal: dict[str, float] | None = None

    def __post_init__(self) -> None:
        if not self.historical:
            raise UserError("--model.historical needs at least one checkpoint or scores file")
        count = len(self.historical)
        for name in ("historical_weights", "historical_temperatures"):
            given = getattr(self, name)
            if given is not None and len(given) != count:
                raise UserError(f"give one --model.{name} per --model.historical entry ({count}), got {len(given)}")
        if self.historical_weights is not None and (
            any(w < 0 for w in self.historical_weights) or sum(self.historical_weights) >= 1
        ):
            raise UserError(
                f"--model.historical_weights {self.historical_weights} must be non-negative and sum to less "
                "than 1: the BERT teacher takes the rest"
            )
        if any(t <= 0 for t in self.historical_temperatures or []):
            raise UserError(f"--model.historical_temperatures must be positive, got {self.historical_temperatures}")
        if self.focal is not None and (
            set(self.focal) != {"alpha", "beta"}
            or any(not isinstance(v, int | float) or v < 0 for v in self.focal.values())
        ):
            raise UserError(f"--model.focal takes {{alpha: A, beta: B}}, both non-negative numbers; got {self.focal}")


@dataclass(frozen=True)
class CouplingOptions:
    """The student's soft loss flowing back into the teacher.

    Args:
        beta: Weight β of the student's soft-label loss in the teacher's objective. It follows the
            same schedule as the student's KD (``teacher_gate``, ``kd_warmup``): 0 until the gate
            opens, so an untrained student does not pull the teacher either.
    """

    beta: float = 1.0


# The groups every scheme with a student takes, and every scheme with a teacher trained here.
STUDENT_GROUPS = (StudentOptions, PretrainedOptions, OptimizationOptions, EvaluationOptions, CompareOptions)
JOINT_GROUPS = (*STUDENT_GROUPS, TeacherTrainingOptions, DistillOptions)
