"""Images of every mode PIL opens come in as the right 8-bit RGB, or are refused in one line."""
import cv2
import numpy as np
import pytest
from PIL import Image

from objectness.data.video import DataError, FrameError, Video, as_rgb_array, read_image
from objectness.evaluation.benchmarks import SaliencyItem, load_saliency_mask

RAMP = np.tile(np.arange(0, 256, 4, dtype=np.uint8), (16, 1))  # (16, 64) grey levels 0..252


def _colour() -> np.ndarray:
    return np.stack([RAMP, RAMP[:, ::-1], np.full_like(RAMP, 90)], axis=-1)  # (16, 64, 3)


def test_16_bit_grey_is_scaled_to_8_bits_not_clipped_to_white(tmp_path):
    Image.fromarray(RAMP.astype(np.uint16) * 257).save(tmp_path / "grey16.png")
    assert Image.open(tmp_path / "grey16.png").mode.startswith("I")
    image = read_image(tmp_path / "grey16.png")
    assert image.dtype == np.uint8 and image.shape == (16, 64, 3)
    np.testing.assert_array_equal(image[..., 0], RAMP)


def test_16_bit_colour_keeps_its_colours(tmp_path):
    colour = _colour()
    cv2.imwrite(str(tmp_path / "rgb16.png"), colour[..., ::-1].astype(np.uint16) * 257)  # OpenCV writes BGR
    np.testing.assert_array_equal(read_image(tmp_path / "rgb16.png"), colour)


@pytest.mark.parametrize("mode", ["P", "RGBA", "LA", "L", "1"])
def test_palette_alpha_grey_and_1_bit_images_are_converted(tmp_path, mode):
    source = Image.fromarray(_colour())
    image = source.convert(mode)
    image.save(tmp_path / "image.png")
    expected = np.asarray(image.convert("RGB"))
    got = read_image(tmp_path / "image.png")
    assert got.shape == (16, 64, 3) and got.dtype == np.uint8
    np.testing.assert_array_equal(got, expected)
    if mode == "RGBA":  # alpha dropped, colours kept
        np.testing.assert_array_equal(got, _colour())


def test_cmyk_jpeg_is_converted_to_rgb(tmp_path):
    Image.fromarray(_colour()).convert("CMYK").save(tmp_path / "cmyk.jpg", quality=95)
    got = read_image(tmp_path / "cmyk.jpg").astype(int)
    assert np.abs(got - _colour()).mean() < 8  # JPEG's loss, not a colour swap


def test_a_float_image_is_refused_in_one_line_naming_the_file(tmp_path):
    Image.fromarray(RAMP.astype(np.float32)).save(tmp_path / "float.tif")
    with pytest.raises(DataError, match="float.tif.*float"):
        read_image(tmp_path / "float.tif")
    with pytest.raises(FrameError, match="float.tif"):
        Video("v", [tmp_path / "float.tif"]).read(0)


def test_a_video_frame_of_16_bits_is_read_like_its_8_bit_twin(tmp_path):
    Image.fromarray(RAMP.astype(np.uint16) * 257).save(tmp_path / "a.png")
    Image.fromarray(RAMP).save(tmp_path / "b.png")
    video = Video("v", [tmp_path / "a.png", tmp_path / "b.png"])
    np.testing.assert_array_equal(video.read(0), video.read(1))


@pytest.mark.parametrize("array, expected", [
    (RAMP, np.repeat(RAMP[..., None], 3, 2)),
    (RAMP.astype(np.uint16) * 257, np.repeat(RAMP[..., None], 3, 2)),
    (_colour().astype(np.float32) / 255, _colour()),
    (np.concatenate([_colour(), np.full((16, 64, 1), 7, np.uint8)], axis=2), _colour()),
])
def test_arrays_given_to_the_api_are_brought_to_8_bit_rgb(array, expected):
    np.testing.assert_array_equal(as_rgb_array(array), expected)


@pytest.mark.parametrize("array", [np.zeros((4, 4, 2), np.uint8), np.full((4, 4, 3), 2.0), np.zeros(5)])
def test_arrays_that_are_not_images_are_refused(array):
    with pytest.raises(DataError):
        as_rgb_array(array)


def test_a_16_bit_saliency_mask_is_thresholded_on_its_own_scale(tmp_path):
    mask = np.zeros((8, 8), dtype=np.uint16)
    mask[:, :4] = 65535
    mask[:, 4:6] = 30000  # 0.46 of full scale: below the 0.5 threshold of 8-bit masks
    Image.fromarray(mask).save(tmp_path / "mask.png")
    truth = load_saliency_mask(SaliencyItem("m", tmp_path / "image.png", tmp_path / "mask.png"))
    assert truth[:, :4].all() and not truth[:, 4:].any()
