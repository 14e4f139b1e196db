"""Distil a BERT teacher into a fast TextCNN student with PyTorch Lightning.

python -m bert2textcnn fit --scheme joint_isolated     # bundled demo data, default teacher
python -m bert2textcnn --help                          # every scheme, one line each
"""

import os

# Weights come only from local directories or installed packages: never let Hugging Face
# reach for a hub. Set before transformers is imported anywhere in the package.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

__version__ = "0.1.0"
