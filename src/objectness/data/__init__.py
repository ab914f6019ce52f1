"""Unlabeled training data: frames and videos, the training sources, frame pairs and their augmentation,
the cached classical flow, synthetic video, and frames held on the GPU (docs/method.md#training)."""
