"""FastBERT: batched early exit gives what one text at a time gives and really shrinks the batch;
the two stages move what they say; a run predicts with exit layers from its checkpoint."""

from __future__ import annotations

import csv
import json
import math

import lightning as L
import pytest
import torch
from test_gradient_flow import grads
from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

from bert2textcnn.commands import speed
from bert2textcnn.data.datamodule import TextDataModule
from bert2textcnn.distill.metrics import ClassificationMetrics
from bert2textcnn.distill.schemes import SCHEMES
from bert2textcnn.errors import UserError
from bert2textcnn.inference.export import export_student
from bert2textcnn.inference.prediction_writer import PredictionWriter
from bert2textcnn.inference.predictor import StudentPredictor
from bert2textcnn.models.bert import BertClassifier
from bert2textcnn.models.fastbert import FastBert, normalised_entropy

TEXTS = [
    "加微信领取免费会员",
    "今天地铁又晚点了",
    "恭喜您中奖了请点击链接领取",
    "好",
    "明天开会",
    "点击链接",
    "你好呀朋友们今天天气很好",
]


@pytest.fixture
def four_layers(tiny_teacher) -> FastBert:
    """A random 4-layer FastBERT whose branches are sharp enough that texts leave at every depth."""
    torch.manual_seed(3)
    config = BertConfig(vocab_size=AutoTokenizer.from_pretrained(tiny_teacher).vocab_size, hidden_size=32,
                        num_hidden_layers=4, num_attention_heads=2, intermediate_size=64, num_labels=2)  # fmt: skip
    bert = BertClassifier(BertForSequenceClassification(config), AutoTokenizer.from_pretrained(tiny_teacher))
    model = FastBert(bert, branch_hidden=16).eval()
    with torch.no_grad():
        for branch in model.branches:
            branch.head[-1].weight.mul_(30)
    return model


def entropy_quantile(model: FastBert, texts: list[str], layer: int, q: float) -> float:
    inputs = model.encode(texts)
    with torch.no_grad():
        full = model.backbone(**inputs)
        return float(
            normalised_entropy(model.branch_logits(full.hidden_states, inputs["attention_mask"])[layer]).quantile(q)
        )


def test_normalised_entropy_is_zero_when_sure_and_one_when_uniform():
    u = normalised_entropy(torch.tensor([[0.0, 0.0, 0.0], [50.0, 0.0, 0.0]]))
    assert torch.allclose(u, torch.tensor([1.0, 0.0], dtype=u.dtype), atol=1e-6)
    nearly_even = normalised_entropy(torch.tensor([[0.0, 3e-4], [0.0, 1e-4]]))  # an untrained branch's
    assert (nearly_even < 1.0).all()  # so at speed 1 such a text still leaves at its first branch


def test_at_speed_zero_every_text_runs_every_layer_and_gets_the_berts_own_logits(four_layers):
    inputs = four_layers.encode(TEXTS)
    with torch.no_grad():
        plain = four_layers.backbone(**inputs).logits
        output = four_layers(**inputs)
        looped = four_layers.exit_early(**inputs, speed=0.0)  # the layer-by-layer loop, nobody leaving
    assert torch.equal(output.logits, plain) and (output.exit_layers == 4).all()
    assert torch.allclose(looped.logits, plain, atol=1e-5) and (looped.exit_layers == 4).all()


def test_batched_exit_equals_one_text_at_a_time_and_leaves_no_row_without_an_output(four_layers):
    four_layers.speed = entropy_quantile(four_layers, TEXTS, 0, 0.4)  # about 40 % leave at layer 1
    inputs = four_layers.encode(TEXTS)
    seen: list[int] = []  # the rows each layer computes
    hooks = [layer.register_forward_pre_hook(lambda m, args: seen.append(args[0].size(0)))
             for layer in four_layers.backbone.model.base_model.encoder.layer]  # fmt: skip
    with torch.no_grad():
        batched = four_layers(**inputs)
        for hook in hooks:
            hook.remove()
        singles = [four_layers(**four_layers.encode([text])) for text in TEXTS]
        full = four_layers.backbone(**inputs)
        every_exit = [*four_layers.branch_logits(full.hidden_states, inputs["attention_mask"]), full.logits]
    assert torch.isfinite(batched.logits).all() and ((batched.exit_layers >= 1) & (batched.exit_layers <= 4)).all()
    assert len(set(batched.exit_layers.tolist())) >= 2, batched.exit_layers  # texts left at different depths
    assert torch.equal(batched.exit_layers, torch.cat([s.exit_layers for s in singles]))
    assert torch.allclose(batched.logits, torch.cat([s.logits for s in singles]), atol=1e-5)
    for row, layer in enumerate(batched.exit_layers.tolist()):  # each row's answer is its exit's classifier's
        assert torch.allclose(batched.logits[row], every_exit[layer - 1][row], atol=1e-5)
    assert seen[0] == len(TEXTS) and seen == sorted(seen, reverse=True) and seen[-1] < len(TEXTS)  # compute shrinks
    assert sum(seen) == int(batched.exit_layers.sum())  # each text ran exactly the layers up to its exit


