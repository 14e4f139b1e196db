"""Serve an exported student with ONNX Runtime alone: no torch, no Lightning.

    from bert2textcnn.inference.serving import OnnxClassifier
    model = OnnxClassifier("exports/student")          # written by `python -m bert2textcnn export`
    model.predict(["加微信领取免费会员"])                 # [("spam", {"normal": 0.02, "spam": 0.98})]

Needs only onnxruntime, numpy, jieba and tokenizers: ``pip install 'bert2textcnn[serve]'``.
Each student kind is served with its own tokenizer, rebuilt from the export's metadata.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bert2textcnn.data.vocab import Vocab, lowercase_outside_masks
from bert2textcnn.errors import UserError
from bert2textcnn.inference.labelled import predictions

MODEL_FILE, METADATA_FILE = "student.onnx", "student.json"
EXPORT_FORMAT = 2  # 1: TextCNN only, its vocabulary at the top level; 2: the student's description


class VocabEncoder:
    """A TextCNN's character or jieba-word vocabulary."""

    def __init__(self, student: Mapping[str, Any]) -> None:
        self.vocab = Vocab.from_dict(student["vocab"])
        self.max_length, self.min_length = int(student["max_length"]), int(student.get("min_length", 1))

    def __call__(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        return {"input_ids": self.vocab.padded_array(texts, self.max_length, self.min_length)}


class WordPieceEncoder:
    """A BERT student's own WordPiece tokenizer, through the ``tokenizers`` library alone."""

    def __init__(self, student: Mapping[str, Any]) -> None:
        from tokenizers import Tokenizer

        self.tokenizer = Tokenizer.from_str(student["tokenizer"])
        pad = student["special_tokens"]["pad_token"]
        self.tokenizer.enable_padding(pad_id=self.tokenizer.token_to_id(pad), pad_token=pad)
        self.tokenizer.enable_truncation(int(student["max_length"]))
        self.lowercase = bool(student["lowercase"])

    def __call__(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        texts = [lowercase_outside_masks(t) if self.lowercase else t for t in texts]
        encoded = self.tokenizer.encode_batch(list(texts))
        return {
            "input_ids": np.array([e.ids for e in encoded], dtype=np.int64).reshape(len(texts), -1),
            "attention_mask": np.array([e.attention_mask for e in encoded], dtype=np.int64).reshape(len(texts), -1),
        }


ENCODERS = {"vocab": VocabEncoder, "wordpiece": WordPieceEncoder}


def student_of(metadata: dict[str, Any]) -> dict[str, Any]:
    """The exported student's description; a format-1 export held a TextCNN's encoding at the top."""
    if metadata.get("format") == 1:
        return {"kind": "textcnn", "encoder": "vocab", "vocab": metadata["vocab"],
                "max_length": metadata["max_length"], "min_length": metadata["min_length"]}  # fmt: skip
    return metadata["student"]


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
        if metadata.get("format") not in (1, EXPORT_FORMAT):
            raise UserError(
                f"{directory / METADATA_FILE}: export format {metadata.get('format')}, expected 1 or {EXPORT_FORMAT}"
            )
        student = student_of(metadata)
        if student.get("encoder") not in ENCODERS:
            raise UserError(f"{directory / METADATA_FILE}: no torch-free tokeniser for a {student['kind']!r} student")
        self.encode = ENCODERS[student["encoder"]](student)
        self.labels: list[str] = list(metadata["labels"])
        self.batch_size = batch_size
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
        self.session = ort.InferenceSession(str(directory / MODEL_FILE), options, providers=["CPUExecutionProvider"])

    def run(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        """Probabilities for already encoded texts (the encoder's int64 arrays)."""
        return self.session.run(["probabilities"], inputs)[0]

    def probabilities(self, texts: Sequence[str]) -> np.ndarray:
        """(texts, classes) in input order; computed in batches of texts of similar length."""
        result = np.empty((len(texts), len(self.labels)), dtype=np.float32)
        for rows in Vocab.length_sorted_rows(texts, self.batch_size):
            result[rows] = self.run(self.encode([texts[i] for i in rows]))
        return result

    def predict(self, texts: Sequence[str]) -> list[tuple[str, dict[str, float]]]:
        return predictions(self.probabilities(texts), self.labels)
