"""A tiny, randomly initialised BERT teacher saved to disk, so tests never need real weights."""

from __future__ import annotations

from pathlib import Path


def save_tiny_teacher(directory: Path, texts: list[str]) -> Path:
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    chars = sorted({c for text in texts for c in text.lower() if not c.isspace()})
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "vocab.txt").write_text("\n".join(specials + chars) + "\n", encoding="utf-8")
    tokenizer = BertTokenizerFast(vocab_file=str(directory / "vocab.txt"), do_lower_case=False)
    tokenizer.save_pretrained(directory)
    config = BertConfig(
        vocab_size=len(specials) + len(chars),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=256,
    )
    BertForSequenceClassification(config).save_pretrained(directory)
    return directory
