"""The scheme registry: ``--scheme NAME`` picks one of these LightningModules.

A new scheme is one file with a ``DistillationModule`` subclass, added to ``SCHEMES`` here.
"""

from bert2textcnn.distill.schemes.base import DistillationModule
from bert2textcnn.distill.schemes.fastbert import FastBertScheme
from bert2textcnn.distill.schemes.joint_coupled import JointCoupledScheme
from bert2textcnn.distill.schemes.joint_isolated import JointIsolatedScheme
from bert2textcnn.distill.schemes.multi_teacher import MultiTeacherScheme
from bert2textcnn.distill.schemes.multitask import MultitaskScheme
from bert2textcnn.distill.schemes.offline import OfflineScheme
from bert2textcnn.distill.schemes.rco import RcoScheme
from bert2textcnn.distill.schemes.student import StudentScheme
from bert2textcnn.distill.schemes.teacher import TeacherScheme
from bert2textcnn.distill.schemes.theseus import TheseusScheme

SCHEMES: dict[str, type[DistillationModule]] = {
    cls.name: cls
    for cls in (
        StudentScheme,
        TeacherScheme,
        OfflineScheme,
        JointIsolatedScheme,
        JointCoupledScheme,
        MultitaskScheme,
        MultiTeacherScheme,
        RcoScheme,
        TheseusScheme,
        FastBertScheme,
    )
}
DEFAULT_SCHEME = "joint_isolated"


def describe(name: str) -> str:
    """The scheme's one-line summary: the first line of its class docstring."""
    return (SCHEMES[name].__doc__ or "").strip().splitlines()[0]
