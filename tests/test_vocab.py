import csv

import numpy as np
import pytest
import torch

from bert2textcnn.data.vocab import Vocab
from bert2textcnn.models.textcnn import TextCNN


def test_char_vocab_orders_by_frequency_and_maps_unseen_to_unk():
    vocab = Vocab.build(["好好学习", "天天向上"], "char")
    assert vocab.tokens[:4] == ["<pad>", "<unk>", "天", "好"]
    assert vocab.encode("好X") == [vocab.tokens.index("好"), 1]


def test_lowercasing_and_min_freq_and_max_size():
    vocab = Vocab.build(["QQ qq VIP"], "char", lowercase=True, min_freq=2)
    assert "q" in vocab.tokens and "Q" not in vocab.tokens and "v" not in vocab.tokens
    assert len(Vocab.build(["abcdef"], "char", max_size=4)) == 4


def test_jieba_tokenises_words():
    vocab = Vocab.build(["我们喜欢自然语言处理"], "jieba")
    assert any(len(token) > 1 for token in vocab.tokens[2:])


def test_batch_pads_to_longest_and_at_least_widest_kernel():
    vocab = Vocab.build(["好坏"], "char")
    batch = vocab.encode_batch(["好", "好坏好坏"], max_length=3, min_length=5)
    assert batch.shape == (2, 5)
    assert batch[1, :3].tolist() == [vocab.encode("好")[0], vocab.encode("坏")[0], vocab.encode("好")[0]]
    assert batch[0, 1:].eq(0).all()


def test_round_trip_through_plain_dict():
    vocab = Vocab.build(["你好"], "jieba", lowercase=False)
    assert Vocab.from_dict(vocab.to_dict()) == vocab


def test_textcnn_accepts_inputs_shorter_than_its_widest_kernel():
    model = TextCNN(Vocab.build(["一二三四五六七八"]), num_classes=3, kernel_sizes=(2, 5), num_filters=4)
    out = model(torch.tensor([[3]]))
    assert out.logits.shape == (1, 3) and out.features.shape == (1, 8)


EDGE_TEXTS = ["", "  ", "A B\tC\u3000D", "😀x😀", "İstanbul", "ΟΔΟΣ ΟΔΟΣ", "ß" * 200, "\u2028z", "新" * 5, "加微信"]


def same_ids_both_ways(vocab: Vocab, batches: list[list[str]]) -> None:
    for batch in batches:
        for max_length, min_length in ((128, 1), (3, 5), (1, 1)):
            fast = vocab.batched_char_ids(batch, max_length, min_length)
            by_text = np.array(vocab.padded_ids(batch, max_length, min_length), dtype=np.int64)
            assert fast.shape == by_text.shape and np.array_equal(fast, by_text), (batch, max_length, min_length)


@pytest.mark.parametrize("lowercase", [True, False])
def test_the_batched_character_lookup_gives_the_ids_text_by_text_tokenising_gives(lowercase):
    vocab = Vocab.build([*EDGE_TEXTS[3:], "ος"], "char", lowercase)  # whitespace, astral, Greek final sigma, İ
    same_ids_both_ways(vocab, [EDGE_TEXTS, [""], ["", "ab"], EDGE_TEXTS[::-1]])
    with_mask = ["加[MASK]微信", *EDGE_TEXTS]  # a marker is one <unk> token: the text-by-text path
    assert vocab.padded_array(with_mask, 10).tolist() == vocab.padded_ids(with_mask, 10)
    assert vocab.padded_array(EDGE_TEXTS, 10).tolist() == vocab.padded_ids(EDGE_TEXTS, 10)  # batched


def test_the_batched_character_lookup_on_real_sms(sms_spam):
    with open(sms_spam / "dev.csv", encoding="utf-8", newline="") as file:
        texts = [row["text"] for row in csv.DictReader(file)]
    vocab = Vocab.build(texts[:500], "char", True)
    same_ids_both_ways(vocab, [texts[i : i + 64] for i in range(0, len(texts), 64)])
