"""Metrics computed by hand, the slow obvious way, to check the project's against."""

from __future__ import annotations


def hand_macro_f1(scores: list[list[float]], labels: list[int]) -> float:
    """Macro-F1 of the argmax of each row's scores (probabilities or logits), over the classes
    that occur as a label or a prediction."""
    predicted = [max(range(len(p)), key=p.__getitem__) for p in scores]
    f1s = []
    for c in set(labels) | set(predicted):
        hits = sum(p == y == c for p, y in zip(predicted, labels, strict=True))
        wrong = sum((p == c) != (y == c) for p, y in zip(predicted, labels, strict=True))
        f1s.append(2 * hits / (2 * hits + wrong))
    return sum(f1s) / len(f1s)
