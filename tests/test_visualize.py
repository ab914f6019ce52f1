import types

import numpy as np
import pytest
import torch
from PIL import Image

from objectness.visualize import (
    mask_strip,
    overlay,
    save_image_atomic,
    soft_map_to_png,
    training_panel,
)

H, W, C = 32, 48, 5


@pytest.fixture
def batch():
    generator = torch.Generator().manual_seed(0)
    frame1 = torch.rand(2, 3, H, W, generator=generator)  # (B, 3, H, W)
    frame2 = torch.rand(2, 3, H, W, generator=generator)
    logits = torch.randn(2, C, H // 8, W // 8, generator=generator, requires_grad=True)
    out = types.SimpleNamespace(
        masks1=logits.softmax(dim=1),  # (B, c, h, w)
        flows12=[torch.randn(2, 2, H, W, generator=generator) * 3, torch.zeros(2, 2, H // 2, W // 2)],
    )
    recon1 = torch.rand(2, 3, H, W, generator=generator, requires_grad=True)
    return frame1, frame2, out, recon1


def test_training_panel_has_one_tile_per_frame_mask_flow_reconstruction_and_error(batch):
    panel = training_panel(*batch)
    tiles = 2 + C + 3
    assert panel.size == (tiles * W, H)
    assert panel.mode == "RGB"


def test_training_panel_shows_frame1_in_its_first_tile(batch):
    frame1 = batch[0]
    panel = np.asarray(training_panel(*batch))
    expected = (frame1[0].permute(1, 2, 0).numpy() * 255).round()
    # The bottom half of the tile is clear of the label.
    np.testing.assert_allclose(panel[H // 2 :, :W], expected[H // 2 :], atol=1)


def test_mask_strip_has_image_masks_and_optional_flow():
    image = torch.rand(3, H, W)
    masks = torch.rand(C, H // 8, W // 8).softmax(dim=0)
    assert mask_strip(image, masks).size == ((1 + C) * W, H)
    assert mask_strip(image, masks, flow=torch.randn(2, H, W)).size == ((2 + C) * W, H)


def test_mask_strip_shows_a_full_mask_as_white():
    masks = torch.zeros(2, H // 8, W // 8)
    masks[1] = 1.0
    strip = np.asarray(mask_strip(torch.zeros(3, H, W, dtype=torch.uint8), masks))
    assert (strip[H // 2 :, 2 * W : 3 * W] == 255).all()
    assert (strip[H // 2 :, W : 2 * W] == 0).all()


def test_overlay_changes_only_masked_pixels():
    image = np.random.default_rng(0).integers(0, 256, size=(H, W, 3), dtype=np.uint8)
    mask = np.zeros((H, W), dtype=bool)
    mask[4:10, 5:20] = True
    result = np.asarray(overlay(image, mask, color=(255, 0, 0), alpha=0.3))
    np.testing.assert_array_equal(result[~mask], image[~mask])
    assert (result[mask] != image[mask]).any(axis=-1).mean() > 0.9


def test_overlay_accepts_a_chw_uint8_tensor():
    image = torch.full((3, H, W), 100, dtype=torch.uint8)
    mask = torch.zeros(H, W, dtype=torch.bool)
    mask[0, 0] = True
    result = np.asarray(overlay(image, mask, color=(0, 0, 255), alpha=1.0))
    assert tuple(result[0, 0]) == (0, 0, 255)
    assert tuple(result[1, 1]) == (100, 100, 100)


def test_soft_map_to_png_is_8bit_grey_spanning_black_to_white():
    prob = torch.linspace(0, 1, W).expand(H, W)
    png = soft_map_to_png(prob)
    assert png.mode == "L"
    values = np.asarray(png)
    assert values.min() == 0 and values.max() == 255


def test_save_image_atomic_writes_a_readable_file_and_leaves_no_temp_files(tmp_path):
    path = tmp_path / "panels" / "step_000001.png"
    image = Image.new("RGB", (W, H), (10, 20, 30))
    save_image_atomic(image, path)
    save_image_atomic(image, path)
    assert [p.name for p in path.parent.iterdir()] == [path.name]
    with Image.open(path) as reloaded:
        assert reloaded.getpixel((0, 0)) == (10, 20, 30)


def test_save_image_atomic_keeps_the_old_file_and_no_temp_when_saving_fails(tmp_path):
    path = tmp_path / "panel.png"
    save_image_atomic(Image.new("RGB", (W, H), (1, 2, 3)), path)
    broken = Image.new("RGB", (W, H))
    broken.save = lambda *args, **kwargs: (_ for _ in ()).throw(OSError("disk full"))
    with pytest.raises(OSError, match="disk full"):
        save_image_atomic(broken, path)
    assert [p.name for p in tmp_path.iterdir()] == [path.name]
    with Image.open(path) as reloaded:
        assert reloaded.getpixel((0, 0)) == (1, 2, 3)
