"""Write ``predict`` results as CSV: text, predicted label, one probability column per class."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback

from bert2textcnn.files import atomic_write_text
from bert2textcnn.inference.labelled import labelled


class PredictionWriter(Callback):
    def __init__(self, output_path: str | None = None) -> None:
        """
        Args:
            output_path: CSV to write. Default: beside the input, ``<input stem>.predictions.csv``.
        """
        self.output_path = output_path
        self.rows: list[list[Any]] = []

    def on_predict_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.rows = []

    def on_predict_batch_end(
        self, trainer, pl_module, outputs: dict[str, Any], batch, batch_idx, dataloader_idx=0
    ) -> None:
        rows = zip(outputs["text"], labelled(outputs["probs"], pl_module.labels), strict=True)
        exits = outputs.get("exit_layer")  # a model that exits early says where each text left
        for i, (text, (label, probs)) in enumerate(rows):
            self.rows.append([text, label, *(f"{p:.6f}" for p in probs), *([exits[i]] if exits else [])])

    def on_predict_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        source = Path(trainer.datamodule.paths["predict"])
        path = Path(self.output_path) if self.output_path else source.with_name(f"{source.stem}.predictions.csv")
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        header = ["text", "predicted", *(f"prob_{label}" for label in pl_module.labels)]
        writer.writerow(header + ["exit_layer"] * (bool(self.rows) and len(self.rows[0]) > len(header)))
        writer.writerows(self.rows)
        atomic_write_text(path, buffer.getvalue())
        print(f"Wrote {len(self.rows)} predictions to {path}")
