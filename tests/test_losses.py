import math

import torch

from bert2textcnn.distill.losses import StudentTargets, kd_loss, student_loss


def test_kd_matches_hand_computation_including_t_squared():
    student = torch.tensor([[1.0, 0.0, -1.0], [0.5, 0.5, 2.0]])
    teacher = torch.tensor([[2.0, 1.0, 0.0], [0.0, 1.0, 1.0]])
    temperature = 3.0
    expected = 0.0
    for s_row, t_row in zip(student.tolist(), teacher.tolist(), strict=True):
        p = [math.exp(v / temperature) for v in t_row]
        q = [math.exp(v / temperature) for v in s_row]
        p = [v / sum(p) for v in p]
        q = [v / sum(q) for v in q]
        expected += sum(pi * math.log(pi / qi) for pi, qi in zip(p, q, strict=True))
    expected = expected / len(student) * temperature**2
    assert math.isclose(kd_loss(student, teacher, temperature).item(), expected, rel_tol=1e-5)


def test_kd_is_zero_when_student_equals_teacher():
    logits = torch.randn(8, 4)
    assert kd_loss(logits, logits.clone(), 2.0).abs().item() < 1e-6


def test_kd_direction_is_teacher_to_student():
    """KL(p_t ‖ p_s) is not symmetric; swapping the arguments must change the value."""
    s, t = torch.tensor([[3.0, 0.0]]), torch.tensor([[0.0, 1.0]])
    assert not math.isclose(kd_loss(s, t, 1.0).item(), kd_loss(t, s, 1.0).item(), rel_tol=1e-3)


def test_student_loss_mixes_terms_with_alpha():
    s, t, y = torch.randn(5, 3), torch.randn(5, 3), torch.tensor([0, 1, 2, 1, 0])
    terms = student_loss(s, t, y, StudentTargets(alpha=0.3, temperature=2.0, trust_labels=False))
    expected = 0.3 * kd_loss(s, t, 2.0) + 0.7 * torch.nn.functional.cross_entropy(s, y)
    assert torch.allclose(terms["loss_student"], expected)
    assert torch.allclose(terms["loss_ce_student"], torch.nn.functional.cross_entropy(s, y))


def test_trust_labels_drops_kd_where_the_teacher_is_wrong():
    s = torch.tensor([[0.2, 0.1], [1.0, -1.0], [0.3, 0.9]])
    t = torch.tensor([[2.0, -2.0], [3.0, 0.0], [-1.0, 1.0]])  # top classes 0, 0, 1
    y = torch.tensor([1, 0, 1])  # the teacher is wrong on row 0 only
    alpha, temperature = 0.7, 2.0
    terms = student_loss(s, t, y, StudentTargets(alpha, temperature, trust_labels=True))
    kd = (
        torch.nn.functional.kl_div(
            torch.log_softmax(s / temperature, -1), torch.softmax(t / temperature, -1), reduction="none"
        ).sum(-1)
        * temperature**2
    )
    ce = torch.nn.functional.cross_entropy(s, y, reduction="none")
    expected = (ce[0] + alpha * kd[1] + (1 - alpha) * ce[1] + alpha * kd[2] + (1 - alpha) * ce[2]) / 3
    assert torch.allclose(terms["loss_student"], expected)
    assert math.isclose(terms["teacher_disagrees"].item(), 1 / 3, rel_tol=1e-6)
    plain = student_loss(s, t, y, StudentTargets(alpha, temperature, trust_labels=False))
    assert not torch.allclose(plain["loss_student"], expected) and "teacher_disagrees" not in plain
