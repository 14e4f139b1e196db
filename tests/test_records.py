import json
import logging

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
        ('text,label\n"好,spam\n坏,normal\n'.encode(), "expected 2 fields"),  # an unclosed quote swallows the rest
        ("text,label\n好,spam\n坏,NaN\n".encode(), ":3: label 'NaN' looks like a missing value"),
        ("text,label\n好,null\n".encode(), ":2: label 'null' looks like a missing value"),
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
    data = TextDataModule(train_path=str(tmp_path / "train.csv"), val_path=str(tmp_path / "val.csv"))
    with pytest.raises(DataError, match=r"val.csv:3: label 'other' does not occur in the training data"):
        data.setup("fit")


def test_single_class_training_file_is_rejected(tmp_path):
    (tmp_path / "train.csv").write_text("text,label\n好,spam\n坏,spam\n", encoding="utf-8")
    with pytest.raises(UserError, match="at least two classes"):
        TextDataModule(train_path=str(tmp_path / "train.csv"))


def test_no_paths_means_bundled_demo_with_both_classes():
    data = TextDataModule()
    assert data.labels == ["normal", "spam"]
    assert len(data.train_texts()) >= 400


def test_labels_mixing_numbers_and_names_are_rejected_at_the_odd_row(tmp_path):
    (tmp_path / "train.csv").write_text("text,label\n好,spam\n坏,normal\n中,1\n大,spam\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"train.csv:4: labels mix numbers and names .* label '1' is the odd one out"):
        TextDataModule(train_path=str(tmp_path / "train.csv"))


def test_long_texts_and_conflicting_duplicates_are_counted_in_the_log(tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="bert2textcnn")
    rows = "好的,normal\n加微信,spam\n加微信,normal\n" + "很长" * 40 + ",spam\n"
    (tmp_path / "train.csv").write_text("text,label\n" + rows, encoding="utf-8")
    data = TextDataModule(train_path=str(tmp_path / "train.csv"), max_length=50)
    assert "1 texts are longer than max_length 50 tokens and will be cut" in caplog.text
    assert "1 texts appear with conflicting labels (e.g. '加微信' as normal and spam)" in caplog.text
    assert data.vocab.padded_ids(["很长" * 40], data.max_length)[0].__len__() == 50  # cut, not dropped


def test_check_data_reports_every_file_then_exits_2(tmp_path, capsys):
    from bert2textcnn.cli import main

    (tmp_path / "train.csv").write_text("text,label\n好的,normal\n加微信,spam\n加微信,normal\n", encoding="utf-8")
    (tmp_path / "val.csv").write_text("text,label\n好,spam\n中,other\n", encoding="utf-8")
    (tmp_path / "test.csv").write_bytes(b"\xef\xbb\xbftext,label\n\xe5\xa5\xbd,spam\n")  # a BOM is fine
    args = ["check-data", "--data.train_path", str(tmp_path / "train.csv"), "--data.val_path",
            str(tmp_path / "val.csv"), "--data.test_path", str(tmp_path / "test.csv")]  # fmt: skip
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    out = capsys.readouterr().out
    assert exit_info.value.code == 2
    assert "train.csv: 3 rows · normal 2, spam 1" in out and "conflicting labels" in out
    assert "val.csv:3: label 'other' does not occur in the training data" in out
    assert "test.csv: 1 rows · spam 1" in out  # checked although val.csv failed
    assert "1 problem(s) that stop training, 1 warning(s)" in out
