"""The data options every command reads files with (``--data.*`` of ``fit``, ``check-data`` and
``benchmark``), declared once."""

from __future__ import annotations

from dataclasses import dataclass

from bert2textcnn.data.vocab import TokenizerKind


@dataclass(frozen=True)
class DataFiles:
    """The files a run reads, and how their text is read.

    Args:
        train_path: Training file (CSV, TSV or JSONL with a text and a label column). With no path
            at all, the bundled demo corpus is used for train, val and test.
        val_path: Validation file; the best checkpoint is chosen on it. Required with train_path.
        test_path: Test file, for ``test`` and for the report printed after ``fit``.
        predict_path: File of texts to label with ``predict`` (a label column is optional).
        unlabeled_path: Texts without labels (CSV/TSV/JSONL, or .txt with one text per line; a
            label column is ignored). The student learns them from the teacher alone.
        text_column: Name of the text column (or JSONL key).
        label_column: Name of the label column; labels may be strings or integers.
        tokenizer: Student tokenisation: ``char`` (one token per character) or ``jieba`` words.
        lowercase: Lowercase text before the student's tokenizer.
        max_length: Longest input in tokens, for the student and the teacher; longer texts are cut.
    """

    train_path: str | None = None
    val_path: str | None = None
    test_path: str | None = None
    predict_path: str | None = None
    unlabeled_path: str | None = None
    text_column: str = "text"
    label_column: str = "label"
    tokenizer: TokenizerKind = "char"
    lowercase: bool = True
    max_length: int = 128

    @property
    def paths(self) -> dict[str, str | None]:
        """Every file by split: train, val, test, predict, unlabeled."""
        return {split: getattr(self, f"{split}_path") for split in ("train", "val", "test", "predict", "unlabeled")}
