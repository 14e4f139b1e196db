import random

import pytest

from bert2textcnn.data.datamodule import TextDataModule
from bert2textcnn.data.length_groups import LengthGroupedShuffle
from bert2textcnn.errors import UserError


def runs(order: list[int], batch_size: int) -> list[list[int]]:
    """What a DataLoader makes of the order: consecutive runs of batch_size."""
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def padded_tokens(order: list[int], lengths: list[int], batch_size: int) -> int:
    return sum(max(lengths[i] for i in batch) * len(batch) for batch in runs(order, batch_size))


@pytest.fixture
def lengths() -> list[int]:
    rng = random.Random(0)
    return [rng.choice([rng.randint(5, 30), rng.randint(60, 128)]) for _ in range(1003)]


def test_every_row_once_and_each_batch_from_one_sorted_window(lengths):
    order = list(LengthGroupedShuffle(lengths, batch_size=32, window=4))
    assert sorted(order) == list(range(len(lengths)))
    batches = runs(order, 32)
    assert all(len(b) == 32 for b in batches[:-1]) and len(batches[-1]) == len(lengths) % 32
    for batch in batches:  # a DataLoader run is exactly one sorted batch, not a straddle of two
        assert [lengths[i] for i in batch] == sorted((lengths[i] for i in batch), reverse=True)


def test_pads_less_than_plain_shuffling(lengths):
    plain = list(LengthGroupedShuffle(lengths, batch_size=32, window=1))
    grouped = list(LengthGroupedShuffle(lengths, batch_size=32, window=4))
    assert padded_tokens(grouped, lengths, 32) < 0.8 * padded_tokens(plain, lengths, 32)


def test_order_depends_on_seed_and_epoch_only(lengths, monkeypatch):
    monkeypatch.setenv("PL_GLOBAL_SEED", "3")
    first = list(LengthGroupedShuffle(lengths, 32, 4, epoch=1))
    assert list(LengthGroupedShuffle(lengths, 32, 4, epoch=1)) == first
    assert list(LengthGroupedShuffle(lengths, 32, 4, epoch=2)) != first
    monkeypatch.setenv("PL_GLOBAL_SEED", "4")
    assert list(LengthGroupedShuffle(lengths, 32, 4, epoch=1)) != first


def test_empty_and_bad_window(small_data):
    assert list(LengthGroupedShuffle([], 32, 4)) == []
    with pytest.raises(UserError, match="length_grouping"):
        TextDataModule(train_path=str(small_data["train"]), val_path=str(small_data["val"]), length_grouping=0)
