"""The guided filter that refines objectness maps (inference/refine.py): its definition, and what it does to edges."""
import numpy as np
import pytest

from objectness.config import ConfigError, check_guided_filter
from objectness.evaluation.metrics import jaccard
from objectness.inference.refine import (
    guided_filter,
    guided_radius_pixels,
    refine_objectness,
)


def _two_colour_image(height=40, width=60, edge=30):
    """Dark red left of column ``edge``, bright green right of it, with mild noise."""
    rng = np.random.default_rng(0)
    image = np.zeros((height, width, 3), np.float32)
    image[:, :edge] = (0.5, 0.1, 0.1)
    image[:, edge:] = (0.2, 0.8, 0.3)
    image += rng.normal(0, 0.02, image.shape).astype(np.float32)
    return np.clip(image, 0, 1)


def test_a_blurred_map_snaps_to_the_images_edge():
    image = _two_colour_image(edge=30)
    truth = np.zeros((40, 60), bool)
    truth[:, 30:] = True
    columns = np.arange(60, dtype=np.float32)
    blurred = np.tile(1 / (1 + np.exp(-(columns - 36) / 4)), (40, 1))  # the edge 6 pixels off, and soft
    refined = refine_objectness(image, blurred, radius=0.4, eps=1e-3)
    raw_steps, refined_steps = np.diff(blurred[20]), np.diff(refined[20])
    assert raw_steps.max() < 0.07 and refined_steps[29] > 0.3  # the map now jumps where the colour does
    assert jaccard(blurred > 0.5, truth) < 0.8
    assert jaccard(refined > 0.5, truth) > 0.97
    assert refined.min() >= 0 and refined.max() <= 1


def test_it_matches_the_definition_at_an_inner_pixel():
    # q(p) = mean over the windows k holding p of a_k . I(p) + b_k, where (a_k, b_k) is the ridge
    # regression of the map on the colours inside window k (He, Sun and Tang 2010, eq. 5-8).
    rng = np.random.default_rng(1)
    image = rng.random((9, 9, 3)).astype(np.float32)
    soft = rng.random((9, 9)).astype(np.float32)
    radius, eps = 1, 0.05
    y, x = 4, 4
    value = 0.0
    for ky in range(y - radius, y + radius + 1):
        for kx in range(x - radius, x + radius + 1):
            window = (slice(ky - radius, ky + radius + 1), slice(kx - radius, kx + radius + 1))
            colours = image[window].reshape(-1, 3).astype(np.float64)
            target = soft[window].reshape(-1).astype(np.float64)
            centred = colours - colours.mean(0)
            a = np.linalg.solve(centred.T @ centred / len(target) + eps * np.eye(3), centred.T @ (target - target.mean()) / len(target))
            b = target.mean() - a @ colours.mean(0)
            value += a @ image[y, x] + b
    value /= (2 * radius + 1) ** 2
    assert guided_filter(image, soft, radius, eps)[y, x] == pytest.approx(value, abs=1e-4)


def test_a_constant_map_stays_constant_and_radius_zero_is_off():
    image = (_two_colour_image() * 255).astype(np.uint8)
    constant = np.full((40, 60), 0.3, np.float32)
    np.testing.assert_allclose(guided_filter(image, constant, 5, 0.01), 0.3, atol=1e-4)
    soft = np.random.default_rng(2).random((40, 60)).astype(np.float32)
    assert refine_objectness(image, soft, 0.0, 0.01) is soft


def test_the_radius_is_a_fraction_of_the_shorter_edge():
    assert guided_radius_pixels(0.1, 240, 427) == 24
    assert guided_radius_pixels(0.1, 480, 854) == 48
    assert guided_radius_pixels(0.001, 240, 427) == 1


@pytest.mark.parametrize("radius, eps", [(-0.1, 0.01), (0.6, 0.01), (0.1, 0.0), (True, 0.01), ("a", 0.01)])
def test_bad_settings_are_refused(radius, eps):
    with pytest.raises(ConfigError, match="guided filter"):
        check_guided_filter(radius, eps)


def test_mismatched_image_and_map_are_refused():
    with pytest.raises(ValueError, match="do not match"):
        guided_filter(np.zeros((10, 12, 3), np.uint8), np.zeros((10, 10), np.float32), 2, 0.01)
