"""objectness: AMD, zero-shot object segmentation learned from unlabeled video."""

__version__ = "0.1.0"