def test_speed_one_sends_every_text_out_at_the_first_layer(four_layers):
    four_layers.speed = 1.0 + 1e-6  # every normalised entropy is below it
    with torch.no_grad():
        assert (four_layers(**four_layers.encode(TEXTS)).exit_layers == 1).all()


def fastbert(tiny_teacher, small_data, **options):
    L.seed_everything(5, verbose=False)
    data = TextDataModule(train_path=str(small_data["train"]), val_path=str(small_data["val"]), batch_size=16)
    model = SCHEMES["fastbert"](
        labels=data.labels, vocab=data.vocab, max_length=data.max_length, teacher=str(tiny_teacher), **options
    )
    return data, model


class Stage:
    """A trainer stand-in: the epoch decides the stage."""

    def __init__(self, epoch: int, max_epochs: int = 2) -> None:
        self.current_epoch, self.max_epochs = epoch, max_epochs


def test_stage_one_moves_the_backbone_stage_two_only_the_branches(tiny_teacher, small_data, monkeypatch):
    data, model = fastbert(tiny_teacher, small_data, branch_ce=0.5)
    data.setup("fit")
    batch = model.on_before_batch_transfer(next(iter(data.train_dataloader())), 0)
    backbone, branches = model.student.backbone, model.student.branches
    monkeypatch.setattr(type(model), "current_epoch", property(lambda self: self._epoch))
    monkeypatch.setattr(type(model), "stage_one_epochs", property(lambda self: 1))
    model._epoch = 0
    terms = model.loss_terms(batch)
    assert terms["stage"].item() == 1
    assert all(
        g is None
        for g in torch.autograd.grad(terms["loss"], list(branches.parameters()), allow_unused=True, retain_graph=True)
    )
    assert any(g is not None and g.abs().sum() > 0 for g in grads(terms["loss"], backbone))
    model._epoch = 1
    terms = model.loss_terms(batch)
    assert terms["stage"].item() == 2 and {"loss_kd_layer1", "loss_ce_layer1"} <= terms.keys()
    assert all(
        g is None
        for g in torch.autograd.grad(terms["loss"], list(backbone.parameters()), allow_unused=True, retain_graph=True)
    )
    assert all(g is not None and g.abs().sum() > 0 for g in grads(terms["loss"], branches))
    # The stage-2 loss by hand: KL(p_final ‖ p_branch) + 0.5 · CE(branch, y), the final one on a dropout-free pass.
    inputs = batch["student_inputs"]
    with torch.no_grad():
        full = model.student.backbone.eval()(**inputs)
        branch = model.student.branches[0](full.hidden_states[1], inputs["attention_mask"])
        p = full.logits.softmax(-1)
        kl = (p * (p.log() - branch.log_softmax(-1))).sum(-1).mean()
        ce = torch.nn.functional.cross_entropy(branch, batch["label"])
    # KL between near-equal distributions cancels: float32 leaves ~1e-8 of absolute noise, hence abs_tol.
    assert math.isclose(terms["loss"].item(), (kl + 0.5 * ce).item(), rel_tol=1e-4, abs_tol=1e-6)
    batch["label"] = torch.full_like(batch["label"], -1)  # unlabelled rows: self-distillation alone
    unlabelled = model.loss_terms(batch)
    assert math.isclose(unlabelled["loss"].item(), kl.item(), rel_tol=1e-4, abs_tol=1e-6)
    assert unlabelled["loss_ce_layer1"] == 0


def read_rows(path) -> list[dict[str, str]]:
    with open(path, encoding="utf-8", newline="") as file:
        return list(csv.DictReader(file))


def fit(model, data, tmp_path, epochs: int, **trainer):
    trainer = L.Trainer(max_epochs=epochs, limit_val_batches=2, logger=False, enable_progress_bar=False,
                        enable_model_summary=False, default_root_dir=tmp_path, num_sanity_val_steps=0,
                        **trainer)  # fmt: skip
    trainer.fit(model, datamodule=data)
    return trainer


class Snapshots(L.Callback):
    """The backbone's and the branches' weights at the end of each training epoch."""

    def __init__(self) -> None:
        self.states: list[tuple[torch.Tensor, torch.Tensor]] = []

    def on_train_epoch_end(self, trainer, module) -> None:
        flat = [torch.cat([p.detach().flatten().clone() for p in part.parameters()])
                for part in (module.student.backbone, module.student.branches)]  # fmt: skip
        self.states.append((flat[0], flat[1]))


