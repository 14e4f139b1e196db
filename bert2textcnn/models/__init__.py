"""Model kinds behind one protocol (``protocol.Classifier``) and the factory that builds them.

A new kind is a file implementing the protocol plus one entry in ``STUDENT_KINDS``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bert2textcnn.data.vocab import Vocab
from bert2textcnn.errors import UserError
from bert2textcnn.models.bert import BertClassifier
from bert2textcnn.models.protocol import Classifier, ModelOutput
from bert2textcnn.models.textcnn import TextCNN

STUDENT_KINDS: dict[str, type[TextCNN] | type[BertClassifier]] = {cls.kind: cls for cls in (TextCNN, BertClassifier)}

__all__ = ["STUDENT_KINDS", "Classifier", "ModelOutput", "build_student", "classifier_from_description"]


def _kind(name: str) -> type[TextCNN] | type[BertClassifier]:
    if name not in STUDENT_KINDS:
        raise UserError(f"unknown model kind {name!r}; choose from {sorted(STUDENT_KINDS)}")
    return STUDENT_KINDS[name]


def build_student(kind: str, vocab: Vocab, num_classes: int, max_length: int, options: Mapping[str, Any]) -> Classifier:
    """A new student of ``kind`` sized by a scheme's hyper-parameters."""
    return _kind(kind).from_options(vocab, num_classes, max_length, options)


def classifier_from_description(description: Mapping[str, Any], num_classes: int) -> Classifier:
    """An untrained model shaped as a checkpoint describes it (``Classifier.describe``)."""
    return _kind(description["kind"]).from_description(description, num_classes)
