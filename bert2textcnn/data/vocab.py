"""The student's vocabulary: characters or jieba words, built on the training texts only.

Needs no torch (only ``encode_batch`` makes a tensor), so a serving process can tokenise alone.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

if TYPE_CHECKING:
    import torch

PAD, UNK = "<pad>", "<unk>"
MASK = "[MASK]"  # a masked word in augmented text: <unk> for the student, BERT's own [MASK] for the teacher
TokenizerKind = Literal["char", "jieba"]


@cache
def quiet_jieba():
    import jieba

    jieba.setLogLevel(logging.WARNING)  # its dictionary-loading chatter is noise in a training log
    return jieba


def lowercase_outside_masks(text: str) -> str:
    """Lowercase ``text`` but keep each ``[MASK]`` marker intact, so tokenizers still see it."""
    return MASK.join(part.lower() for part in text.split(MASK))


def tokenize(text: str, kind: TokenizerKind, lowercase: bool) -> list[str]:
    """Characters or jieba words; a ``[MASK]`` marker becomes one ``<unk>`` token."""
    tokens: list[str] = []
    for i, part in enumerate(text.split(MASK)):
        if i:
            tokens.append(UNK)
        if lowercase:
            part = part.lower()
        if kind == "char":
            tokens += [c for c in part if not c.isspace()]
        else:
            tokens += [word for word in quiet_jieba().lcut(part) if word.strip()]
    return tokens


@dataclass
class Vocab:
    """Token ↔ id map; id 0 is padding and id 1 stands for every unseen token."""

    tokens: list[str]
    kind: TokenizerKind = "char"
    lowercase: bool = True
    _ids: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.tokens[:2] != [PAD, UNK]:
            raise ValueError(f"a vocabulary must start with {PAD!r}, {UNK!r}")
        self._ids = {token: i for i, token in enumerate(self.tokens)}

    @classmethod
    def build(
        cls,
        texts: Iterable[str],
        kind: TokenizerKind = "char",
        lowercase: bool = True,
        min_freq: int = 1,
        max_size: int = 50_000,
    ) -> Vocab:
        counts = Counter(token for text in texts for token in tokenize(text, kind, lowercase))
        counts.pop(UNK, None)  # a [MASK] in the text: it keeps id 1
        # Most frequent first; ties broken by the token itself so the same data gives the same ids.
        ranked = sorted((t for t, n in counts.items() if n >= min_freq), key=lambda t: (-counts[t], t))
        return cls([PAD, UNK, *ranked[: max(0, max_size - 2)]], kind, lowercase)

    def __len__(self) -> int:
        return len(self.tokens)

    def encode(self, text: str) -> list[int]:
        get = self._ids.get
        return [get(t, 1) for t in tokenize(text, self.kind, self.lowercase)]

    def padded_ids(self, texts: Sequence[str], max_length: int, min_length: int = 1) -> list[list[int]]:
        """Ids cut at ``max_length``, right-padded with 0 to the batch's longest (at least ``min_length``)."""
        ids = [self.encode(text)[:max_length] for text in texts]
        width = max(min_length, *(len(row) for row in ids))
        return [row + [0] * (width - len(row)) for row in ids]

    def padded_array(self, texts: Sequence[str], max_length: int, min_length: int = 1) -> np.ndarray:
        """``padded_ids`` as a (batch, length) int64 array: what the ONNX student takes."""
        return np.array(self.padded_ids(texts, max_length, min_length), dtype=np.int64)

    def encode_batch(self, texts: Sequence[str], max_length: int, min_length: int = 1) -> torch.Tensor:
        import torch  # here, not at the top: the ONNX classifier reads vocabularies without torch

        # Through NumPy: torch.tensor on nested lists costs as much as tokenising them.
        return torch.from_numpy(self.padded_array(texts, max_length, min_length))

    @staticmethod
    def length_sorted_rows(texts: Sequence[str], batch_size: int) -> Iterator[list[int]]:
        """Row indices in batches of texts of similar length, so each batch pads little; callers
        write each batch's outputs back at these rows to return them in input order."""
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        for start in range(0, len(order), batch_size):
            yield order[start : start + batch_size]

    def to_dict(self) -> dict[str, Any]:
        return {"tokens": self.tokens, "kind": self.kind, "lowercase": self.lowercase}

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> Vocab:
        return cls(list(state["tokens"]), state["kind"], bool(state["lowercase"]))
