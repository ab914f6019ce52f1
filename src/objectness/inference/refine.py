"""Edge-aware refinement of objectness maps by the guided filter (not the paper's).

f_A predicts its masks at 1/8 of the resolution it runs at, so the upsampled
objectness map is smooth where the object's outline is sharp. The guided filter
(He, Sun and Tang, "Guided Image Filtering", ECCV 2010) re-expresses the map,
in every window of the image, as an affine function of the image's colours:
the map's edges move onto the image's edges, and regions of one colour take one
value. It sees the image and the map only: no learning, no labels.
``data.test_guided_radius`` 0 (the paper, and the default) leaves maps as f_A made them.
"""
from __future__ import annotations

import cv2
import numpy as np


def guided_radius_pixels(radius: float, height: int, width: int) -> int:
    """The window radius in pixels for a radius given as a fraction of the shorter edge."""
    return max(1, round(radius * min(height, width)))


def _box(x: np.ndarray, radius: int) -> np.ndarray:
    """The mean over the (2r+1)^2 window around each pixel (mirrored at the borders)."""
    size = 2 * radius + 1
    return cv2.boxFilter(x, -1, (size, size), borderType=cv2.BORDER_REFLECT)


def guided_filter(image: np.ndarray, soft_map: np.ndarray, radius: int, eps: float) -> np.ndarray:
    """The guided filter of ``soft_map`` (H, W) with the colour ``image`` (H, W, 3) as guide.

    image: uint8 0..255 or float 0..1; radius: window radius in pixels; eps:
    regularisation (in squared colour units of 0..1): the larger, the more the
    output follows the map rather than the image. Returns float32 (H, W).
    """
    guide = image.astype(np.float32) / (255.0 if image.dtype == np.uint8 else 1.0)
    p = soft_map.astype(np.float32)
    if guide.shape[:2] != p.shape or guide.ndim != 3 or guide.shape[2] != 3:
        raise ValueError(f"guided filter: image {image.shape} and map {soft_map.shape} do not match")
    channels = [np.ascontiguousarray(guide[..., c]) for c in range(3)]
    mean_i = [_box(c, radius) for c in channels]
    mean_p = _box(p, radius)
    cov_ip = [_box(c * p, radius) - m * mean_p for c, m in zip(channels, mean_i)]

    # The colour covariance in each window, a symmetric 3 x 3 matrix with eps on its diagonal.
    def covariance(i, j):
        return _box(channels[i] * channels[j], radius) - mean_i[i] * mean_i[j] + (eps if i == j else 0.0)

    rr, rg, rb, gg, gb, bb = (covariance(i, j) for i, j in ((0, 0), (0, 1), (0, 2), (1, 1), (1, 2), (2, 2)))
    # a = its inverse times cov_ip, per pixel, by cofactors (the inverse is symmetric too).
    inv_rr, inv_rg, inv_rb = gg * bb - gb * gb, rb * gb - rg * bb, rg * gb - rb * gg
    inv_gg, inv_gb, inv_bb = rr * bb - rb * rb, rg * rb - rr * gb, rr * gg - rg * rg
    det = rr * inv_rr + rg * inv_rg + rb * inv_rb
    cov_r, cov_g, cov_b = cov_ip
    a = [(inv_rr * cov_r + inv_rg * cov_g + inv_rb * cov_b) / det,
         (inv_rg * cov_r + inv_gg * cov_g + inv_gb * cov_b) / det,
         (inv_rb * cov_r + inv_gb * cov_g + inv_bb * cov_b) / det]
    b = mean_p - sum(a[i] * mean_i[i] for i in range(3))
    return sum(_box(a[i], radius) * channels[i] for i in range(3)) + _box(b, radius)


def refine_objectness(image: np.ndarray, soft_map: np.ndarray, radius: float, eps: float) -> np.ndarray:
    """``soft_map`` (H, W) in 0..1 refined by the guided filter of ``image`` (H, W, 3), with a
    radius of ``radius`` times the shorter edge, clipped to 0..1; radius 0 returns it as is."""
    if radius == 0:
        return soft_map
    pixels = guided_radius_pixels(radius, *soft_map.shape)
    return np.clip(guided_filter(image, soft_map, pixels, eps), 0.0, 1.0)
