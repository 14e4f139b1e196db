"""Model kinds behind one protocol (``protocol.Classifier``) and the factory that builds them.

A new kind is a file implementing the protocol plus one entry in ``STUDENT_KINDS`` (a student every
scheme can train) or ``SCHEME_KINDS`` (a model only its own scheme trains, e.g. FastBERT).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bert2textcnn.data.vocab import Vocab
from bert2textcnn.errors import UserError
from bert2textcnn.models.bert import BertClassifier
from bert2textcnn.models.fastbert import FastBert
from bert2textcnn.models.protocol import Classifier, ModelOutput
from bert2textcnn.models.textcnn import TextCNN

Kind = type[TextCNN] | type[BertClassifier] | type[FastBert]
STUDENT_KINDS: dict[str, Kind] = {cls.kind: cls for cls in (TextCNN, BertClassifier)}  # --model.student
SCHEME_KINDS: dict[str, Kind] = {FastBert.kind: FastBert}  # built by their own scheme; checkpoints hold them

__all__ = ["SCHEME_KINDS", "STUDENT_KINDS", "Classifier", "ModelOutput", "build_student", "classifier_from_description"]


def kind_of(name: str) -> Kind:
    """The class of a model kind (looked up at call time, so a kind registered later is found)."""
    kinds = STUDENT_KINDS | SCHEME_KINDS
    if name not in kinds:
        raise UserError(f"unknown model kind {name!r}; choose from {sorted(STUDENT_KINDS)}")
    return kinds[name]


def build_student(kind: str, vocab: Vocab, num_classes: int, max_length: int, options: Mapping[str, Any]) -> Classifier:
    """A new student of ``kind`` sized by a scheme's hyper-parameters."""
    return kind_of(kind).from_options(vocab, num_classes, max_length, options)


def classifier_from_description(description: Mapping[str, Any], num_classes: int) -> Classifier:
    """An untrained model shaped as a checkpoint describes it (``Classifier.describe``)."""
    return kind_of(description["kind"]).from_description(description, num_classes)
