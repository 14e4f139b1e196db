"""TextCNN (Kim 2014): embeddings, parallel 1-D convolutions, max-over-time pooling, linear head."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import torch
from torch import nn


class ModelOutput(NamedTuple):
    """What every model in the project returns, so distillation code never cares which one ran."""

    logits: torch.Tensor  # (batch, classes)
    features: torch.Tensor  # (batch, hidden): pooled representation, for hint losses


class TextCNN(nn.Module):
    def __init__(
        self,
        vocab_size: int,
        num_classes: int,
        embedding_dim: int = 128,
        kernel_sizes: tuple[int, ...] = (2, 3, 4),
        num_filters: int = 128,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embedding_dim, padding_idx=0)
        self.convs = nn.ModuleList(nn.Conv1d(embedding_dim, num_filters, k) for k in kernel_sizes)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(num_filters * len(kernel_sizes), num_classes)
        self.kernel_sizes = tuple(kernel_sizes)
        # Inputs shorter than the widest kernel would leave it nothing to convolve: pad to this.
        self.min_length = max(kernel_sizes)

    def forward(self, input_ids: torch.Tensor) -> ModelOutput:
        """``input_ids`` (batch, length), right-padded with id 0.

        Windows that start past a text's last full window are masked before max-pooling, so a
        text's output does not depend on how much padding its batch gives it (a window over
        padding alone would otherwise pool relu(bias)).
        """
        if input_ids.size(1) < self.min_length:
            input_ids = nn.functional.pad(input_ids, (0, self.min_length - input_ids.size(1)))
        lengths = (input_ids != 0).sum(dim=1, keepdim=True)  # (batch, 1)
        x = self.embedding(input_ids).transpose(1, 2)  # (batch, dim, length) for Conv1d
        pooled = []
        for conv, width in zip(self.convs, self.kernel_sizes, strict=True):
            scores = conv(x)  # (batch, filters, windows)
            windows = torch.arange(scores.size(2), device=input_ids.device)
            valid = windows < (lengths - width + 1).clamp(min=1)  # a short text keeps its first window
            # max(relu(a)) == relu(max(a)): pool first, so relu runs on (batch, filters), not on
            # every window; masked windows are -inf, and every row keeps one valid window.
            pooled.append(scores.masked_fill_(~valid.unsqueeze(1), float("-inf")).amax(dim=2).relu())
        features = torch.cat(pooled, dim=1)
        return ModelOutput(self.head(self.dropout(features)), features)


def student_from_hparams(vocab_size: int, num_classes: int, hparams: Mapping[str, Any]) -> TextCNN:
    """The student a scheme's hyper-parameters describe (training and standalone prediction alike)."""
    return TextCNN(
        vocab_size,
        num_classes,
        hparams["embedding_dim"],
        tuple(hparams["kernel_sizes"]),
        hparams["num_filters"],
        hparams["dropout"],
    )