def test_a_run_fine_tunes_then_trains_the_branches_and_predicts_with_exit_layers(tiny_teacher, small_data, tmp_path):
    data, model = fastbert(tiny_teacher, small_data, branch_epochs=1, speed=0.5)
    start = torch.cat([p.detach().flatten().clone() for p in model.student.branches.parameters()])
    snapshots = Snapshots()
    trainer = fit(model, data, tmp_path, epochs=3, callbacks=[snapshots])
    (backbone_1, branches_1), (backbone_2, branches_2), (backbone_3, branches_3) = snapshots.states
    assert torch.equal(branches_1, start) and torch.equal(branches_2, start)  # stage 1: branches untouched
    assert not torch.equal(backbone_1, backbone_2)  # the backbone fine-tunes
    assert torch.equal(backbone_2, backbone_3) and not torch.equal(branches_2, branches_3)  # stage 2
    assert {"val/layer1_macro_f1", "val/layer2_macro_f1", "val/avg_layers", "val/exit_share_layer1"} <= set(
        trainer.callback_metrics
    )
    checkpoint = tmp_path / "fastbert.ckpt"
    trainer.save_checkpoint(checkpoint)
    with pytest.raises(UserError, match="FastBERT is not exported"):
        export_student(checkpoint, tmp_path / "export", ["好"])
    assert not (tmp_path / "export" / "student.onnx").exists()
    predictor = StudentPredictor.from_checkpoint(checkpoint)  # rebuilt from its description alone
    assert isinstance(predictor.student, FastBert) and predictor.student.layers == 2
    texts = read_rows(small_data["val"])[:12]
    with torch.no_grad():
        expected = model.student.eval()(**model.student.encode([r["text"] for r in texts]))
    (tmp_path / "predict.csv").write_text("text\n" + "\n".join(r["text"] for r in texts) + "\n", encoding="utf-8")
    predict_data = TextDataModule(predict_path=str(tmp_path / "predict.csv"), checkpoint=str(checkpoint))
    _, fresh = fastbert(tiny_teacher, small_data, speed=0.5)
    writer = PredictionWriter(str(tmp_path / "out.csv"))
    L.Trainer(logger=False, enable_progress_bar=False, default_root_dir=tmp_path, callbacks=[writer]).predict(
        fresh, datamodule=predict_data, ckpt_path=checkpoint
    )
    rows = read_rows(tmp_path / "out.csv")
    assert [int(r["exit_layer"]) for r in rows] == expected.exit_layers.tolist()
    assert [float(r[f"prob_{data.labels[1]}"]) for r in rows] == pytest.approx(
        expected.logits.softmax(-1)[:, 1].tolist(), abs=1e-5
    )
    # `speed` on it: the speed/quality curve, each speed's macro-F1 that of the model's own predictions.
    speed(str(checkpoint), str(small_data["val"]), speeds=[0.0, 0.5, 1.0], latency_texts=5, min_seconds=0.01,
          output=str(tmp_path / "curve.json"))  # fmt: skip
    curve = json.loads((tmp_path / "curve.json").read_text(encoding="utf-8"))["exit_curve"]
    records = read_rows(small_data["val"])
    targets = torch.tensor([data.labels.index(r["label"]) for r in records])
    for point in curve:
        predictor.student.speed = point["speed"]
        with torch.no_grad():
            out = predictor.student(**predictor.student.encode([r["text"] for r in records]))
        metrics = ClassificationMetrics(data.labels)
        metrics.update(out.logits, targets)
        assert point["macro_f1"] == pytest.approx(metrics.compute()["macro_f1"].item(), abs=1e-6)
        assert point["avg_layers"] == pytest.approx(out.exit_layers.float().mean().item())
    assert curve[0]["avg_layers"] == 2 and curve[-1]["avg_layers"] < 2  # s = 1 lets (nearly) every text out


def test_a_fine_tuned_teacher_is_the_backbone_and_never_moves(tiny_teacher, teacher_checkpoint, small_data, tmp_path):
    data, model = fastbert(tiny_teacher, small_data, teacher_checkpoint=teacher_checkpoint)
    model.configure_model()
    teacher = torch.load(teacher_checkpoint, weights_only=True)["state_dict"]
    backbone = {f"teacher.{k}": v.clone() for k, v in model.student.backbone.state_dict().items()}
    assert all(torch.equal(backbone[k], teacher[k]) for k in backbone)  # the fine-tuned weights, not the folder's
    fit(model, data, tmp_path, epochs=1)  # every epoch is stage 2
    after = {f"teacher.{k}": v for k, v in model.student.backbone.state_dict().items()}
    assert all(torch.equal(after[k], backbone[k]) for k in backbone)


def test_refusals(tiny_teacher, small_data, tmp_path):
    data, model = fastbert(tiny_teacher, small_data, branch_epochs=2)
    with pytest.raises(UserError, match="must exceed"):
        fit(model, data, tmp_path, epochs=2)
    with pytest.raises(UserError, match="at least 2 layers"):
        fastbert(tiny_teacher, small_data, student_layers=1)
    with pytest.raises(UserError, match="speed must lie"):
        fastbert(tiny_teacher, small_data, speed=1.5)
