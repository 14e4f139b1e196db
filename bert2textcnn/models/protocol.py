"""What every model the framework trains or serves looks like, whatever its kind.

A scheme, the predictor, export and the benchmark talk to a model only through this surface, so a
new model kind (a TextCNN, a BERT as teacher or as student, …) is one file and one registry line.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar, NamedTuple, Protocol

import torch

from bert2textcnn.data.vocab import Vocab


class ModelOutput(NamedTuple):
    """What every model returns, so distillation code never cares which one ran."""

    logits: torch.Tensor  # (batch, classes)
    features: torch.Tensor  # (batch, hidden): the pooled representation the head reads, for hint losses
    hidden_states: tuple[torch.Tensor, ...] = ()  # per layer (batch, tokens, hidden), where a model has layers
    exit_layers: torch.Tensor | None = None  # (batch,): the layer each text left at, where a model exits early


class Classifier(Protocol):
    """A text classifier that brings its own tokenizer and can be rebuilt from its checkpoint."""

    kind: ClassVar[str]  # the registry name, e.g. ``textcnn`` or ``bert``
    default_lr: ClassVar[float]  # the peak AdamW learning rate this kind trains well at

    @property
    def feature_size(self) -> int:
        """Width of ``ModelOutput.features``."""
        ...

    def encode(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        """Raw texts to this model's keyword inputs, padded to the batch's longest text."""
        ...

    def __call__(self, **inputs: torch.Tensor) -> ModelOutput: ...

    def describe(self) -> dict[str, Any]:
        """Plain types (read back with ``weights_only``) that, with the weights, rebuild the model:
        its kind, sizes and tokenizer; ``encoder`` names the torch-free tokeniser that serves it
        (``vocab`` or ``wordpiece``, in ``inference/serving.py``)."""
        ...

    @classmethod
    def from_options(cls, vocab: Vocab, num_classes: int, max_length: int, options: Mapping[str, Any]) -> Classifier:
        """A new model sized by a scheme's hyper-parameters (``vocab``: the data's, for kinds that use it)."""
        ...

    @classmethod
    def from_description(cls, description: Mapping[str, Any], num_classes: int) -> Classifier:
        """An untrained model of the described shape, ready for ``load_state_dict``."""
        ...


def logits_in_order(model: Classifier, texts: Sequence[str], num_classes: int, batch_size: int = 64) -> torch.Tensor:
    """``model``'s logits for ``texts`` in their order."""
    logits = outputs_in_order(model, texts, lambda output, inputs: output.logits, batch_size)
    return logits if logits is not None else torch.empty(0, num_classes)


@torch.inference_mode()
def outputs_in_order(
    model: Classifier,
    texts: Sequence[str],
    pick: Callable[[ModelOutput, dict[str, torch.Tensor]], torch.Tensor],
    batch_size: int = 64,
) -> torch.Tensor | None:
    """What ``pick`` takes from ``model``'s output (given its inputs), one row per text in the
    texts' order, computed over batches of similar length: on short texts a batch in file order is
    mostly padding. None for no texts."""
    result = None
    for rows in Vocab.length_sorted_rows(texts, batch_size):
        inputs = model.encode([texts[i] for i in rows])
        values = pick(model(**inputs), inputs).float()
        if result is None:
            result = torch.empty(len(texts), *values.shape[1:])
        result[rows] = values
    return result
