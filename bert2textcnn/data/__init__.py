"""Reading labelled text, student vocabularies and the Lightning data module."""
