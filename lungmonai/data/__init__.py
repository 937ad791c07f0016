"""Datasets and samplers over the prepared candidate table and split."""
