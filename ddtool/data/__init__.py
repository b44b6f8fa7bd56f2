"""Datasets as class-indexed uint8 tensors, with their normalization statistics."""

from ddtool.data.dataset import ImageData

__all__ = ["ImageData"]
