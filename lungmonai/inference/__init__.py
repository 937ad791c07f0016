"""Inference on a new CT, outside any cache: what the inference bundles and the pipeline call."""
