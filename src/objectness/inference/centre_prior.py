"""The centre-prior baseline: a Gaussian blob at the image centre, the map of a model that has learned nothing.

``objectness segment`` and ``objectness evaluate`` take it as ``--checkpoint centre-prior``.
"""
import math

import numpy as np

# Fraction of image height (and width) used as the Gaussian's standard deviation.
# The blob exceeds 0.5 inside the ellipse (dy/sy)^2 + (dx/sx)^2 <= 2 ln 2, whose area
# is 2 ln 2 * pi * sigma_frac^2 of the image: 0.24 -> 25.1 % of the image.
CENTRE_PRIOR_SIGMA_FRAC = 0.24


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
