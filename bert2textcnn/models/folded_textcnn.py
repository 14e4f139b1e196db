"""A trained TextCNN with its convolutions folded into its embedding: the same outputs, no
multiply-adds left but the head's.

A convolution of width k over embedded tokens scores window t as Σ_j W_j · E[id_{t+j}], and
W_j · E[v] depends only on the token v: ``tables[k][j] = E @ W_jᵀ`` (vocabulary × filters) holds it
for every token. The convolution becomes k row lookups and k - 1 additions per window, where it
was k·embedding_dim multiply-adds per filter. On 2 cores this is about 3× the trained form's speed
in PyTorch, 4–7× through ONNX Runtime (README, Speed) — past the ceiling ``speed`` measures for the
convolutions as one matrix product.

The price is memory: each (width, offset) has its own table, Σ k times the embedding's width in
filters (9 × 128 for the default widths 2, 3, 4) per token — 17 MB for a 3.8k-character vocabulary.
``fold`` keeps the trained form where the tables would pass ``FOLD_LIMIT_BYTES``.

Inference only: the tables are a snapshot of the weights they were folded from.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from bert2textcnn.models.protocol import Classifier, ModelOutput
from bert2textcnn.models.textcnn import TextCNN, padded_with_lengths, valid_windows

log = logging.getLogger(__name__)
FOLD_LIMIT_BYTES = 512 * 2**20


class FoldedTextCNN(nn.Module):
    """``TextCNN``'s forward over lookup tables; built by ``fold`` from a trained one."""

    def __init__(self, student: TextCNN) -> None:
        super().__init__()
        self.source = [student]  # a list, not a submodule: its weights are not this module's
        self.kind, self.feature_size = student.kind, student.feature_size
        self.kernel_sizes, self.min_length = student.kernel_sizes, student.min_length
        vocabulary = student.embedding.num_embeddings
        with torch.no_grad():
            embedding = student.embedding.weight.detach()
            tables = []
            for conv in student.convs:
                per_offset = [embedding @ conv.weight[:, :, j].T for j in range(conv.kernel_size[0])]
                # The first offset's table carries the bias, and one row past the vocabulary, -inf:
                # where a window is invalid its first id is replaced by that row, so its score is
                # -inf and max-pooling skips it without a mask over (batch, windows, filters).
                invalid = per_offset[0].new_full((1, conv.out_channels), -torch.inf)
                per_offset[0] = torch.cat([per_offset[0] + conv.bias, invalid])
                tables += [nn.Parameter(table.contiguous(), requires_grad=False) for table in per_offset]
        self.tables = nn.ParameterList(tables)
        self.head = student.head
        self.invalid_id = vocabulary

    def encode(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        return self.source[0].encode(texts)

    def describe(self) -> dict[str, Any]:
        return self.source[0].describe()

    def forward(self, input_ids: torch.Tensor) -> ModelOutput:
        """As ``TextCNN.forward``: the same windows kept, the same pooling, the same head."""
        input_ids, lengths = padded_with_lengths(input_ids, self.min_length)
        pooled, table = [], 0
        # Each graph node costs ONNX Runtime about a microsecond at batch 1, a tenth of the
        # forward: one Where per width for the mask, the bias in the tables, one relu for all.
        for width in self.kernel_sizes:
            windows = input_ids.size(1) - width + 1
            first = torch.where(valid_windows(lengths, width, windows), input_ids[:, :windows], self.invalid_id)
            scores = nn.functional.embedding(first, self.tables[table])  # (batch, windows, filters)
            for j in range(1, width):
                scores = scores + nn.functional.embedding(input_ids[:, j : j + windows], self.tables[table + j])
            pooled.append(scores.amax(dim=1))
            table += width
        features = torch.cat(pooled, dim=1).relu()  # max(relu(a)) == relu(max(a)), as in TextCNN
        return ModelOutput(self.head(features), features)


def fold(student: Classifier) -> Classifier:
    """The fastest exact form of a trained student for inference: a TextCNN folded (unless its
    tables would pass ``FOLD_LIMIT_BYTES``), any other kind as it is. Switched to eval mode."""
    student = student.eval()
    if not isinstance(student, TextCNN):
        return student
    size = 4 * student.embedding.num_embeddings * sum(c.kernel_size[0] * c.out_channels for c in student.convs)
    if size > FOLD_LIMIT_BYTES:
        log.info("TextCNN not folded: its tables would take %.0f MB (limit %.0f MB)", size / 2**20,
                 FOLD_LIMIT_BYTES / 2**20)  # fmt: skip
        return student
    return FoldedTextCNN(student).eval()
