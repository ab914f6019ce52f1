"""Still images' objects pasted and moved (objectives/pasted_motion.py, training/step.py; not the paper's)."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

from objectness.config import ConfigError, load_config
from objectness.objectives.distillation import paste_objects, pasted_layers
from objectness.objectives.flow_fit import fit_segment_motion, flow_fit_loss
from objectness.objectives.pasted_motion import affine_flow, pasted_motion_flow, random_affine
from objectness.training.train import train


def test_an_affine_motion_gives_the_flow_of_its_translation_and_zoom_in_pixels():
    theta = torch.tensor([[[1.0, 0.0, 0.1], [0.0, 1.0, -0.2]],  # a shift of 0.1 and -0.2 grid units
                          [[1.1, 0.0, 0.0], [0.0, 1.1, 0.0]]])  # a zoom by 1.1 about the centre
    flow = affine_flow(theta, height=20, width=40)
    assert flow.shape == (2, 2, 20, 40)
    # Grid units are half a side: 0.1 of 40 / 2 = 2 px right, -0.2 of 20 / 2 = 2 px up, at every pixel.
    assert torch.allclose(flow[0, 0], torch.full((20, 40), 2.0), atol=1e-5)
    assert torch.allclose(flow[0, 1], torch.full((20, 40), -2.0), atol=1e-5)
    # The zoom moves each pixel centre away from the image centre by a tenth of its distance.
    x = torch.arange(40) + 0.5 - 20
    assert torch.allclose(flow[1, 0, 7], 0.1 * x, atol=1e-4)
    assert flow[1, 1, :10].lt(0).all() and flow[1, 1, 10:].gt(0).all()


def test_random_affine_motions_stay_in_their_bounds_and_follow_the_generator():
    theta = random_affine(64, linear=0.05, translation=0.2, generator=torch.Generator().manual_seed(3))
    assert (theta[:, :, :2] - torch.eye(2)).abs().max() <= 0.05 and theta[:, :, 2].abs().max() <= 0.2
    assert theta[:, :, 2].abs().max() > 0.15  # the bounds are reached, not a fixed motion
    again = random_affine(64, linear=0.05, translation=0.2, generator=torch.Generator().manual_seed(3))
    assert torch.equal(theta, again)


def test_a_known_pasted_motion_is_recovered_by_masks_that_part_the_object():
    alpha = torch.zeros(2, 32, 48)
    alpha[:, 8:20, 12:30] = 1  # a hard rectangle: the pasted object
    flow, moved, background = pasted_motion_flow(alpha, generator=torch.Generator().manual_seed(0))
    assert flow.shape == (2, 2, 32, 48)
    # Inside the object the flow is the object's affine motion, outside it the background's.
    assert torch.allclose(flow[:, :, 12, 20], affine_flow(moved, 32, 48)[:, :, 12, 20], atol=1e-5)
    assert torch.allclose(flow[:, :, 28, 4], affine_flow(background, 32, 48)[:, :, 28, 4], atol=1e-5)
    parted = torch.stack([alpha, 1 - alpha, torch.zeros_like(alpha)], 1)  # (B, 3, H, W)
    fitted = fit_segment_motion(flow, parted)
    # Each part's motion recovered where it lies (to the small ridge that keeps the fit solvable).
    assert torch.allclose(fitted[:, 0] * alpha[:, None], flow * alpha[:, None], atol=0.02)
    assert torch.allclose(fitted[:, 1] * (1 - alpha[:, None]), flow * (1 - alpha[:, None]), atol=0.02)
    assert flow_fit_loss(flow, parted) < 1e-4
    # Masks blind to the object leave much of the flow unexplained; masks shifted off it, part of it.
    blind = torch.stack([torch.ones_like(alpha), torch.zeros_like(alpha), torch.zeros_like(alpha)], 1)
    shifted = parted.roll(6, dims=-1)
    assert flow_fit_loss(flow, blind) > 0.05
    assert flow_fit_loss(flow, parted) < flow_fit_loss(flow, shifted) < flow_fit_loss(flow, blind)


def test_the_known_flow_stays_in_fp32_under_bf16_training():
    alpha = torch.zeros(1, 192, 384)
    alpha[:, 40:120, 100:260] = 1
    exact = pasted_motion_flow(alpha, generator=torch.Generator().manual_seed(2))[0]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        flow = pasted_motion_flow(alpha, generator=torch.Generator().manual_seed(2))[0]
    assert flow.dtype == torch.float32 and torch.allclose(flow, exact, atol=1e-4)


def test_pasted_layers_give_the_alpha_that_composes_the_pasted_image():
    generator = torch.Generator().manual_seed(1)
    images = torch.rand(3, 3, 24, 32)
    objectness = torch.zeros(3, 24, 32)
    objectness[:, 6:18, 8:24] = 1
    composites, alpha, target = pasted_layers(images, objectness, (1, 1), generator)
    assert alpha.shape == target.shape == (3, 24, 32) and alpha.max() == 1 and alpha.min() == 0
    # Where the alpha is 0 the composite is the background image (the previous one), untouched.
    background = images.roll(1, 0)
    outside = (alpha == 0)[:, None].expand_as(images)
    assert torch.equal(composites[outside], background[outside])
    assert (target >= alpha - 1e-6).all()  # the pasted object is object, and so is the background's own
    # paste_objects is the same draw without the alpha.
    same = paste_objects(images, objectness, (1, 1), torch.Generator().manual_seed(1))
    assert torch.equal(same[0], composites) and torch.equal(same[1], target)


def _squares(tmp_path, count=6):
    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(count):
        image = np.full((64, 64, 3), 90, dtype=np.uint8)
        top, left = rng.integers(8, 32, size=2)
        image[top:top + 24, left:left + 24] = (250, 30, 30)
        Image.fromarray(image).save(folder / f"{i}.png")
    return folder


def test_a_student_learns_its_still_images_pasted_and_moved(tmp_path, tiny_overrides):
    folder = _squares(tmp_path)
    cfg = load_config(None, [*tiny_overrides, f"data.images={folder}", "loss.image_weight=1",
                             "loss.image_prior_weight=1", "loss.view_synthesis_weight=0", "loss.flow_fit_weight=0",
                             "loss.image_paste_weight=1", "loss.image_motion_weight=1",
                             f"data.map_cache={tmp_path / 'maps'}", "train.steps=60", "train.lr=1e-3",
                             "data.image_batch_size=4", "data.image_color_jitter=0"])
    train(cfg, tmp_path / "run")
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    records = [record for record in records if "image_motion" in record]
    for term in ("image_paste", "image_motion"):
        values = [record[term] for record in records]
        assert len(values) >= 10 and np.mean(values[-10:]) < 0.85 * np.mean(values[:5]), (term, values)


@pytest.mark.parametrize("override", ["loss.image_paste_weight=1", "loss.image_motion_weight=1"])
def test_pasting_still_images_needs_the_still_images(tiny_overrides, override):
    with pytest.raises(ConfigError, match="needs loss.image_weight"):
        load_config(None, [*tiny_overrides, override])
    with pytest.raises(ConfigError, match="must be a finite number of at least 0"):
        load_config(None, [*tiny_overrides, "loss.image_weight=1", override.replace("=1", "=-1")])
