"""Using a trained student: standalone prediction, the predict writer, ONNX export and torch-free
serving (``serving`` imports no torch)."""
