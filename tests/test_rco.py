"""RCO: anchors kept along a teacher's run, the route's schedule, and a route of one anchor = offline."""

from __future__ import annotations

import json

import lightning as L
import pytest
import torch

from bert2textcnn.data.datamodule import TextDataModule
from bert2textcnn.distill.route import anchor_at, read_route
from bert2textcnn.distill.schemes import SCHEMES
from bert2textcnn.errors import UserError


def test_each_anchor_gets_an_equal_share_of_the_batches_in_order():
    assert [anchor_at(b, 10, 3) for b in range(10)] == [0, 0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert [anchor_at(b, 6, 3) for b in range(6)] == [0, 0, 1, 1, 2, 2]
    assert {anchor_at(b, 7, 1) for b in range(7)} == {0}  # one anchor: offline
    assert anchor_at(12, 10, 3) == 2  # past the planned length (a longer resumed run): the final teacher


def test_save_anchors_keeps_evenly_spaced_checkpoints_with_an_index(teacher_anchors):
    index = json.loads(teacher_anchors.read_text(encoding="utf-8"))
    assert index == {"anchors": ["anchor_1.ckpt", "anchor_2.ckpt"], "steps": [3, 6]}
    first, last = (torch.load(teacher_anchors.parent / name, weights_only=True) for name in index["anchors"])
    assert (first["global_step"], last["global_step"]) == (3, 6)
    teacher_keys = [k for k in last["state_dict"] if k.startswith("teacher.")]
    assert teacher_keys and any(not torch.equal(first["state_dict"][k], last["state_dict"][k]) for k in teacher_keys)
    assert read_route(str(teacher_anchors)) == [str(teacher_anchors.parent / n) for n in index["anchors"]]


def test_a_bad_route_is_one_clear_error(tmp_path):
    with pytest.raises(UserError, match="teacher_route"):
        read_route(None)
    bad = tmp_path / "index.json"
    bad.write_text("{not json", encoding="utf-8")
    with pytest.raises(UserError, match=f"{bad}: not an anchors index"):
        read_route(str(bad))
    with pytest.raises(UserError, match="missing anchor checkpoints"):
        read_route([str(tmp_path / "gone.ckpt")])


def fit(scheme, small_data, tmp_path, steps, callbacks=(), **options):
    L.seed_everything(5, verbose=False)
    data = TextDataModule(train_path=str(small_data["train"]), val_path=str(small_data["val"]), batch_size=16)
    model = SCHEMES[scheme](
        labels=data.labels, vocab=data.vocab, max_length=data.max_length, cache_dir=str(tmp_path / "cache"), **options
    )
    trainer = L.Trainer(max_steps=steps, limit_val_batches=0, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, callbacks=list(callbacks))  # fmt: skip
    trainer.fit(model, datamodule=data)
    return model


def test_a_route_of_one_anchor_trains_exactly_as_offline(teacher_checkpoint, small_data, tmp_path):
    offline = fit("offline", small_data, tmp_path, 4, teacher_checkpoint=teacher_checkpoint)
    rco = fit("rco", small_data, tmp_path, 4, teacher_route=[teacher_checkpoint])
    assert all(torch.equal(v, rco.student.state_dict()[k]) for k, v in offline.student.state_dict().items())


class ActiveAnchors(L.Callback):
    def __init__(self) -> None:
        self.seen: list[int] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.seen.append(int(trainer.callback_metrics["train/anchor_step"]))


def test_the_student_follows_the_route_anchor_by_anchor(teacher_anchors, teacher_checkpoint, small_data, tmp_path):
    anchors = read_route(str(teacher_anchors))
    watch = ActiveAnchors()
    model = fit("rco", small_data, tmp_path, 6, [watch], teacher_route=[*anchors, teacher_checkpoint])
    assert watch.seen == [1, 1, 2, 2, 3, 3]
    caches = model.teacher_source.anchor_logits
    assert len(caches) == 3 and not torch.equal(caches[0], caches[2])  # three teachers, three caches
