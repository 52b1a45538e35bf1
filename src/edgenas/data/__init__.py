"""Datasets and transforms on plain torch + PIL."""
