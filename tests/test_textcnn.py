"""The student's output for a text must not depend on the batch it is in, nor on its folded form."""

import torch

from bert2textcnn.data.vocab import Vocab
from bert2textcnn.models import folded_textcnn
from bert2textcnn.models.folded_textcnn import FoldedTextCNN, fold
from bert2textcnn.models.textcnn import TextCNN

FIFTY_TOKENS = Vocab.build(["".join(chr(0x4E00 + i) for i in range(48))])


def test_padding_from_a_longer_batch_mate_changes_nothing():
    torch.manual_seed(0)
    model = TextCNN(FIFTY_TOKENS, 2, embedding_dim=8, kernel_sizes=(2, 3, 4), num_filters=6).eval()
    with torch.no_grad():  # a large positive bias would win every max-pool over padding if it were not masked
        for conv in model.convs:
            conv.bias.fill_(3.0)
    short = torch.tensor([[5, 6, 7, 8, 9]])
    alone = model(short).logits
    padded = torch.nn.functional.pad(short, (0, 30))
    batch = torch.cat([padded, torch.randint(2, 50, (1, 35))])
    assert torch.allclose(model(batch).logits[0], alone[0], atol=1e-6)


def test_texts_shorter_than_the_widest_kernel_are_scored():
    model = TextCNN(FIFTY_TOKENS, 3, kernel_sizes=(2, 5)).eval()
    one_token = torch.tensor([[7]])
    assert model(one_token).logits.shape == (1, 3)
    assert torch.allclose(model(one_token).logits, model(torch.tensor([[7, 0, 0, 0, 0, 0, 0]])).logits, atol=1e-6)


def test_the_folded_form_gives_the_trained_outputs_whatever_the_text_length():
    torch.manual_seed(0)
    model = TextCNN(FIFTY_TOKENS, 3, embedding_dim=8, kernel_sizes=(2, 3, 5), num_filters=6).eval()
    with torch.no_grad():  # as above: padding windows would win every max-pool if the fold kept them
        for conv in model.convs:
            conv.bias.fill_(3.0)
    folded = fold(model)
    assert isinstance(folded, FoldedTextCNN)
    texts = ["", "一", "一丁", "一丁七丄", "".join(chr(0x4E00 + i) for i in range(40)), "未见过的字"]
    inputs = model.encode(texts)  # one batch, padded to its longest: every row but one ends in padding
    with torch.no_grad():
        trained, fast = model(**inputs), folded(**inputs)
        assert torch.allclose(fast.logits, trained.logits, atol=1e-5)
        assert torch.allclose(fast.features, trained.features, atol=1e-5)
        short = torch.tensor([[7]])  # shorter than the widest kernel, unpadded
        assert torch.allclose(folded(short).logits, model(short).logits, atol=1e-5)


def test_fold_leaves_other_kinds_and_tables_past_the_limit_as_they_are(monkeypatch):
    model = TextCNN(FIFTY_TOKENS, 2, embedding_dim=8, num_filters=4)
    other = torch.nn.Linear(2, 2)
    assert fold(other) is other and not other.training
    monkeypatch.setattr(folded_textcnn, "FOLD_LIMIT_BYTES", 4 * len(FIFTY_TOKENS) * 4 * (2 + 3 + 4) - 1)
    assert fold(model) is model and not model.training
