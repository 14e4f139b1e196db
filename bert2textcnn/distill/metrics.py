"""Classification metrics for one model on one split, and the ways we show them."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torchmetrics import CatMetric, ConfusionMatrix, Metric
from torchmetrics.utilities import dim_zero_cat


class ClassificationMetrics(nn.Module):
    """Accumulates a confusion matrix, from which every reported figure derives exactly, and the
    probabilities themselves, for precision–recall curves (both synchronised across processes unless
    built with ``synchronised=False``)."""

    def __init__(self, labels: Sequence[str], synchronised: bool = True) -> None:
        """``synchronised=False`` for figures one process computes alone: a synchronised compute
        there would wait forever for the other processes (DDP)."""
        super().__init__()
        self.labels = list(labels)
        sync = {"sync_on_compute": synchronised}
        self.confusion = ConfusionMatrix(task="multiclass", num_classes=len(self.labels), **sync)
        self.probabilities, self.targets = CatMetric(**sync), CatMetric(**sync)

    def update(self, logits: torch.Tensor, target: torch.Tensor) -> None:
        self.confusion.update(logits.argmax(dim=-1), target)
        self.probabilities.update(logits.detach().float().softmax(dim=-1))
        self.targets.update(target)

    def reset(self) -> None:
        for metric in (self.confusion, self.probabilities, self.targets):
            metric.reset()

    def curve_inputs(self, positive_index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(is positive, probability of the positive class) per row, for ``add_pr_curve``."""
        probabilities = dim_zero_cat(self.probabilities.compute())
        targets = dim_zero_cat(self.targets.compute())
        return targets == positive_index, probabilities[:, positive_index]

    def compute(self) -> dict[str, torch.Tensor]:
        """accuracy, macro_f1, and precision/recall/f1/support per class (rows are true labels)."""
        cm = self.confusion.compute().double()
        true_positive = cm.diag()
        support, predicted = cm.sum(dim=1), cm.sum(dim=0)
        precision = true_positive / predicted.clamp(min=1)
        recall = true_positive / support.clamp(min=1)
        f1 = 2 * precision * recall / (precision + recall).clamp(min=1e-12)
        return {
            "accuracy": true_positive.sum() / cm.sum().clamp(min=1),
            "macro_f1": f1.mean(),
            "precision": precision,
            "recall": recall,
            "f1": f1,
            "support": support,
            "confusion": cm,
        }

    def scalars(self, values: dict[str, torch.Tensor], prefix: str) -> dict[str, float]:
        """Flatten to loggable scalars: ``{prefix}macro_f1``, ``{prefix}precision_spam``, ..."""
        flat = {f"{prefix}accuracy": values["accuracy"].item(), f"{prefix}macro_f1": values["macro_f1"].item()}
        for name in ("precision", "recall", "f1"):
            for label, value in zip(self.labels, values[name].tolist(), strict=True):
                flat[f"{prefix}{name}_{label}"] = value
        return flat

    def report(self, values: dict[str, torch.Tensor], title: str) -> str:
        """A per-class table in the spirit of scikit-learn's classification_report."""
        width = max(12, *(len(label) for label in self.labels))
        lines = [title, f"{'':>{width}}  precision  recall  f1-score  support"]
        for i, label in enumerate(self.labels):
            lines.append(
                f"{label:>{width}}  {values['precision'][i]:9.4f}  {values['recall'][i]:6.4f}"
                f"  {values['f1'][i]:8.4f}  {int(values['support'][i]):7d}"
            )
        total = int(values["support"].sum())
        lines.append(f"{'accuracy':>{width}}  {'':9}  {'':6}  {values['accuracy']:8.4f}  {total:7d}")
        lines.append(
            f"{'macro avg':>{width}}  {values['precision'].mean():9.4f}  "
            f"{values['recall'].mean():6.4f}  {values['macro_f1']:8.4f}  {total:7d}"
        )
        return "\n".join(lines)

    def figure(self, values: dict[str, torch.Tensor], title: str):
        """Confusion matrix as a matplotlib figure (counts in each cell), for TensorBoard."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        cm = values["confusion"].cpu().numpy()
        fig, ax = plt.subplots(figsize=(1.2 + 1.1 * len(self.labels), 1.0 + 1.0 * len(self.labels)))
        ax.imshow(cm, cmap="Blues")
        ticks = range(len(self.labels))
        ax.set_xticks(ticks, self.labels, rotation=45, ha="right")
        ax.set_yticks(ticks, self.labels)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(title)
        for i in ticks:
            for j in ticks:
                color = "white" if cm[i, j] > cm.max() / 2 else "black"
                ax.text(j, i, f"{int(cm[i, j])}", ha="center", va="center", color=color)
        fig.tight_layout()
        return fig


class CompatibilityMetrics(Metric):
    """How a new model's predictions relate to an old (production) model's on the same rows.

    coverage: of the rows the old model correctly flagged as positive (spam), the share the new
    model flags too (NaN when the old model has no such hit). negative_flip_rate: old right and
    new wrong, over all rows (Yan et al. 2021, "Positive-Congruent Training").
    positive_flip_rate: old wrong and new right. agreement: both predict the same class.
    """

    full_state_update = False

    def __init__(self, positive_index: int) -> None:
        super().__init__()
        self.positive_index = positive_index
        for name in ("rows", "old_hits", "kept_hits", "negative_flips", "positive_flips", "agreements"):
            self.add_state(name, default=torch.tensor(0), dist_reduce_fx="sum")

    def update(self, new_logits: torch.Tensor, old_logits: torch.Tensor, target: torch.Tensor) -> None:
        new, old = new_logits.argmax(-1), old_logits.argmax(-1)
        old_right, new_right = old == target, new == target
        old_hit = old_right & (old == self.positive_index)
        self.rows += target.numel()
        self.old_hits += old_hit.sum()
        self.kept_hits += (old_hit & (new == self.positive_index)).sum()
        self.negative_flips += (old_right & ~new_right).sum()
        self.positive_flips += (~old_right & new_right).sum()
        self.agreements += (new == old).sum()

    def compute(self) -> dict[str, torch.Tensor]:
        rows = self.rows.clamp(min=1).double()
        # With no old hits there is nothing to cover: NaN says so, where 0 would claim a regression.
        coverage = self.kept_hits / self.old_hits.double() if self.old_hits > 0 else torch.tensor(float("nan"))
        return {
            "coverage": coverage,
            "negative_flip_rate": self.negative_flips / rows,
            "positive_flip_rate": self.positive_flips / rows,
            "agreement": self.agreements / rows,
        }
