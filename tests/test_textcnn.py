"""The student's output for a text must not depend on the batch it is in."""

import torch

from bert2textcnn.data.vocab import Vocab
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
