"""Measuring: the benchmark (every scheme and student, seeds, report), its figures, and speed."""
