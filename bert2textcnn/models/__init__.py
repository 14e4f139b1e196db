"""The student (TextCNN) and the teacher (a Hugging Face BERT classifier)."""
