"""Option groups: a scheme takes exactly its groups' fields, checked once, with their defaults."""

from __future__ import annotations

import inspect

import pytest

from bert2textcnn.data.datamodule import TextDataModule
from bert2textcnn.distill.options import DistillOptions, FrozenTeacherDistillOptions, HistoricalOptions
from bert2textcnn.distill.schemes import SCHEMES
from bert2textcnn.errors import UserError


def test_an_option_outside_the_schemes_groups_is_refused_by_name(small_data):
    data = TextDataModule(train_path=str(small_data["train"]), val_path=str(small_data["val"]))
    with pytest.raises(UserError, match="StudentScheme has no option alpha, teacher_lr; its options: compare_to"):
        SCHEMES["student"](labels=data.labels, vocab=data.vocab, alpha=0.5, teacher_lr=1e-4)
    model = SCHEMES["offline"](labels=data.labels, vocab=data.vocab, alpha=0.2)
    assert model.options[DistillOptions].alpha == 0.2 and model.hparams.alpha == 0.2
    assert "compare_to" not in model.hparams  # evaluation options stay out of the hyper-parameters


def test_a_scheme_overrides_a_default_by_subclassing_the_group():
    offline = inspect.signature(SCHEMES["offline"].__init__).parameters
    joint = inspect.signature(SCHEMES["joint_isolated"].__init__).parameters
    assert offline["trust_labels"].default is False and joint["trust_labels"].default is True
    assert issubclass(FrozenTeacherDistillOptions, DistillOptions)


def test_a_group_checks_its_values_once_for_every_scheme_that_takes_it():
    with pytest.raises(UserError, match="sum to less than 1"):
        HistoricalOptions(historical=["a.csv", "b.csv"], historical_weights=[0.5, 0.5])
    with pytest.raises(UserError, match=r"one --model\.historical_weights per --model\.historical entry"):
        HistoricalOptions(historical=["a.csv"], historical_weights=[0.1, 0.2])
    with pytest.raises(UserError, match="alpha must lie in"):
        DistillOptions(alpha=1.5)
