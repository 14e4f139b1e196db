"""Frozen historical (production) models: extra teachers, and references for compatibility.

A historical model is either a bert2textcnn checkpoint, which brings its own vocabulary,
tokenizer and max length, or a scores file exported by any other system: a text column plus one
column per class, named ``<label>``, ``prob_<label>`` or ``logit_<label>`` (the CSV that
``predict`` writes is one). Both give logits in the data's label order for raw texts, plus a mask
of the rows they could score: a scores file cannot score a text it does not contain.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import torch

from bert2textcnn.data.records import FORMATS, missing_column, read_table
from bert2textcnn.errors import DataError, UserError
from bert2textcnn.inference.predictor import StudentPredictor

log = logging.getLogger(__name__)
CHECKPOINT_SUFFIXES = (".ckpt", ".pt", ".pth")
Scored = tuple[torch.Tensor, torch.Tensor]  # (batch, classes) logits and the (batch,) mask of scored rows


class HistoricalModel(Protocol):
    source: str

    def logits(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """(batch, classes) logits in the data's label order, and a (batch,) mask of scored rows."""
        ...


def load_historical(path: str, labels: Sequence[str], text_column: str = "text") -> HistoricalModel:
    suffix = Path(path).suffix.lower()
    if suffix in CHECKPOINT_SUFFIXES:
        return CheckpointModel(path, labels)
    if suffix in FORMATS:
        return ScoresFile(path, labels, text_column)
    raise UserError(
        f"{path}: a historical model is a bert2textcnn checkpoint ({', '.join(CHECKPOINT_SUFFIXES)}) "
        f"or a scores file ({', '.join(FORMATS)})"
    )


def load_reference(sources: str | Sequence[str], labels: Sequence[str], text_column: str = "text") -> Reference:
    """The old model, or models, a student is compared with (``--model.compare_to``)."""
    named = [sources] if isinstance(sources, str) else list(sources)
    return Reference([load_historical(source, labels, text_column) for source in named])


class Reference:
    """The old model(s) a student is compared with; several count as one ensemble, their
    probabilities averaged on the rows every one of them scores (a scores file may lack some),
    and are compared one by one as well."""

    def __init__(self, parts: Sequence[HistoricalModel]) -> None:
        self.parts = list(parts)
        self.part_sources = [part.source for part in self.parts] if len(self.parts) > 1 else []
        self.source = "the average of " + ", ".join(self.part_sources) if self.part_sources else self.parts[0].source

    def scores(
        self, texts: Sequence[str]
    ) -> tuple[torch.Tensor, torch.Tensor, list[tuple[torch.Tensor, torch.Tensor]]]:
        """(log-probabilities, mask) of the reference, and each part's (logits, mask) when there are several."""
        scored = [part.logits(texts) for part in self.parts]
        return (*average(scored), scored if self.part_sources else [])


def average(scored: Sequence[Scored]) -> Scored:
    """The models' mean probabilities (as log-probabilities) on the rows they all score."""
    probabilities = torch.stack([logits.softmax(-1) for logits, _ in scored]).mean(0)
    return probabilities.clamp_min(1e-12).log(), torch.stack([mask for _, mask in scored]).all(0)


def label_order(theirs: Sequence[str], ours: Sequence[str], source: str) -> list[int]:
    """For each of our labels, its column in theirs; the sets must match, the order may differ."""
    if sorted(theirs) != sorted(ours):
        raise UserError(f"{source}: its labels {list(theirs)} differ from the data's {list(ours)}")
    if list(theirs) != list(ours):
        log.info("%s: label order %s remapped by name to %s", source, list(theirs), list(ours))
    return [list(theirs).index(label) for label in ours]


class CheckpointModel:
    def __init__(self, path: str, labels: Sequence[str]) -> None:
        self.source = path
        self.predictor = StudentPredictor.from_checkpoint(path)
        self.order = label_order(self.predictor.labels, labels, path)

    def logits(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        return self.predictor.logits(texts)[:, self.order], torch.ones(len(texts), dtype=torch.bool)


class ScoresFile:
    """Scores per text; probabilities are turned into log-probabilities, which softmax inverts."""

    def __init__(self, path: str, labels: Sequence[str], text_column: str = "text") -> None:
        self.source = path
        self.num_classes = len(labels)
        self.scores: dict[str, torch.Tensor] = {}
        columns: list[str] | None = None
        as_probabilities = True
        duplicates = 0
        for line, row in read_table(path):
            if columns is None:
                columns, as_probabilities = self._columns(path, row, labels, text_column, line)
            text = str(row.get(text_column, "")).strip()
            if not text:
                raise DataError(path, f"empty text in column {text_column!r}", line)
            try:
                values = [float(row[c]) for c in columns]  # type: ignore[arg-type]
            except (TypeError, ValueError):
                raise DataError(path, f"scores must be numbers in columns {columns}", line) from None
            if not all(map(math.isfinite, values)):
                raise DataError(path, "scores must be finite", line)
            if text in self.scores:
                duplicates += 1
                continue  # the first score for a text wins
            self.scores[text] = torch.tensor(values)
        if columns is None:
            raise DataError(path, "no data rows")
        if as_probabilities:
            self.scores = {t: self._probabilities_to_logits(path, t, p) for t, p in self.scores.items()}
        if duplicates:
            log.warning("%s: %d repeated texts; the first score of each is used", path, duplicates)

    @staticmethod
    def _columns(
        path: str, row: dict[str, object], labels: Sequence[str], text_column: str, line: int
    ) -> tuple[list[str], bool]:
        if text_column not in row:
            raise DataError(path, missing_column(text_column, row, "text"), line)
        for prefix, probabilities in (("prob_", True), ("logit_", False), ("", None)):
            columns = [f"{prefix}{label}" for label in labels]
            if all(c in row for c in columns):
                return columns, probabilities if probabilities is not None else _looks_like_probabilities(row, columns)
        expected = ", ".join(f"prob_{label}" for label in labels)
        raise DataError(path, f"no score column per class: expected {expected} (or logit_… / bare label names)", line)

    @staticmethod
    def _probabilities_to_logits(path: str, text: str, probs: torch.Tensor) -> torch.Tensor:
        if (probs < 0).any() or (probs > 1).any() or abs(float(probs.sum()) - 1) > 1e-3:
            raise DataError(path, f"probabilities for {text[:30]!r} do not form a distribution: {probs.tolist()}")
        return probs.clamp_min(1e-8).log()

    def logits(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        known = torch.tensor([t in self.scores for t in texts], dtype=torch.bool)
        rows = [self.scores.get(t, torch.zeros(self.num_classes)) for t in texts]
        return torch.stack(rows), known

    def coverage_of(self, texts: Sequence[str]) -> int:
        return sum(t in self.scores for t in texts)


def _looks_like_probabilities(row: dict[str, object], columns: list[str]) -> bool:
    """Bare label columns: probabilities if the first row is a distribution, logits otherwise."""
    try:
        values = [float(row[c]) for c in columns]  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return True  # the caller reports the bad value with its line
    return all(0 <= v <= 1 for v in values) and abs(sum(values) - 1) < 1e-3
