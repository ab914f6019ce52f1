"""A still-image saliency prior with no learning: robust background detection (not the paper's).

Zhu, Liang, Wei and Sun, "Saliency Optimization from Robust Background
Detection" (CVPR 2014; "RBD" in the paper's Table 1, F-beta 0.510 on
DUTS-TE). An image is cut into superpixels (SLIC, scikit-image); a region
that is a large part of the image's border, measured along colour-geodesic
paths (its *boundary connectivity*), is background; the rest is weighted by
its colour contrast against the background near it; and one least-squares
problem on the superpixel graph makes the map smooth where colours are alike.
It reads the image and nothing else. ``rbd_saliency`` gives the map; it is the
second teacher of still images (training/image_targets.py), beside the
objectness that a model learned from video.

``loss.image_prior`` picks which prior teaches: ``rbd`` (the map above, at 300
superpixels) or ``rbd-contrast``: the mean of RBD at 150, 300 and 600
superpixels and of a centre-weighted region contrast (``contrast_saliency``:
Cheng et al., "Global contrast based salient region detection", CVPR 2011,
with a Gaussian centre weight): a second cue, how a region's colour differs
from the rest of the image near it, beside how it connects to the border.
"""
from __future__ import annotations

from functools import partial
from typing import NamedTuple

import numpy as np
from scipy import sparse
from scipy.sparse import linalg as sparse_linalg
from scipy.sparse.csgraph import shortest_path

from ..config import IMAGE_PRIORS

SIGMA_COLOUR = 10.0  # Lab distance scale of the geodesic area and the smoothness weights (the paper's sigma_clr)
SIGMA_BOUNDARY = 1.0  # boundary connectivity -> background probability (sigma_bndCon)
SIGMA_SPACE = 0.25  # spatial scale of the contrast, in units of the image's size (sigma_spa)
SMOOTH_FLOOR = 0.1  # mu: every neighbour pair is pulled together a little, whatever its colours
GEODESIC_CLIP = 3.0  # Lab steps below this are noise inside one region: they cost nothing on a path


class Superpixels(NamedTuple):
    """An image's SLIC superpixels: labels (H, W), and per superpixel its mean Lab colour (n, 3), its
    centre (n, 2; y, x in 0..1 of the image's height and width) and its pixel count (n,; 0 for a label
    SLIC left unused)."""

    labels: np.ndarray
    colour: np.ndarray
    centre: np.ndarray
    counts: np.ndarray


def rbd_saliency(image: np.ndarray, superpixels: int = 300) -> np.ndarray:
    """The robust-background-detection saliency of an (H, W, 3) uint8 RGB image: (H, W) float32 in 0..1."""
    return _rbd(_superpixels(image, superpixels))


def _rbd(regions: Superpixels) -> np.ndarray:
    """rbd_saliency from the image's superpixel summary."""
    labels, colour, centre, counts = regions
    n = len(counts)
    present = counts > 0

    neighbours = _neighbour_pairs(labels, n)  # (E, 2)
    border = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    colour_distance = np.linalg.norm(colour[:, None] - colour[None], axis=-1)  # (n, n)

    # Boundary connectivity: the share of a region's geodesic area that lies on the border.
    steps = np.maximum(colour_distance[neighbours[:, 0], neighbours[:, 1]] - GEODESIC_CLIP, 0) + 1e-6
    border_pairs = np.array([(a, b) for a in border for b in border if a < b], dtype=np.int64).reshape(-1, 2)
    edges = np.concatenate([neighbours, border_pairs])  # the border's regions are joined: one background
    weights = np.concatenate([steps, np.maximum(colour_distance[border_pairs[:, 0], border_pairs[:, 1]]
                                                - GEODESIC_CLIP, 0) + 1e-6])
    graph = sparse.coo_matrix((weights, (edges[:, 0], edges[:, 1])), shape=(n, n)).tocsr()
    geodesic = shortest_path(graph, directed=False)  # (n, n)
    reach = np.exp(-geodesic ** 2 / (2 * SIGMA_COLOUR ** 2)) * present[None]
    area = reach.sum(1)
    on_border = np.zeros(n, dtype=bool)
    on_border[border] = True
    length = reach[:, on_border].sum(1)
    connectivity = length / np.sqrt(np.maximum(area, 1e-12))
    background = 1 - np.exp(-connectivity ** 2 / (2 * SIGMA_BOUNDARY ** 2))  # (n,)

    # Background-weighted contrast: unlike the background near it, a region is foreground.
    space = np.linalg.norm(centre[:, None] - centre[None], axis=-1)
    contrast = (colour_distance * np.exp(-space ** 2 / (2 * SIGMA_SPACE ** 2)) * (background * present)[None]).sum(1)
    foreground = _unit(contrast)

    # min sum bg s^2 + sum fg (1 - s)^2 + sum_{neighbours} w (s_i - s_j)^2.
    smooth = np.exp(-colour_distance[neighbours[:, 0], neighbours[:, 1]] ** 2 / (2 * SIGMA_COLOUR ** 2)) + SMOOTH_FLOOR
    w = sparse.coo_matrix((np.concatenate([smooth, smooth]),
                           (np.concatenate([neighbours[:, 0], neighbours[:, 1]]),
                            np.concatenate([neighbours[:, 1], neighbours[:, 0]]))), shape=(n, n)).tocsr()
    laplacian = sparse.diags(np.asarray(w.sum(1)).ravel()) - w
    system = (laplacian + sparse.diags(background + foreground + 1e-6)).tocsc()
    saliency = sparse_linalg.spsolve(system, foreground)
    return _unit(saliency)[labels].astype(np.float32)


