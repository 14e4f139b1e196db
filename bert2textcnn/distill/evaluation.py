"""Evaluation of every model a scheme holds, on validation and test: per-class metrics, the
TensorBoard figures (confusion matrix, precision–recall curve), the HParams tab's columns, the
comparison with an old model and the printed test report. A collaborator of the training module,
which keeps only what trains."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.loggers import TensorBoardLogger
from torch import nn

from bert2textcnn.distill.metrics import ClassificationMetrics, CompatibilityMetrics
from bert2textcnn.errors import UserError

STAGES = ("val", "test")


def positive_index(labels: Sequence[str], positive_label: str | None) -> int:
    """The class whose hits "coverage" counts: ``spam`` if it is a label, else the last label."""
    if positive_label is None:
        return labels.index("spam") if "spam" in labels else len(labels) - 1
    if positive_label not in labels:
        raise UserError(f"--model.positive_label {positive_label!r} is not one of the labels {list(labels)}")
    return labels.index(positive_label)


class Evaluation(nn.Module):
    def __init__(self, labels: Sequence[str], roles: Sequence[str], positive: int) -> None:
        super().__init__()
        self.labels, self.positive = list(labels), positive
        self.metrics = nn.ModuleDict(
            {f"{stage}_{role}": ClassificationMetrics(self.labels) for stage in STAGES for role in roles}
        )
        self.compatibility = nn.ModuleDict({stage: CompatibilityMetrics(positive) for stage in STAGES})

    def update(self, module: L.LightningModule, stage: str, logits: dict[str, torch.Tensor], batch: dict) -> None:
        """One batch of each model's logits; the student's are also compared with the old model's."""
        labels = batch["label"]
        for role, role_logits in logits.items():
            self.metrics[f"{stage}_{role}"].update(role_logits, labels)
            loss = F.cross_entropy(role_logits, labels)
            module.log(f"{stage}/loss_ce_{role}", loss, batch_size=len(labels), sync_dist=True)
            if role == "student" and "reference_logits" in batch:
                known = batch["reference_mask"]
                self.compatibility[stage].update(role_logits[known], batch["reference_logits"][known], labels[known])

    def finish(self, module: L.LightningModule, stage: str) -> dict[str, dict[str, torch.Tensor]]:
        """Log the stage's figures and reset; the computed values per role (and ``compatibility``)."""
        results = {}
        positive_label = self.labels[self.positive]
        for key, metrics in self.metrics.items():
            if not key.startswith(stage) or metrics.confusion.update_count == 0:
                continue
            role = key.split("_", 1)[1]
            values = metrics.compute()
            scalars = metrics.scalars(values, f"{stage}/{role}_")
            macro_f1 = f"{stage}/{role}_macro_f1"
            # The metrics hold every process's rows already (torchmetrics syncs their states), so
            # sync_dist only averages equal values; it keeps Lightning's multi-process checks quiet.
            module.log(macro_f1, scalars[macro_f1], prog_bar=True, sync_dist=True)
            module.log_dict({k: v for k, v in scalars.items() if k != macro_f1}, sync_dist=True)
            if stage == "val":  # the HParams tab's columns, so runs of every scheme line up
                recall = scalars[f"{stage}/{role}_recall_{positive_label}"]
                module.log_dict({f"hp/{role}_macro_f1": scalars[macro_f1], f"hp/{role}_recall": recall}, sync_dist=True)
            if isinstance(module.logger, TensorBoardLogger) and not module.trainer.sanity_checking:
                board, step = module.logger.experiment, module.global_step
                figure = metrics.figure(values, f"{role} · {stage} · epoch {module.current_epoch}")
                board.add_figure(f"{stage}/{role}_confusion_matrix", figure, step)
                is_positive, score = metrics.curve_inputs(self.positive)
                board.add_pr_curve(f"{stage}/{role}_pr_curve_{positive_label}", is_positive, score, step)
            metrics.reset()
            results[role] = values
        compatibility = self.compatibility[stage]
        if compatibility.update_count:
            values = compatibility.compute()
            module.log_dict({f"{stage}/compat_{name}": value for name, value in values.items()}, sync_dist=True)
            results["compatibility"] = values
            compatibility.reset()
        return results

    def print_test_report(self, results: dict[str, Any], scheme: str, reference: str | None) -> None:
        compatibility = results.pop("compatibility", None)
        for role, values in results.items():
            print("\n" + self.metrics[f"test_{role}"].report(values, f"Test report · {role} ({scheme})"))
        if compatibility is not None:
            print(f"\nStudent vs {reference} (old model):")
            for name, value in compatibility.items():
                print(f"  {name.replace('_', ' '):<20} {value.item():.4f}")
