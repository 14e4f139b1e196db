"""A tiny, randomly initialised BERT teacher saved to disk, so tests never need real weights."""

from __future__ import annotations

from pathlib import Path


def save_tiny_teacher(directory: Path, texts: list[str]) -> Path:
    import json

    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    chars = sorted({c for text in texts for c in text.lower() if not c.isspace()})
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "vocab.txt").write_text("\n".join(specials + chars) + "\n", encoding="utf-8")
    # Loaded from the folder, as a real teacher is: `BertTokenizerFast(vocab_file=…)` silently ignores
    # the file under transformers 5 and maps every character to [UNK].
    config_file = directory / "tokenizer_config.json"
    config_file.write_text(json.dumps({"tokenizer_class": "BertTokenizer", "do_lower_case": False}), encoding="utf-8")
    tokenizer = AutoTokenizer.from_pretrained(directory)
    if tokenizer.tokenize(chars[-1]) != [chars[-1]]:
        raise RuntimeError(f"the tiny teacher's tokenizer does not know its own vocabulary ({directory})")
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