CONTRAST_SIGMA_SPACE = 0.4  # spatial scale of the region contrast, in units of the image's size
CONTRAST_SIGMA_CENTRE = 0.25  # the centre weight's Gaussian, in units of the image's size
RBD_SUPERPIXELS = (150, 300, 600)  # the scales of ``rbd-contrast``'s RBD
CONTRAST_SUPERPIXELS = 300  # and of its region contrast, one of them (their superpixels are computed once)


def contrast_saliency(image: np.ndarray, superpixels: int = CONTRAST_SUPERPIXELS) -> np.ndarray:
    """Centre-weighted region contrast of an (H, W, 3) uint8 RGB image: (H, W) float32 in 0..1.

    Each superpixel's Lab distance to every other, weighted by the other's area and by
    exp(-d^2 / sigma^2) of the distance d between their centres, times a Gaussian weight of its
    own centre's distance from the image's centre; min-max normalised.
    """
    return _contrast(_superpixels(image, superpixels))


def _contrast(regions: Superpixels) -> np.ndarray:
    """contrast_saliency from the image's superpixel summary."""
    labels, colour, centre, counts = regions
    colour_distance = np.linalg.norm(colour[:, None] - colour[None], axis=-1)
    space = np.linalg.norm(centre[:, None] - centre[None], axis=-1)
    contrast = (colour_distance * np.exp(-space ** 2 / CONTRAST_SIGMA_SPACE ** 2) * counts[None]).sum(1)
    centred = np.exp(-((centre - 0.5) ** 2).sum(1) / (2 * CONTRAST_SIGMA_CENTRE ** 2))
    return _unit(contrast * centred)[labels].astype(np.float32)


def _superpixels(image: np.ndarray, superpixels: int) -> Superpixels:
    """The image's SLIC superpixels and their mean colours, centres and sizes."""
    from skimage.color import rgb2lab
    from skimage.segmentation import slic

    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 RGB image, got {image.dtype} {image.shape}")
    labels = slic(image, n_segments=superpixels, compactness=10, start_label=0)
    n = int(labels.max()) + 1
    height, width = labels.shape
    counts = np.bincount(labels.ravel(), minlength=n).astype(np.float64)
    lab = rgb2lab(image).reshape(-1, 3)
    ys, xs = np.mgrid[0:height, 0:width]
    sums = [np.bincount(labels.ravel(), values.ravel(), minlength=n)
            for values in (lab[:, 0], lab[:, 1], lab[:, 2], ys / height, xs / width)]
    means = np.stack(sums, 1) / np.maximum(counts, 1)[:, None]
    return Superpixels(labels, means[:, :3], means[:, 3:], counts)


def prior_saliency(image: np.ndarray, prior: str = "rbd") -> np.ndarray:
    """The prior ``prior`` (one of IMAGE_PRIORS) of an (H, W, 3) uint8 RGB image: (H, W) float32 in 0..1."""
    _check_prior(prior)
    if prior == "rbd":
        return rbd_saliency(image)
    regions = {n: _superpixels(image, n) for n in RBD_SUPERPIXELS}
    rbd = _unit(np.mean([_rbd(regions[n]) for n in RBD_SUPERPIXELS], axis=0))
    return _unit((rbd + _contrast(regions[CONTRAST_SUPERPIXELS])) / 2).astype(np.float32)


def _check_prior(prior: str) -> None:
    if prior not in IMAGE_PRIORS:
        raise ValueError(f"unknown saliency prior {prior!r}: one of {', '.join(IMAGE_PRIORS)}")


def _neighbour_pairs(labels: np.ndarray, n: int) -> np.ndarray:
    """(E, 2) unique pairs a < b of superpixels that touch (4-neighbourhood)."""
    pairs = np.concatenate([
        np.stack([labels[:, :-1].ravel(), labels[:, 1:].ravel()], 1),
        np.stack([labels[:-1].ravel(), labels[1:].ravel()], 1),
    ])
    pairs = pairs[pairs[:, 0] != pairs[:, 1]]
    pairs.sort(1)
    keys = np.unique(pairs[:, 0] * n + pairs[:, 1])
    return np.stack([keys // n, keys % n], 1)


def _unit(values: np.ndarray) -> np.ndarray:
    low, high = values.min(), values.max()
    return (values - low) / (high - low) if high > low else np.zeros_like(values)


PRIOR_SHORT_EDGE = 192  # the prior is computed at most at this shorter edge (DUTS-TR's images as provided)


def prior_maps(images, prior: str = "rbd", cache_dir=None, workers: int = 1):
    """The prior ``prior`` (IMAGE_PRIORS) of every image of a data.images.StillImages, cached (data/images.py),
    computed in ``workers`` processes."""
    from .images import load_or_compute_maps

    _check_prior(prior)  # before the cache's key is made
    key = f"{prior}-v1-{PRIOR_SHORT_EDGE}-{images.digest()}"
    return load_or_compute_maps(images, key, partial(_prior_of_image, prior=prior),
                                f"saliency prior ({prior}) of data.images", cache_dir, workers)


def _prior_of_image(image: np.ndarray, prior: str) -> np.ndarray:
    return prior_saliency(shrink_image(image, PRIOR_SHORT_EDGE), prior)


def shrink_image(image: np.ndarray, short_edge: int) -> np.ndarray:
    """An (H, W, 3) uint8 image resized (bicubic) to a shorter edge of ``short_edge`` where it is larger."""
    from PIL import Image

    h, w = image.shape[:2]
    scale = short_edge / min(h, w)
    if scale >= 1:
        return image
    return np.asarray(Image.fromarray(image).resize((round(w * scale), round(h * scale)), Image.Resampling.BICUBIC))
