"""AdamW for each trained model, with linear warm-up then linear decay over the run's batches."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import lightning as L
import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR

from bert2textcnn.errors import UserError


def adamw_with_schedule(
    modules: dict[str, nn.Module],
    lrs: dict[str, float],
    per_optimizer: Sequence[Sequence[str]],
    run_batches: int,
    warmup_ratio: float,
    weight_decay: float,
    spans: dict[str, tuple[int, int]] | None = None,
) -> Any:
    """One AdamW per entry of ``per_optimizer`` (the models it steps; a param group pair each, at
    the model's own learning rate), in Lightning's ``configure_optimizers`` format. A model trains
    over the whole run, or over its ``spans`` entry (first batch, batches): a phase of the run, its
    learning rate 0 outside it. Every scheduler steps once per batch."""
    spans = spans or {}
    configs = []
    for roles in per_optimizer:
        groups, schedules = [], []
        for role in roles:
            role_groups = decay_groups(modules[role], lrs[role], role, weight_decay)
            groups += role_groups
            schedules += [warmup_then_decay(*spans.get(role, (0, run_batches)), warmup_ratio)] * len(role_groups)
        optimizer = torch.optim.AdamW(groups)
        scheduler = LambdaLR(optimizer, schedules)
        configs.append(
            {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step", "name": "lr"}}
        )
    return configs[0] if len(configs) == 1 else configs


def training_batches(trainer: L.Trainer, optimizer_steps_per_batch: int) -> int:
    """Batches this run trains on, to size the schedules. Lightning's ``max_steps`` counts
    optimizer steps, so a scheme stepping two optimizers per batch trains ``max_steps / 2``
    batches (Lightning #17958); ``max_epochs`` counts batches as usual."""
    by_steps = math.ceil(trainer.max_steps / optimizer_steps_per_batch) if trainer.max_steps != -1 else math.inf
    if trainer.max_epochs in (None, -1):
        if by_steps == math.inf:
            raise UserError("set --trainer.max_epochs or --trainer.max_steps: the schedule needs a length")
        return by_steps
    trainer.estimated_stepping_batches  # noqa: B018  # loads the train data, so its length is known
    by_epochs = math.ceil(trainer.num_training_batches / trainer.accumulate_grad_batches) * trainer.max_epochs
    return max(1, min(by_epochs, by_steps))


def decay_groups(module: nn.Module, lr: float, name: str, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW parameter groups: weight decay on matrices, none on biases and LayerNorm weights
    (every parameter of fewer than two dimensions), as BERT was trained."""
    params = [p for p in module.parameters() if p.requires_grad]
    return [
        {"params": [p for p in params if p.ndim >= 2], "lr": lr, "name": name, "weight_decay": weight_decay},
        {"params": [p for p in params if p.ndim < 2], "lr": lr, "name": f"{name}_no_decay", "weight_decay": 0.0},
    ]


def warmup_then_decay(first: int, total: int, warmup_ratio: float):
    """The factor on the learning rate at each batch of the run: 0 before batch ``first``, a linear
    warm-up over ``warmup_ratio`` of the next ``total`` batches, then a linear decay to 0."""
    warmup = int(total * warmup_ratio)

    def factor(batch: int) -> float:
        step = batch - first
        if step < 0:
            return 0.0
        if step < warmup:
            return (step + 1) / (warmup + 1)
        return max(0.0, (total - step) / max(1, total - warmup))

    return factor
