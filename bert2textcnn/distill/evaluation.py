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

    def compare_with_each(self, parts: int) -> None:
        """Several old models: beside their ensemble, a comparison with each (``old1``, …); none for one."""
        for stage in STAGES:
            for k in range(1, parts + 1):
                self.compatibility[f"{stage}_old{k}"] = CompatibilityMetrics(self.positive)

    def update(self, module: L.LightningModule, stage: str, logits: dict[str, torch.Tensor], batch: dict) -> None:
        """One batch of each model's logits; the student's are also compared with the old model's."""
        labels = batch["label"]
        for role, role_logits in logits.items():
            self.metrics[f"{stage}_{role}"].update(role_logits, labels)
            loss = F.cross_entropy(role_logits, labels)
            module.log(f"{stage}/loss_ce_{role}", loss, batch_size=len(labels), sync_dist=True)
            if role == "student" and "reference_logits" in batch:
                references = [(stage, batch["reference_logits"], batch["reference_mask"])]
                references += [(f"{stage}_old{k}", *part) for k, part in enumerate(batch.get("reference_parts", []), 1)]
                for key, reference, known in references:
                    self.compatibility[key].update(role_logits[known], reference[known], labels[known])

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
        for key, compatibility in self.compatibility.items():
            if key.split("_")[0] != stage or not compatibility.update_count:
                continue
            part = key.removeprefix(stage).lstrip("_")  # "" for the reference (or ensemble), "old1", …
            values = compatibility.compute()
            prefix = f"{stage}/compat_{part}_" if part else f"{stage}/compat_"
            module.log_dict({prefix + name: value for name, value in values.items()}, sync_dist=True)
            results["compatibility" + (f"_{part}" if part else "")] = values
            compatibility.reset()
        return results

    def print_test_report(self, results: dict[str, Any], scheme: str, reference: str | None, parts: list[str]) -> None:
        """Each model's per-class table, then the student against the old model(s): the reference
        (an ensemble's average) first, then each part of an ensemble."""
        compared = {key: results.pop(key) for key in [k for k in results if k.startswith("compatibility")]}
        for role, values in results.items():
            print("\n" + self.metrics[f"test_{role}"].report(values, f"Test report · {role} ({scheme})"))
        names = {"compatibility": reference} | {f"compatibility_old{k}": p for k, p in enumerate(parts, 1)}
        for key, values in compared.items():
            print(f"\nStudent vs {names[key]} (old model):")
            for name, value in values.items():
                print(f"  {name.replace('_', ' '):<20} {value.item():.4f}")
