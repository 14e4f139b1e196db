"""Training: pure loss functions, the teacher gate, optimizers, evaluation and metrics, and the
schemes (one file each, registered in ``schemes/__init__.py``)."""
