"""Read CSV, TSV, JSONL and plain-text files of (text, label) rows and reject bad input early.

Every problem is reported as ``file:line: problem`` before any training starts.
"""

from __future__ import annotations

import csv
import io
import json
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from bert2textcnn.errors import DataError

log = logging.getLogger(__name__)
MISSING_VALUES = {"nan", "null", "none", "n/a", "na", "<na>"}  # how exports from pandas and SQL spell "no label"
FORMATS = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".json": "jsonl", ".txt": "lines"}


@dataclass(frozen=True)
class Record:
    text: str
    label: str | None  # None for unlabelled rows (predict files)
    line: int  # 1-based line in the source file, for error messages


def read_records(
    path: str | Path,
    text_column: str = "text",
    label_column: str = "label",
    require_label: bool = True,
) -> list[Record]:
    """Read and validate one data file; labels are returned as strings."""
    path = Path(path)
    records = []
    for line, row in read_table(path, text_column):
        if text_column not in row:
            raise DataError(path, missing_column(text_column, row, "text"), line)
        value = row[text_column]
        if not isinstance(value, str) or not value.strip():
            raise DataError(path, f"empty text in column {text_column!r}", line)
        label = row.get(label_column)
        if require_label:
            if label_column not in row:
                raise DataError(path, missing_column(label_column, row, "label"), line)
            if label is None or str(label).strip() == "":
                raise DataError(path, f"empty label in column {label_column!r}", line)
            if str(label).strip().lower() in MISSING_VALUES:
                raise DataError(path, f"label {label!r} looks like a missing value; label the row or drop it", line)
        records.append(Record(value.strip(), None if label is None else str(label).strip(), line))
    if not records:
        raise DataError(path, "no data rows (the file holds a header only or is empty)")
    return records


def check_label_kinds(records: Sequence[Record], path: str | Path) -> None:
    """Reject labels that mix numbers and names (``1`` beside ``spam``): usually two exports
    concatenated, or a label column that is not one."""
    numeric = [r for r in records if r.label is not None and r.label.lstrip("-").isdigit()]
    if numeric and len(numeric) < sum(r.label is not None for r in records):
        named = next(r for r in records if r.label is not None and not r.label.lstrip("-").isdigit())
        minority = numeric[0] if len(numeric) * 2 < len(records) else named
        raise DataError(
            path,
            f"labels mix numbers and names (e.g. {numeric[0].label!r} and {named.label!r}); "
            f"this row's label {minority.label!r} is the odd one out",
            minority.line,
        )


def read_table(path: str | Path, text_column: str = "text") -> Iterator[tuple[int, dict[str, object]]]:
    """(line, row) pairs of a CSV, TSV or JSONL file, or of a text file with one text per line
    (its rows hold ``text_column`` only); decoding and format errors name the line."""
    path = Path(path)
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise DataError(path, f"unsupported file type {path.suffix!r}; use one of {sorted(FORMATS)}")
    text = _read_utf8(path)
    if fmt == "lines":
        return ((i, {text_column: line}) for i, line in enumerate(text.splitlines(), 1) if line.strip())
    return _jsonl_rows(path, text) if fmt == "jsonl" else _delimited_rows(path, text, fmt)


def _read_utf8(path: Path) -> str:
    if not path.is_file():
        raise DataError(path, "file not found")
    raw = path.read_bytes()
    if not raw.strip():
        raise DataError(path, "file is empty")
    try:
        return raw.decode("utf-8-sig")  # a UTF-8 byte-order mark is accepted and dropped
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        bad = raw[err.start : err.start + 1].hex()
        raise DataError(path, f"not valid UTF-8 (byte 0x{bad}); re-save the file as UTF-8", line) from None


def _delimited_rows(path: Path, text: str, fmt: str) -> Iterator[tuple[int, dict[str, str]]]:
    reader = csv.reader(io.StringIO(text, newline=""), delimiter="\t" if fmt == "tsv" else ",")
    try:
        header = next(reader)
    except StopIteration:
        raise DataError(path, "file is empty") from None
    header = [name.strip() for name in header]
    try:
        for cells in reader:
            if not any(cell.strip() for cell in cells):
                continue  # blank line
            if len(cells) != len(header):
                raise DataError(
                    path,
                    f"expected {len(header)} fields ({', '.join(header)}), found {len(cells)}; "
                    "quote texts that contain the delimiter",
                    reader.line_num,
                )
            yield reader.line_num, dict(zip(header, cells, strict=True))
    except csv.Error as err:
        raise DataError(path, f"malformed {fmt.upper()} row: {err}", reader.line_num) from None


def _jsonl_rows(path: Path, text: str) -> Iterator[tuple[int, dict[str, object]]]:
    for line, content in enumerate(text.splitlines(), start=1):
        if not content.strip():
            continue
        try:
            row = json.loads(content)
        except json.JSONDecodeError as err:
            raise DataError(path, f"invalid JSON: {err.msg}", line) from None
        if not isinstance(row, dict):
            raise DataError(path, "each line must be a JSON object", line)
        yield line, row


def missing_column(name: str, row: dict[str, object], role: str) -> str:
    columns = ", ".join(repr(c) for c in row)
    close = [c for c in row if c.strip().lower() == name.strip().lower()]
    hint = f"; did you mean {close[0]!r}?" if close else f"; set --data.{role}_column"
    return f"no {role} column {name!r} (columns: {columns}){hint}"


def check_labels(records: Sequence[Record], labels: Sequence[str], path: str | Path) -> None:
    """Reject a val/test row whose label the model was not trained on."""
    known = set(labels)
    for record in records:
        if record.label is not None and record.label not in known:
            raise DataError(
                path,
                f"label {record.label!r} does not occur in the training data (known labels: {', '.join(labels)})",
                record.line,
            )


def read_texts(path: str | Path, text_column: str = "text", label_column: str = "label") -> list[str]:
    """The texts of an unlabelled file; a label column in it is ignored, and the log says so."""
    records = read_records(path, text_column, label_column, require_label=False)
    if any(record.label is not None for record in records):
        log.warning("%s: ignoring its %r column; its texts are used as unlabelled rows", path, label_column)
    return [record.text for record in records]


def label_map(records: Sequence[Record], path: str | Path) -> list[str]:
    """The sorted training labels: the class ids every checkpoint records."""
    labels = sorted({r.label for r in records if r.label is not None})
    if len(labels) < 2:
        raise DataError(path, f"needs at least two classes to train a classifier, found {labels}")
    return labels
