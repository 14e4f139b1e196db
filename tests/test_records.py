import json

import pytest

from bert2textcnn.data.datamodule import TextDataModule
from bert2textcnn.data.records import read_records
from bert2textcnn.errors import DataError, UserError


def test_reads_csv_tsv_jsonl_with_string_and_int_labels(tmp_path):
    (tmp_path / "a.csv").write_text('text,label\n"你好,世界",1\n再见,0\n', encoding="utf-8")
    (tmp_path / "a.tsv").write_text("content\ttag\n你好\tspam\n", encoding="utf-8")
    (tmp_path / "a.jsonl").write_text(
        json.dumps({"text": "你好", "label": 1}, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    csv_rows = read_records(tmp_path / "a.csv")
    assert [(r.text, r.label, r.line) for r in csv_rows] == [("你好,世界", "1", 2), ("再见", "0", 3)]
    assert read_records(tmp_path / "a.tsv", "content", "tag")[0].label == "spam"
    assert read_records(tmp_path / "a.jsonl")[0].label == "1"


def test_utf8_bom_is_accepted(tmp_path):
    (tmp_path / "bom.csv").write_bytes("\ufefftext,label\n好,spam\n".encode())
    assert read_records(tmp_path / "bom.csv")[0].text == "好"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "file is empty"),
        (b"text,label\n", "no data rows"),
        ("text,label\n好,spam\n   ,normal\n".encode(), ":3: empty text"),
        ("text,label\n好,\n".encode(), ":2: empty label"),
        ("words,label\n好,spam\n".encode(), ":2: no text column 'text'"),
        ("Text,label\n好,spam\n".encode(), "did you mean 'Text'?"),
        ("text,label\n好,spam\n".encode() + b"\xff\xfe,normal\n", ":3: not valid UTF-8"),
        ("text,label\n好,spam,extra\n".encode(), ":2: expected 2 fields"),
    ],
)
def test_bad_input_names_file_line_and_problem(tmp_path, content, message):
    path = tmp_path / "bad.csv"
    path.write_bytes(content)
    with pytest.raises(DataError) as info:
        read_records(path)
    assert str(path) in str(info.value)
    assert message in str(info.value)


def test_missing_file_and_bad_jsonl(tmp_path):
    with pytest.raises(DataError, match="file not found"):
        read_records(tmp_path / "nope.csv")
    (tmp_path / "bad.jsonl").write_text('{"text": "好", "label": "spam"}\n{oops\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"bad.jsonl:2: invalid JSON"):
        read_records(tmp_path / "bad.jsonl")


def test_val_label_unknown_to_train_is_rejected_before_training(tmp_path):
    (tmp_path / "train.csv").write_text("text,label\n好,spam\n坏,normal\n", encoding="utf-8")
    (tmp_path / "val.csv").write_text("text,label\n好,spam\n中,other\n", encoding="utf-8")
    data = TextDataModule(str(tmp_path / "train.csv"), str(tmp_path / "val.csv"))
    with pytest.raises(DataError, match=r"val.csv:3: label 'other' does not occur in the training data"):
        data.setup("fit")


def test_single_class_training_file_is_rejected(tmp_path):
    (tmp_path / "train.csv").write_text("text,label\n好,spam\n坏,spam\n", encoding="utf-8")
    with pytest.raises(UserError, match="at least two classes"):
        TextDataModule(str(tmp_path / "train.csv"))


def test_no_paths_means_bundled_demo_with_both_classes():
    data = TextDataModule()
    assert data.labels == ["normal", "spam"]
    assert len(data.train_texts()) >= 400
