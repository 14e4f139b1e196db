"""Serve an exported student with ONNX Runtime alone: no torch, no Lightning.

    from bert2textcnn.serving import OnnxClassifier
    model = OnnxClassifier("exports/student")          # written by `python -m bert2textcnn export`
    model.predict(["加微信领取免费会员"])                 # [("spam", {"normal": 0.02, "spam": 0.98})]

Needs only onnxruntime, numpy and jieba: ``pip install 'bert2textcnn[serve]'``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from bert2textcnn.data.vocab import Vocab
from bert2textcnn.errors import UserError
from bert2textcnn.outputs import predictions

MODEL_FILE, METADATA_FILE = "student.onnx", "student.json"
EXPORT_FORMAT = 1


class OnnxClassifier:
    """Raw texts in, labels and probabilities out, tokenised exactly as in training."""

    def __init__(self, directory: str | Path, threads: int | None = None, batch_size: int = 64) -> None:
        """
        Args:
            directory: An export folder holding ``student.onnx`` and ``student.json``.
            threads: ONNX Runtime intra-op threads (default: its own choice, all cores).
            batch_size: Texts per call to the model; texts are grouped by length to pad less.
        """
        import onnxruntime as ort

        directory = Path(directory)
        for name in (MODEL_FILE, METADATA_FILE):
            if not (directory / name).is_file():
                raise UserError(f"{directory / name}: not found; create it with `python -m bert2textcnn export`")
        metadata = json.loads((directory / METADATA_FILE).read_text(encoding="utf-8"))
        if metadata.get("format") != EXPORT_FORMAT:
            raise UserError(f"{directory / METADATA_FILE}: export format {metadata.get('format')}, expected 1")
        self.vocab = Vocab.from_dict(metadata["vocab"])
        self.labels: list[str] = list(metadata["labels"])
        self.max_length, self.min_length = int(metadata["max_length"]), int(metadata["min_length"])
        self.batch_size = batch_size
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
        self.session = ort.InferenceSession(str(directory / MODEL_FILE), options, providers=["CPUExecutionProvider"])

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        return self.vocab.padded_array(texts, self.max_length, self.min_length)

    def run(self, input_ids: np.ndarray) -> np.ndarray:
        """Probabilities for already encoded texts, (batch, length) int64."""
        return self.session.run(["probabilities"], {"input_ids": input_ids})[0]

    def probabilities(self, texts: Sequence[str]) -> np.ndarray:
        """(texts, classes) in input order; computed in batches of texts of similar length."""
        result = np.empty((len(texts), len(self.labels)), dtype=np.float32)
        for rows in self.vocab.length_sorted_rows(texts, self.batch_size):
            result[rows] = self.run(self.encode([texts[i] for i in rows]))
        return result

    def predict(self, texts: Sequence[str]) -> list[tuple[str, dict[str, float]]]:
        return predictions(self.probabilities(texts), self.labels)
