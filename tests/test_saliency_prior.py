"""The classical saliency prior (data/saliency_prior.py; robust background detection, no learning)."""
import numpy as np
import pytest

from objectness.data.saliency_prior import contrast_saliency, prior_saliency, rbd_saliency


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


@pytest.mark.parametrize("baseline", ["saliency-prior", "rbd-contrast-prior"])
def test_each_saliency_prior_is_a_baseline_checkpoint_at_the_images_size(baseline):
    from objectness.inference.segmenter import load_segmenter, segment_images

    image = _textured_background(height=240, width=320)
    image[80:160, 120:200] = (220, 40, 40)
    segmenter = load_segmenter(baseline, device="cpu")
    soft = segment_images(segmenter, [image])[0]
    assert segmenter.is_baseline and soft.shape == (240, 320)
    assert soft[90:150, 130:190].mean() > 0.7 and soft[:60].mean() < 0.15


def _object_at(top: int, left: int) -> np.ndarray:
    image = _textured_background()
    image[top:top + 32, left:left + 32] = (220, 40, 40)
    return image


def test_region_contrast_finds_an_object_of_its_own_colour_and_favours_the_centre():
    centred = contrast_saliency(_object_at(32, 48))
    assert centred.shape == (96, 128) and centred.dtype == np.float32
    assert 0 <= centred.min() and centred.max() <= 1
    inside = centred[36:60, 52:76].mean()
    assert inside > 0.7 and centred[:, :24].mean() < 0.1
    near_corner = contrast_saliency(_object_at(4, 4))  # the same object, off-centre: a weaker peak
    assert near_corner.max() == 1 and near_corner[8:32, 8:32].mean() < inside - 0.1
    assert near_corner[8:32, 8:32].mean() > 4 * near_corner[60:, 80:].mean()  # but still the object


def test_rbd_contrast_finds_the_object_and_differs_from_rbd():
    image = _object_at(32, 48)
    rbd, fused = prior_saliency(image, "rbd"), prior_saliency(image, "rbd-contrast")
    assert fused.shape == (96, 128) and fused.dtype == np.float32
    assert fused[36:60, 52:76].mean() > 0.7 and np.concatenate([fused[:24].ravel(), fused[72:].ravel()]).mean() < 0.15
    assert np.abs(fused - rbd).max() > 0.05


def test_an_unknown_prior_is_refused_by_the_function_and_the_config():
    from objectness.config import ConfigError, load_config

    with pytest.raises(ValueError, match="rbd-contrast"):
        prior_saliency(_textured_background(), "contrast")
    with pytest.raises(ConfigError, match="loss.image_prior"):
        load_config(None, ["loss.image_prior=contrast"])


def test_each_prior_has_its_own_cache(tmp_path):
    from PIL import Image

    from objectness.data.images import StillImages
    from objectness.data.saliency_prior import prior_maps

    folder = tmp_path / "images"
    folder.mkdir()
    Image.fromarray(_object_at(32, 48)).save(folder / "a.png")
    images = StillImages(folder)
    rbd = prior_maps(images, "rbd", tmp_path / "cache").get(0)
    fused = prior_maps(images, "rbd-contrast", tmp_path / "cache").get(0)
    assert len(list((tmp_path / "cache").glob("*.npy"))) == 2
    assert np.abs(rbd - fused).max() > 0.05


def test_the_prior_computed_in_several_processes_is_the_same_and_skips_the_same_images(tmp_path):
    from PIL import Image

    from objectness.data.images import StillImages
    from objectness.data.saliency_prior import prior_maps

    folder = tmp_path / "images"
    folder.mkdir()
    for k, (top, left) in enumerate([(32, 48), (8, 16), (50, 80), (20, 30), (40, 10)]):
        Image.fromarray(_object_at(top, left)).save(folder / f"{k}.png")
    (folder / "2-broken.png").write_bytes(b"not an image")
    images = StillImages(folder)
    one = prior_maps(images, "rbd", tmp_path / "one", workers=1)
    two = prior_maps(images, "rbd", tmp_path / "two", workers=2)
    assert one.index == two.index and one.unreadable == two.unreadable == 1
    np.testing.assert_array_equal(np.asarray(one.flat), np.asarray(two.flat))
    for i, (top, left) in [(0, (32, 48)), (1, (8, 16))]:  # each image's own map, in order
        assert two.get(i)[top + 4:top + 28, left + 4:left + 28].mean() > 0.7


def test_the_prior_workers_must_be_at_least_one():
    from objectness.config import ConfigError, load_config

    assert load_config(None, ["data.prior_workers=2"]).data.prior_workers == 2
    with pytest.raises(ConfigError, match="data.prior_workers"):
        load_config(None, ["data.prior_workers=0"])
