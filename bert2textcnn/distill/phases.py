"""A joint run's phases: the teacher alone, teacher and student together, then the student alone.

The source (004) describes one batch of each joint scheme; a run is more than that batch repeated.
A student that learns from a BERT in its first epoch learns its guesses, and one that learns only
over the texts the BERT is memorising learns little of its judgement (README, "COLD"). So a joint
run has three phases, by epoch:

1. ``teacher`` (``teacher_epochs``): the teacher learns its labels (CE); the student waits.
2. ``joint``: the scheme's own batch — what is detached, which loss moves which model.
3. ``tail`` (``tail_epochs``): the teacher is finished and frozen; its logits on every training
   text and transfer row (``--data.augment``, ``--data.unlabeled_path``), computed once, teach the
   student alone, under each KD setting of ``tail_kd`` side by side (``distill.tail``).

Each batch keeps its scheme's gradient rule: no phase lets a student loss reach a teacher that
the scheme isolates. The teacher and joint phases read the labelled rows only; the tail adds the
transfer rows, which the teacher never trained on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from bert2textcnn.errors import UserError

Phase = Literal["teacher", "joint", "tail"]
PHASES: tuple[Phase, ...] = ("teacher", "joint", "tail")  # in run order; ``train/phase`` logs the index
KD_KEYS = {"alpha", "temperature"}


@dataclass(frozen=True)
class PhaseOptions:
    """How a joint run is split into phases (``distill.phases``); the joint epochs are what
    ``--trainer.max_epochs`` leaves between the other two.

    Args:
        teacher_epochs: Epochs at the start in which the teacher alone learns its labels, so the
            student never learns a half-trained teacher's guesses.
        tail_epochs: Epochs at the end in which the finished teacher is frozen and its logits on
            every training text and transfer row (``--data.augment``, ``--data.unlabeled_path``),
            computed once, teach the student alone. 0: no tail; transfer rows then join the joint
            epochs, scored by the live teacher.
        tail_kd: KD settings (``alpha``, ``temperature``) the tail trains side by side, each a copy
            of the student as the joint epochs left it; after each tail epoch the one with the best
            validation macro-F1 becomes the student (logged, and kept in the checkpoint). The
            default pair serves both kinds of data measured: α 1, T 2 where the teacher clearly
            leads (COLD), α 0.5, T 1 where a lukewarm teacher on a rare class would cost recall at
            T 2 (sms_spam_zh).
    """

    teacher_epochs: int = 1
    tail_epochs: int = 3
    tail_kd: tuple[dict[str, float], ...] = ({"alpha": 1.0, "temperature": 2.0}, {"alpha": 0.5, "temperature": 1.0})

    def __post_init__(self) -> None:
        if self.teacher_epochs < 0 or self.tail_epochs < 0:
            raise UserError("--model.teacher_epochs and --model.tail_epochs count epochs: 0 or more")
        if not self.tail_kd:
            raise UserError("--model.tail_kd needs at least one KD setting, e.g. [{alpha: 1.0, temperature: 2.0}]")
        for setting in self.tail_kd:
            if set(setting) != KD_KEYS:
                raise UserError(f"--model.tail_kd: each setting names alpha and temperature, got {dict(setting)}")
            if not 0 <= setting["alpha"] <= 1 or setting["temperature"] <= 0:
                raise UserError(f"--model.tail_kd: alpha lies in [0, 1] and temperature is positive, got {setting}")


class PhasePlan:
    """Which phase each epoch belongs to, for a run of ``max_epochs`` epochs."""

    def __init__(self, options: PhaseOptions, max_epochs: int | None) -> None:
        self.teacher_epochs, self.tail_epochs = options.teacher_epochs, options.tail_epochs
        phased = self.teacher_epochs or self.tail_epochs
        if phased and (max_epochs is None or max_epochs < 0):
            raise UserError(
                "a joint run with teacher or tail epochs needs --trainer.max_epochs (or --model.teacher_epochs 0 "
                "--model.tail_epochs 0 for joint batches only)"
            )
        self.max_epochs = max_epochs if max_epochs is not None and max_epochs >= 0 else None
        if self.max_epochs is not None and self.max_epochs - self.teacher_epochs - self.tail_epochs < 1:
            raise UserError(
                f"{self.teacher_epochs} teacher epoch(s), at least 1 joint epoch and {self.tail_epochs} tail "
                f"epoch(s) need --trainer.max_epochs {self.teacher_epochs + self.tail_epochs + 1} or more, got "
                f"{self.max_epochs}; or lower --model.teacher_epochs / --model.tail_epochs"
            )

    @property
    def tail_start(self) -> int | None:
        """The first tail epoch; None without a tail."""
        return self.max_epochs - self.tail_epochs if self.tail_epochs and self.max_epochs is not None else None

    @property
    def joint_epochs(self) -> int | None:
        if self.max_epochs is None:
            return None
        return self.max_epochs - self.teacher_epochs - self.tail_epochs

    def phase(self, epoch: int) -> Phase:
        if epoch < self.teacher_epochs:
            return "teacher"
        tail_start = self.tail_start
        return "tail" if tail_start is not None and epoch >= tail_start else "joint"

    def describe(self) -> str:
        return f"{self.teacher_epochs} teacher, {self.joint_epochs} joint and {self.tail_epochs} tail epoch(s)"
