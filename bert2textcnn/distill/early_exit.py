"""What val and test show of a model that exits early (FastBERT): every exit's own macro-F1, each
classifier scoring every text, and where the texts left at the run's speed."""

from __future__ import annotations

from collections.abc import Sequence

import lightning as L
import torch

from bert2textcnn.distill.metrics import ClassificationMetrics


class ExitScores:
    """Per stage: a ``ClassificationMetrics`` per exit (layer 1 … n), and how many texts left at each."""

    def __init__(self, labels: Sequence[str]) -> None:
        self.labels = list(labels)
        self.metrics: list[ClassificationMetrics] = []  # sized at the first update: the model's layers
        self.exits = torch.zeros(0, dtype=torch.long)

    def update(self, layer_logits: Sequence[torch.Tensor], exit_layers: torch.Tensor, labels: torch.Tensor) -> None:
        if len(self.metrics) != len(layer_logits):
            self.metrics = [ClassificationMetrics(self.labels) for _ in layer_logits]
            self.exits = torch.zeros(len(layer_logits), dtype=torch.long)
        for metrics, logits in zip(self.metrics, layer_logits, strict=True):
            metrics.to(logits.device).update(logits, labels)
        self.exits += torch.bincount(exit_layers.cpu() - 1, minlength=len(self.metrics))

    def finish(self, module: L.LightningModule, stage: str) -> dict[str, float]:
        """Log ``{stage}/layer{i}_macro_f1``, their mean ``{stage}/layers_macro_f1`` (what a FastBERT
        run selects its checkpoint on: it moves in both stages), ``{stage}/avg_layers`` and
        ``{stage}/exit_share_layer{i}``; reset. The logged values, by name."""
        if not self.metrics or self.exits.sum() == 0:
            return {}
        scores = {f"{stage}/layer{i}_macro_f1": m.compute()["macro_f1"].item() for i, m in enumerate(self.metrics, 1)}
        scores[f"{stage}/layers_macro_f1"] = sum(scores.values()) / len(scores)
        shares = self.exits.double() / self.exits.sum()
        scores[f"{stage}/avg_layers"] = float((shares * torch.arange(1, len(shares) + 1)).sum())
        scores |= {f"{stage}/exit_share_layer{i}": float(share) for i, share in enumerate(shares, 1)}
        module.log_dict(scores, sync_dist=True)
        for metrics in self.metrics:
            metrics.reset()
        self.exits.zero_()
        return scores


def exit_summary(scores: dict[str, float], stage: str, speed: float) -> str:
    """One paragraph for the test report."""
    layers = sum(key.startswith(f"{stage}/exit_share_layer") for key in scores)
    shares = ", ".join(f"{i}: {scores[f'{stage}/exit_share_layer{i}']:.1%}" for i in range(1, layers + 1))
    per_layer = ", ".join(f"{i}: {scores[f'{stage}/layer{i}_macro_f1']:.4f}" for i in range(1, layers + 1))
    return (
        f"Early exit at speed {speed}: {scores[f'{stage}/avg_layers']:.2f} of {layers} layers run on average "
        f"(texts leaving at layer {shares})\nMacro-F1 of each exit on every text: {per_layer}"
    )
