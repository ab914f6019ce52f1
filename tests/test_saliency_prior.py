"""The classical saliency prior (data/saliency_prior.py; robust background detection, no learning)."""
import numpy as np
import pytest

from objectness.data.saliency_prior import rbd_saliency


def _textured_background(height=96, width=128, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = np.array([70, 110, 60], dtype=float)  # greenish, with mild noise
    return np.clip(base + rng.normal(0, 6, size=(height, width, 3)), 0, 255).astype(np.uint8)


def test_an_object_of_its_own_colour_in_the_middle_stands_out():
    image = _textured_background()
    image[32:64, 48:80] = (220, 40, 40)
    saliency = rbd_saliency(image)
    assert saliency.shape == (96, 128) and saliency.dtype == np.float32
    assert 0 <= saliency.min() and saliency.max() <= 1
    inside, outside = saliency[36:60, 52:76].mean(), np.concatenate([saliency[:24].ravel(), saliency[72:].ravel()]).mean()
    assert inside > 0.7 and outside < 0.15


def test_a_region_along_the_border_is_background_though_its_colour_stands_out():
    image = _textured_background()
    image[:, :20] = (220, 40, 40)  # a band down the left border
    image[36:60, 56:84] = (40, 40, 220)  # an object in the middle
    saliency = rbd_saliency(image)
    assert saliency[40:56, 60:80].mean() > 2 * saliency[20:76, 2:16].mean()


def test_a_uniform_image_has_no_object():
    saliency = rbd_saliency(np.full((64, 64, 3), 128, dtype=np.uint8))
    assert saliency.max() - saliency.min() < 1e-6 or saliency.mean() < 0.5


def test_only_8_bit_rgb_is_accepted():
    with pytest.raises(ValueError, match="uint8 RGB"):
        rbd_saliency(np.zeros((32, 32), dtype=np.uint8))


def test_the_saliency_prior_is_a_baseline_checkpoint_at_the_images_size():
    from objectness.inference.segmenter import load_segmenter, segment_images

    image = _textured_background(height=240, width=320)
    image[80:160, 120:200] = (220, 40, 40)
    segmenter = load_segmenter("saliency-prior", device="cpu")
    soft = segment_images(segmenter, [image])[0]
    assert segmenter.is_baseline and soft.shape == (240, 320)
    assert soft[90:150, 130:190].mean() > 0.7 and soft[:60].mean() < 0.15
