"""What a data file holds beyond its rows being valid: class counts, texts the student will
truncate, repeated texts with conflicting labels. The data module logs the warnings; the
``check-data`` command prints the whole survey."""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from bert2textcnn.data.records import Record
from bert2textcnn.data.vocab import TokenizerKind, tokenize


@dataclass
class Survey:
    rows: int
    labels: Counter
    median_tokens: float
    max_tokens: int
    truncated: int  # texts longer than max_length tokens: cut, not dropped
    conflicting: dict[str, set[str]]  # text → the labels it carries, where more than one

    def warnings(self, max_length: int) -> list[str]:
        notes = []
        if self.truncated:
            notes.append(f"{self.truncated} texts are longer than max_length {max_length} tokens and will be cut")
        if self.conflicting:
            text, labels = next(iter(self.conflicting.items()))
            notes.append(
                f"{len(self.conflicting)} texts appear with conflicting labels (e.g. {text[:30]!r} as "
                f"{' and '.join(sorted(labels))})"
            )
        return notes

    def summary(self) -> str:
        classes = ", ".join(f"{label} {count}" for label, count in sorted(self.labels.items()))
        return (
            f"{self.rows} rows" + (f" · {classes}" if classes else "") + f" · tokens per text: median "
            f"{self.median_tokens:.0f}, max {self.max_tokens}"
        )


def survey(records: Sequence[Record], kind: TokenizerKind, lowercase: bool, max_length: int) -> Survey:
    lengths = [len(tokenize(r.text, kind, lowercase)) for r in records]
    labels_of: dict[str, set[str]] = defaultdict(set)
    for record in records:
        if record.label is not None:
            labels_of[record.text].add(record.label)
    return Survey(
        rows=len(records),
        labels=Counter(r.label for r in records if r.label is not None),
        median_tokens=statistics.median(lengths),
        max_tokens=max(lengths),
        truncated=sum(n > max_length for n in lengths),
        conflicting={text: labels for text, labels in labels_of.items() if len(labels) > 1},
    )
