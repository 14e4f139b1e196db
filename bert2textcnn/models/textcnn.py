"""TextCNN (Kim 2014): embeddings, parallel 1-D convolutions, max-over-time pooling, linear head,
over the data's own character or jieba-word vocabulary."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import torch
from torch import nn

from bert2textcnn.data.vocab import Vocab
from bert2textcnn.models.protocol import ModelOutput


class TextCNN(nn.Module):
    kind: ClassVar[str] = "textcnn"
    default_lr: ClassVar[float] = 1e-3

    def __init__(
        self,
        vocab: Vocab,
        num_classes: int,
        max_length: int = 128,
        embedding_dim: int = 128,
        kernel_sizes: Sequence[int] = (2, 3, 4),
        num_filters: int = 128,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        self.vocab, self.max_length = vocab, max_length
        self.embedding = nn.Embedding(len(vocab), embedding_dim, padding_idx=0)
        self.convs = nn.ModuleList(nn.Conv1d(embedding_dim, num_filters, k) for k in kernel_sizes)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(num_filters * len(kernel_sizes), num_classes)
        self.kernel_sizes = tuple(kernel_sizes)
        # Inputs shorter than the widest kernel would leave it nothing to convolve: pad to this.
        self.min_length = max(kernel_sizes)

    @property
    def feature_size(self) -> int:
        return self.head.in_features

    @classmethod
    def from_options(cls, vocab: Vocab, num_classes: int, max_length: int, options: Mapping[str, Any]) -> TextCNN:
        """The student a scheme's hyper-parameters describe."""
        sizes = {k: options[k] for k in ("embedding_dim", "kernel_sizes", "num_filters", "dropout")}
        return cls(vocab, num_classes, max_length, **sizes)

    def describe(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "encoder": "vocab",  # how serving tokenises for it (inference/serving.py)
            "vocab": self.vocab.to_dict(),
            "max_length": self.max_length,
            "min_length": self.min_length,
            "embedding_dim": self.embedding.embedding_dim,
            "kernel_sizes": list(self.kernel_sizes),
            "num_filters": self.convs[0].out_channels,
            "dropout": self.dropout.p,
        }

    @classmethod
    def from_description(cls, description: Mapping[str, Any], num_classes: int) -> TextCNN:
        return cls.from_options(
            Vocab.from_dict(description["vocab"]), num_classes, int(description["max_length"]), description
        )

    def encode(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        return {"input_ids": self.vocab.encode_batch(texts, self.max_length, self.min_length)}

    def forward(self, input_ids: torch.Tensor) -> ModelOutput:
        """``input_ids`` (batch, length), right-padded with id 0.

        Windows that start past a text's last full window are masked before max-pooling, so a
        text's output does not depend on how much padding its batch gives it (a window over
        padding alone would otherwise pool relu(bias)).
        """
        input_ids, lengths = padded_with_lengths(input_ids, self.min_length)
        x = self.embedding(input_ids).transpose(1, 2)  # (batch, dim, length) for Conv1d
        pooled = []
        for conv, width in zip(self.convs, self.kernel_sizes, strict=True):
            scores = conv(x)  # (batch, filters, windows)
            valid = valid_windows(lengths, width, scores.size(2))
            # max(relu(a)) == relu(max(a)): pool first, so relu runs on (batch, filters), not on
            # every window; masked windows are -inf, and every row keeps one valid window.
            pooled.append(scores.masked_fill_(~valid.unsqueeze(1), float("-inf")).amax(dim=2).relu())
        features = torch.cat(pooled, dim=1)
        return ModelOutput(self.head(self.dropout(features)), features)


def padded_with_lengths(input_ids: torch.Tensor, min_length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``input_ids`` right-padded to at least ``min_length``, and each row's token count (batch, 1)."""
    if input_ids.size(1) < min_length:
        input_ids = nn.functional.pad(input_ids, (0, min_length - input_ids.size(1)))
    return input_ids, (input_ids != 0).sum(dim=1, keepdim=True)


def valid_windows(lengths: torch.Tensor, width: int, windows: int) -> torch.Tensor:
    """(batch, windows): the windows of ``width`` that lie within each text; a text shorter than
    ``width`` keeps its first window, so every row has one."""
    return torch.arange(windows, device=lengths.device) < (lengths - width + 1).clamp(min=1)
