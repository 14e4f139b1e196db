"""Grow a transfer set from the labelled texts when there is no unlabelled pool.

The recipe of Tang et al. 2019 ("Distilling Task-Specific Knowledge from BERT into Simple Neural
Networks", §3.3), adapted to Chinese with jieba's part-of-speech tagger. Each copy of a text:

1. with probability ``ngram_rate`` is cut to a random window of 1 … ``ngram_max`` words;
2. then, word by word: with probability ``mask_rate`` the word becomes ``[MASK]`` (``<unk>`` for
   the student, BERT's ``[MASK]`` for the teacher); else with probability ``pos_rate`` it is
   replaced by another word with the same part of speech from the labelled texts.

Copies carry no label: the teacher labels each one. A copy always keeps at least one real word,
copies equal to their source are dropped, and the result depends only on the seed and the text.
"""

from __future__ import annotations

import logging
import random
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache

from bert2textcnn.data.vocab import MASK, quiet_jieba
from bert2textcnn.errors import UserError

log = logging.getLogger(__name__)

Word = tuple[str, str]  # (word, part-of-speech flag)
UNTAGGED = "x"  # jieba's flag for punctuation, spaces and symbols: never replaced


@dataclass(frozen=True)
class Augmentation:
    """Options of ``--data.augment`` (Tang et al.'s defaults, except the number of copies)."""

    copies: int = 10  # augmented copies per labelled text (fewer when some repeat)
    mask_rate: float = 0.1  # chance a word is masked
    pos_rate: float = 0.1  # chance a word is swapped for another of the same part of speech
    ngram_rate: float = 0.25  # chance a copy is cut to a window of words
    ngram_max: int = 5  # longest window, in words

    def __post_init__(self) -> None:
        if self.copies < 1 or self.ngram_max < 1:
            raise UserError("--data.augment: copies and ngram_max must be at least 1")
        rates = {"mask_rate": self.mask_rate, "pos_rate": self.pos_rate, "ngram_rate": self.ngram_rate}
        if any(not 0 <= rate <= 1 for rate in rates.values()) or self.mask_rate + self.pos_rate > 1:
            raise UserError(f"--data.augment: rates must lie in [0, 1] and mask_rate + pos_rate ≤ 1, got {rates}")


@cache
def _posseg():
    quiet_jieba()  # before jieba.posseg loads its dictionary
    from jieba import posseg

    return posseg


def tag(text: str) -> list[Word]:
    return [(pair.word, pair.flag) for pair in _posseg().cut(text)]


def augment(texts: Sequence[str], options: Augmentation, seed: int) -> list[str]:
    """Up to ``options.copies`` augmented copies of each text, in order, none empty."""
    tagged = [tag(text) for text in texts]
    inventory: dict[str, list[str]] = defaultdict(list)
    for words in tagged:
        for word, flag in words:
            if flag != UNTAGGED and word.strip():
                inventory[flag].append(word)
    same_pos = {flag: sorted(set(words)) for flag, words in inventory.items()}
    copies: list[str] = []
    for text, words in zip(texts, tagged, strict=True):
        seen = {text}
        for copy in range(options.copies):
            rng = random.Random(f"{seed}/{copy}/{text}")  # str seeds hash with SHA-512: stable across runs
            new = _augment_one(words, same_pos, options, rng)
            if new not in seen:
                seen.add(new)
                copies.append(new)
    log.info("Augmented %d labelled texts into %d unlabelled copies", len(texts), len(copies))
    return copies


def _augment_one(words: list[Word], same_pos: dict[str, list[str]], options: Augmentation, rng: random.Random) -> str:
    content = [i for i, (word, _) in enumerate(words) if word.strip()]
    if rng.random() < options.ngram_rate and len(content) > 1:
        size = rng.randint(1, options.ngram_max)
        start = rng.choice(content)  # a window opening on a real word is never blank
        words = words[start : start + size]
        content = [i for i, (word, _) in enumerate(words) if word.strip()]
    out = [word for word, _ in words]
    masked = []
    for i in content:
        flag = words[i][1]
        draw = rng.random()
        if draw < options.mask_rate:
            out[i] = MASK
            masked.append(i)
        elif draw < options.mask_rate + options.pos_rate and flag != UNTAGGED and len(same_pos.get(flag, ())) > 1:
            out[i] = rng.choice(same_pos[flag])
    if masked and len(masked) == len(content):  # every word masked: give one back
        keep = rng.choice(masked)
        out[keep] = words[keep][0]
    return "".join(out).strip()
