"""Datasets as class-indexed uint8 tensors, with their normalization statistics."""

from ddtool.data.dataset import ImageData, load_dataset

__all__ = ["ImageData", "load_dataset"]
