"""Compatibility with a model in production: old models as frozen teachers and references."""
