import torch
from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score, MulticlassPrecision, MulticlassRecall

from bert2textcnn.distill.metrics import ClassificationMetrics


def test_figures_agree_with_torchmetrics():
    torch.manual_seed(0)
    logits, target = torch.randn(200, 3), torch.randint(0, 3, (200,))
    metrics = ClassificationMetrics(["a", "b", "c"])
    for chunk in range(0, 200, 50):
        metrics.update(logits[chunk : chunk + 50], target[chunk : chunk + 50])
    values = metrics.compute()
    preds = logits.argmax(-1)
    assert torch.isclose(values["macro_f1"].float(), MulticlassF1Score(3, average="macro")(preds, target))
    assert torch.isclose(values["accuracy"].float(), MulticlassAccuracy(3, average="micro")(preds, target))
    assert torch.allclose(values["precision"].float(), MulticlassPrecision(3, average=None)(preds, target))
    assert torch.allclose(values["recall"].float(), MulticlassRecall(3, average=None)(preds, target))
    flat = metrics.scalars(values, "val/student_")
    assert set(flat) >= {"val/student_macro_f1", "val/student_precision_b", "val/student_recall_c"}
    report = metrics.report(values, "title")
    assert "macro avg" in report and report.count("\n") == 6
