"""Stop before a non-finite loss reaches any optimizer, and say where it appeared."""

from __future__ import annotations

import lightning as L
import torch

from bert2textcnn.errors import UserError


def finite_or_stop(
    terms: dict[str, torch.Tensor], module: L.LightningModule, batch_idx: int
) -> dict[str, torch.Tensor]:
    """``terms`` unchanged when every one is finite; otherwise a ``UserError`` naming the epoch,
    batch and terms, while the last checkpoint is still intact."""
    if bool(torch.stack([value.detach().float() for value in terms.values()]).isfinite().all()):
        return terms
    bad = ", ".join(f"{name} = {value.item()}" for name, value in terms.items() if not value.isfinite())
    callback = module.trainer.checkpoint_callback
    last = callback.last_model_path if callback is not None else ""
    raise UserError(
        f"non-finite loss at epoch {module.current_epoch}, batch {batch_idx} (global step {module.global_step}): "
        f"{bad}. Training stopped before this update; the last checkpoint ({last or 'none saved yet'}) "
        "is intact. Lower the learning rates, check the data, or resume from that checkpoint."
    )
