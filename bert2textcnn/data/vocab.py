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
# From this many texts a batch's characters are looked up at once: NumPy's fixed cost per call
# loses to a Python loop below it (SMS dev, side by side, busy machine: 1 text 30 vs 118 µs, 8 texts even,
# 64 texts 2.3 ms vs 0.37 ms).
BATCHED_FROM = 8


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
    _table: np.ndarray | None = field(init=False, repr=False, default=None)  # a char vocabulary's lookup

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
        """``padded_ids`` as a (batch, length) int64 array: what the ONNX student takes. Characters
        of a batch of ``BATCHED_FROM`` texts or more are looked up all at once (``batched_char_ids``);
        jieba words, texts with a ``[MASK]`` marker and smaller batches go through ``tokenize``."""
        if self.kind == "char" and len(texts) >= BATCHED_FROM and not any(MASK in text for text in texts):
            return self.batched_char_ids(texts, max_length, min_length)
        return np.array(self.padded_ids(texts, max_length, min_length), dtype=np.int64)

    def batched_char_ids(self, texts: Sequence[str], max_length: int, min_length: int) -> np.ndarray:
        """The batch as one array of code points, mapped through a code point → id table (-1:
        whitespace, dropped), then scattered into rows: the same ids as ``padded_ids``."""
        table = self.char_table()
        texts = [text.lower() for text in texts] if self.lowercase else texts  # each alone: Greek final sigma
        lengths = [len(text) for text in texts]
        points = np.frombuffer("".join(texts).encode("utf-32-le"), dtype=np.uint32)
        ids = np.where(points < len(table), table[np.minimum(points, len(table) - 1)], 1)
        kept = ids >= 0
        kept_before = np.concatenate([[0], np.cumsum(kept)])  # kept characters before each position
        starts = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        rows = np.repeat(np.arange(len(texts)), lengths)
        position = kept_before[:-1] - kept_before[starts[:-1]][rows]
        width = max(min_length, min(max_length, int(np.diff(kept_before[starts]).max())))
        out = np.zeros((len(texts), width), dtype=np.int64)
        chosen = kept & (position < max_length)
        out[rows[chosen], position[chosen]] = ids[chosen]
        return out

    def char_table(self) -> np.ndarray:
        """Code point → id (1 for unseen characters, -1 for whitespace), built once."""
        if self._table is None:
            chars = [token for token in self.tokens[2:] if len(token) == 1]
            size = max([0x3000, *map(ord, chars)]) + 1  # U+3000 is the highest whitespace code point
            table = np.ones(size, dtype=np.int64)
            table[[c for c in range(size) if chr(c).isspace()]] = -1
            table[[ord(c) for c in chars]] = [self._ids[c] for c in chars]
            self._table = table
        return self._table

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
