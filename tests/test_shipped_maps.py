"""The shipped model's maps on two fixed images are what they were when the reference was recorded.

tests/data/shipped-model-maps.npz holds the maps ``segment_images`` gave with
the shipped weights and their default test settings (four scales, guided
filter), in fp32 on one thread. On the CPU model and torch release that
recorded them the maps must be equal bit for bit; elsewhere kernels may round
differently, and they must agree to 1e-5. When the shipped weights change on
purpose, record them again: ``python tests/test_shipped_maps.py --record``.
"""
from pathlib import Path

import numpy as np
import pytest
import torch

from objectness import load_segmenter, segment_images
from objectness.files import atomic_write

REFERENCE = Path(__file__).parent / "data" / "shipped-model-maps.npz"


def fixed_image(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Grey noise with a red, noisy ellipse left of and below the centre."""
    y, x = np.mgrid[:height, :width]
    image = rng.integers(60, 120, size=(height, width, 3)).astype(np.float32)
    blob = ((y - height * 0.55) ** 2 / (0.2 * height) ** 2 + (x - width * 0.45) ** 2 / (0.18 * width) ** 2) < 1
    image[blob] = [200, 40, 30] + rng.normal(0, 10, size=(blob.sum(), 3))
    return np.clip(image, 0, 255).astype(np.uint8)


def fixed_images() -> list:
    """The two images the reference maps were recorded on."""
    rng = np.random.default_rng(0)
    return [fixed_image(rng, 144, 176), fixed_image(rng, 120, 90)]


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "")
    except OSError:
        return ""


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the sum order of a convolution depends on the thread count
    yield
    torch.set_num_threads(threads)


def test_the_shipped_models_maps_are_unchanged(one_thread):
    reference = np.load(REFERENCE)
    images = fixed_images()
    maps = segment_images(load_segmenter(device="cpu", precision="fp32"), images)
    same_machine = (str(reference["cpu"]) == cpu_model()
                    and str(reference["torch"]) == torch.__version__.split("+")[0])
    for got, expected in zip(maps, (reference["map0"], reference["map1"])):
        assert got.dtype == expected.dtype and got.shape == expected.shape
        if same_machine:
            np.testing.assert_array_equal(got, expected)
        else:
            np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5)


def test_bf16_maps_are_within_a_small_tolerance_of_fp32(one_thread):
    """bf16 autocast rounds f_A's convolutions; the maps move by at most 0.005 (measured: 0.0011), the masks not."""
    reference = np.load(REFERENCE)
    images = fixed_images()
    segmenter = load_segmenter(device="cpu", precision="bf16")
    assert segmenter.precision == "bf16"
    for got, expected in zip(segment_images(segmenter, images), (reference["map0"], reference["map1"])):
        assert np.abs(got - expected).max() < 0.005
        np.testing.assert_array_equal(got > 0.5, expected > 0.5)


def record() -> None:
    """Write the reference maps of the shipped model as it is now (run when the weights change on purpose)."""
    torch.set_num_threads(1)
    images = fixed_images()
    maps = segment_images(load_segmenter(device="cpu", precision="fp32"), images)
    atomic_write(REFERENCE, lambda temporary: np.savez(temporary, map0=maps[0], map1=maps[1], cpu=np.array(cpu_model()),
                                                      torch=np.array(torch.__version__.split("+")[0])))
    print(f"recorded {REFERENCE}")


if __name__ == "__main__":
    import sys
    if sys.argv[1:] != ["--record"]:
        sys.exit("usage: python tests/test_shipped_maps.py --record")
    record()
