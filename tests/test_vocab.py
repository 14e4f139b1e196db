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
