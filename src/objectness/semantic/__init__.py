"""Semantic segmentation from f_A: the model, fine-tuning, scoring and class maps of users' images
(docs/method.md#semantic-fine-tuning)."""
