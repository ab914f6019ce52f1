"""Segmenting with fixed weights: test-time sizes, f_A's forward pass, the guided filter, the segmenter,
the centre-prior baseline and the label-free choice of the objectness channel (docs/method.md#using-the-trained-model)."""
