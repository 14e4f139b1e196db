"""FastBERT (Liu et al. 2020; ``000``): a BERT with a classifier ("branch") after every layer, so an
easy text leaves after its first layers while a hard one goes on.

The branch after layer i < n is a light head on that layer's hidden states: their mask-aware mean,
then a small MLP (hidden → ``branch_hidden`` → classes). The paper's branch is a small attention
head; a mean over the tokens costs one pass over them, needs no parameters tied to positions, and
is the same pooling the hints use. After layer n the BERT's own classifier (pooler, dense) speaks:
the "teacher classifier" the branches learn from (``distill/schemes/fastbert.py``).

At inference with speed s > 0 the exit is batched and real: after each layer, the rows whose
branch is sure — normalised entropy u = −Σ p log p / log C below s — take that branch's answer
and leave the batch; the others, cut to their own longest text, go through the next layer. Rows
never sure take the final classifier. Outputs come back in input order, with each row's exit layer.
With s = 0 no row can leave (u ≥ 0), and the forward is the plain BERT's.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import torch
from torch import nn

from bert2textcnn.models.bert import BertClassifier, layer_hidden, masked_mean
from bert2textcnn.models.protocol import ModelOutput


class Branch(nn.Module):
    """One early classifier: mask-aware mean of a layer's hidden states, then a small MLP."""

    def __init__(self, hidden_size: int, branch_hidden: int, num_classes: int) -> None:
        super().__init__()
        self.head = nn.Sequential(
            nn.Linear(hidden_size, branch_hidden), nn.Tanh(), nn.Linear(branch_hidden, num_classes)
        )

    def forward(self, hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.head(masked_mean(hidden, attention_mask))


def normalised_entropy(logits: torch.Tensor) -> torch.Tensor:
    """u = −Σ p log p / log C per row: 0 for a one-hot distribution, 1 for a uniform one. In float64:
    in float32 two logits 3e-4 apart already give u = 1.0, so such a text would not leave even at
    speed 1, the fastest."""
    log_p = logits.double().log_softmax(dim=-1)
    return -(log_p.exp() * log_p).sum(-1) / math.log(logits.size(-1))


class FastBert(nn.Module):
    """A BERT classifier with a branch after each of its layers but the last."""

    kind: ClassVar[str] = "fastbert"
    default_lr: ClassVar[float] = BertClassifier.default_lr
    exportable: ClassVar[bool] = False  # early exit is a loop with data-dependent shapes (README, FastBERT)

    def __init__(self, backbone: BertClassifier, branch_hidden: int = 128, speed: float = 0.0) -> None:
        super().__init__()
        self.backbone, self.branch_hidden = backbone, branch_hidden
        config = backbone.model.config
        self.branches = nn.ModuleList(
            Branch(config.hidden_size, branch_hidden, config.num_labels) for _ in range(config.num_hidden_layers - 1)
        )
        self.speed = speed  # set per run (``--model.speed``), not a weight

    @property
    def layers(self) -> int:
        return len(self.backbone.model.base_model.encoder.layer)

    @property
    def max_length(self) -> int:
        return self.backbone.max_length

    @property
    def feature_size(self) -> int:
        return self.backbone.feature_size

    @classmethod
    def from_options(cls, vocab: object, num_classes: int, max_length: int, options: Mapping[str, Any]) -> FastBert:
        """Branches over the pre-trained folder's BERT, cut to ``student_layers`` when given."""
        bert = BertClassifier.from_directory(options["teacher"], num_classes, max_length, options["teacher_lowercase"])
        if options.get("student_layers"):
            bert.keep_layers(options["student_layers"], options["student_init"])
        return cls(bert, options["branch_hidden"])

    def describe(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "encoder": "wordpiece",
            "backbone": self.backbone.describe(),
            "branch_hidden": self.branch_hidden,
            "max_length": self.max_length,
        }

    @classmethod
    def from_description(cls, description: Mapping[str, Any], num_classes: int) -> FastBert:
        return cls(BertClassifier.from_description(description["backbone"], num_classes), description["branch_hidden"])

    def encode(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        return self.backbone.encode(texts)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> ModelOutput:
        """Training, or speed 0: the whole BERT and its final classifier. Otherwise early exit."""
        if self.training or self.speed <= 0:
            output = self.backbone(input_ids=input_ids, attention_mask=attention_mask)
            return output._replace(exit_layers=torch.full_like(input_ids[:, 0], self.layers))
        return self.exit_early(input_ids, attention_mask, self.speed)

    def branch_logits(self, hidden_states: Sequence[torch.Tensor], attention_mask: torch.Tensor) -> list[torch.Tensor]:
        """Every branch's logits, from a full forward's ``hidden_states`` (embeddings first)."""
        return [branch(hidden_states[i], attention_mask) for i, branch in enumerate(self.branches, start=1)]

    def final_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """The BERT's own classifier on the last layer's hidden states (as its forward computes it)."""
        model = self.backbone.model
        return model.classifier(model.dropout(model.base_model.pooler(hidden)))

    def exit_early(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, speed: float) -> ModelOutput:
        """Logits in input order; ``features``: each row's mean hidden state at its exit layer."""
        from transformers.masking_utils import create_bidirectional_mask

        bert = self.backbone.model.base_model
        rows = torch.arange(input_ids.size(0), device=input_ids.device)
        hidden, mask = bert.embeddings(input_ids=input_ids), attention_mask
        logits = hidden.new_empty(len(rows), self.backbone.model.config.num_labels)
        features = hidden.new_empty(len(rows), hidden.size(-1))
        exit_layers = torch.full_like(rows, self.layers)
        for depth, layer in enumerate(bert.encoder.layer, start=1):
            layer_mask = create_bidirectional_mask(config=bert.config, inputs_embeds=hidden, attention_mask=mask)
            hidden = layer_hidden(layer(hidden, attention_mask=layer_mask))
            if depth == self.layers:  # the rest take the final classifier
                logits[rows], features[rows] = self.final_logits(hidden), masked_mean(hidden, mask)
                break
            branch = self.branches[depth - 1](hidden, mask)
            leaving = normalised_entropy(branch) < speed
            if leaving.any():
                left = rows[leaving]
                logits[left], features[left] = branch[leaving], masked_mean(hidden[leaving], mask[leaving])
                exit_layers[left] = depth
                staying = ~leaving
                rows, hidden, mask = rows[staying], hidden[staying], mask[staying]
                if not len(rows):
                    break
                width = int(mask.any(0).nonzero().max()) + 1  # columns past it are padding in every row left
                hidden, mask = hidden[:, :width], mask[:, :width]
        return ModelOutput(logits, features, exit_layers=exit_layers)
