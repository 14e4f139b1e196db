"""Seeds trained in separate sittings, reported as one table: a benchmark folder's rows joined by
the rows of earlier sittings' ``results.csv`` files (``--earlier_results``). For a machine whose
folder does not outlive it, or a benchmark too long for one sitting: each sitting trains some
seeds (``--seeds '[3, 4]'``) and keeps its small results.csv; the next reads it back.

A run that two sittings both train — the teacher, fine-tuned again in every sitting — must come out
the same in both, or their students learnt from different models and one table would compare them
as if they had not. The check is a digest of the run's test-set probabilities, and where that
differs, its scores: on another machine, or under another load, float sums can round otherwise
(the COLD teacher, fine-tuned in two sittings, scored the same to the last digit with another
digest), while a run trained with other code, data or options does not score the same on every
figure of thousands of test texts. Rounding can also grow into a real difference (the plain COLD
TextCNN of seed 0: 0.8902 in one sitting, 0.8892 in the next, most likely as multi-threaded CPU
training is not bit-reproducible under load); such a run is refused as well, since its students'
Δ would differ."""

from __future__ import annotations

import csv
import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bert2textcnn.errors import UserError

TEXT_COLUMNS = {"name", "scheme", "probabilities_digest"}
WHOLE_NUMBERS = {"seed", "epochs"}
REQUIRED = ("name", "seed", "macro_f1", "probabilities_digest")
TIMINGS = ("train_seconds", "seconds_per_epoch")  # what two sittings of one run may differ in


@dataclass(frozen=True)
class EarlierRow:
    """A row of an earlier sitting's results.csv, and where it came from (for error messages)."""

    path: str
    line: int
    row: dict[str, Any]


def digest(probabilities: dict[str, list]) -> str:
    """A fingerprint of a run's probabilities on the test texts."""
    return hashlib.sha256(json.dumps(probabilities, sort_keys=True).encode()).hexdigest()[:16]


def read_earlier(paths: Sequence[str]) -> list[EarlierRow]:
    """Every row of the files, parsed back to numbers; read before training, so a wrong path or a
    damaged file stops the benchmark before it spends an hour."""
    rows = []
    for path in paths:
        try:
            with open(path, encoding="utf-8", newline="") as file:
                reader = csv.DictReader(file)
                if missing := [column for column in REQUIRED if column not in (reader.fieldnames or [])]:
                    raise UserError(f"{path}: not a benchmark results.csv of this version: no {missing} column")
                rows += [EarlierRow(path, line, parse(raw, path, line)) for line, raw in enumerate(reader, start=2)]
        except OSError as err:
            raise UserError(f"{path}: cannot read earlier results: {err.strerror}") from None
        except UnicodeDecodeError:
            raise UserError(f"{path}: not a UTF-8 text file") from None
    return rows


def parse(raw: dict[str | None, Any], path: str, line: int) -> dict[str, Any]:
    if None in raw:
        raise UserError(f"{path}:{line}: more fields than the header names")
    row: dict[str, Any] = {}
    for column, value in raw.items():
        if value is None or value == "":  # a column only some runs have (the plain student has no Δ)
            continue
        if column in TEXT_COLUMNS:
            row[column] = value
            continue
        try:
            number = float(value)
        except ValueError:
            raise UserError(f"{path}:{line}: {column} is {value!r}, not a number") from None
        row[column] = int(number) if column in WHOLE_NUMBERS else number
    if missing := [column for column in REQUIRED if column not in row]:
        raise UserError(f"{path}:{line}: no value for {missing}")
    return row


def check_agrees(row: dict[str, Any], earlier: Sequence[EarlierRow]) -> None:
    """Refuse a run whose earlier-sitting twin (same name and seed) came out otherwise: another
    digest and another score."""
    for item in earlier:
        if (item.row["name"], item.row["seed"]) != (row["name"], row["seed"]):
            continue
        if item.row["probabilities_digest"] == row["probabilities_digest"]:
            continue
        if not same_scores(row, item.row):
            raise UserError(
                f"{item.path}:{item.line}: {row['name']!r} seed {row['seed']} came out otherwise in that sitting "
                "(its test probabilities and scores differ), so the two sittings' students learnt from different "
                "models; report them apart, or train both in one sitting"
            )
        note = "the test probabilities differ from that sitting's in rounding only (every score is the same)"
        print(f"{item.path}:{item.line}: {row['name']!r} seed {row['seed']}: {note}, so it counts as the same run")


def same_scores(row: dict[str, Any], other: dict[str, Any]) -> bool:
    """Accuracy, macro-F1 and every per-class precision, recall and F1 that both rows have, equal."""
    shared = [column for column in row if column in other and is_score(column)]
    return "macro_f1" in shared and all(math.isclose(row[c], other[c], rel_tol=0, abs_tol=1e-12) for c in shared)


def is_score(column: str) -> bool:
    return column in ("accuracy", "macro_f1") or column.startswith(("precision_", "recall_", "f1_"))


def with_earlier(rows: list[dict[str, Any]], earlier: Sequence[EarlierRow]) -> list[dict[str, Any]]:
    """This sitting's rows and the earlier rows of every run and seed it did not train, each run's
    seeds together in seed order. A run both sittings trained keeps the faster sitting's timings:
    the same run, so the slower time measured the machine or its load, not the run."""
    merged = {(row["name"], row["seed"]): row for row in rows}
    for item in earlier:
        key = (item.row["name"], item.row["seed"])
        if key not in merged:
            merged[key] = item.row
            continue
        check_agrees(merged[key], [item])
        if item.row.get("train_seconds", math.inf) < merged[key].get("train_seconds", math.inf):
            merged[key] = merged[key] | {column: item.row[column] for column in TIMINGS if column in item.row}
    order = {name: index for index, name in enumerate(dict.fromkeys(name for name, _ in merged))}
    return sorted(merged.values(), key=lambda row: (order[row["name"]], row["seed"]))
