"""Benchmark metrics and the baselines they are compared with.

Conventions (SPEC section 3): soft objectness maps are binarised at 0.5, the
same for every benchmark; video scores are averaged over the annotated frames
of a sequence, then over sequences (DAVIS).
"""

import math

import numpy as np
import torch

# Fraction of image height (and width) used as the Gaussian's standard deviation.
# The blob exceeds 0.5 inside the ellipse (dy/sy)^2 + (dx/sx)^2 <= 2 ln 2, whose area
# is 2 ln 2 * pi * sigma_frac^2 of the image: 0.24 -> 25.1 % of the image.
CENTRE_PRIOR_SIGMA_FRAC = 0.24


def _as_bool_array(mask):
    if isinstance(mask, torch.Tensor):
        mask = mask.detach().cpu().numpy()
    return np.asarray(mask, dtype=bool)


def jaccard(pred, gt):
    """Intersection over union of two boolean masks (numpy or torch); 1.0 when both are empty (DAVIS)."""
    pred, gt = _as_bool_array(pred), _as_bool_array(gt)
    if pred.shape != gt.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from ground-truth shape {gt.shape}")
    union = np.logical_or(pred, gt).sum()
    if union == 0:
        return 1.0
    return float(np.logical_and(pred, gt).sum() / union)


def centre_prior(height, width, sigma_frac=CENTRE_PRIOR_SIGMA_FRAC):
    """The centre-prior baseline: a Gaussian blob at the image centre, 1 there, in 0..1.

    The standard deviations are sigma_frac * height and sigma_frac * width, so the blob
    is an ellipse with the image's aspect ratio; thresholded at 0.5 it covers
    2 ln 2 * pi * sigma_frac^2 of the image (about 25 % for the default 0.24).
    Returns a float32 (height, width) numpy array.
    """
    # Pixel centres, measured from the image centre in units of image size.
    y = (np.arange(height) + 0.5) / height - 0.5  # (height,)
    x = (np.arange(width) + 0.5) / width - 0.5  # (width,)
    squared_distance = (y[:, None] ** 2 + x[None, :] ** 2) / sigma_frac**2  # (height, width)
    return np.exp(-0.5 * squared_distance).astype(np.float32)


def centre_prior_area(sigma_frac=CENTRE_PRIOR_SIGMA_FRAC):
    """Fraction of the image where centre_prior exceeds 0.5 (continuous limit)."""
    return 2 * math.log(2) * math.pi * sigma_frac**2


def sequence_mean(values_by_sequence):
    """Mean over sequences of the per-sequence mean: {sequence: [per-frame values]} -> float."""
    if not values_by_sequence:
        raise ValueError("no sequences to average")
    empty = [name for name, values in values_by_sequence.items() if len(values) == 0]
    if empty:
        raise ValueError(f"sequence {empty[0]!r} has no values")
    return float(np.mean([np.mean(values) for values in values_by_sequence.values()]))
