"""Motion masks from classical flow (objectives/motion_masks.py, not the paper's): the teacher and its loss."""
import json

import numpy as np
import pytest
import torch

from objectness.config import load_config
from objectness.model.checkpoint import load_model
from objectness.objectives.motion_masks import (
    camera_residual,
    motion_mask_loss,
    motion_masks,
    otsu_threshold,
)
from objectness.training.train import train


def zoom_and_object(size: int = 48, shift=(4.0, -2.0)) -> tuple:
    """A zooming, panning camera (affine flow) and a square translating by ``shift``: (flow (1, 2, h, w), object)."""
    ys, xs = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    flow = torch.stack([1.5 * xs + 0.7, 1.5 * ys - 0.3]).unsqueeze(0)
    inside = torch.zeros(size, size, dtype=torch.bool)
    inside[10:26, 20:38] = True
    flow[0, 0][inside] += shift[0]
    flow[0, 1][inside] += shift[1]
    return flow, inside


def iou(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a & b).sum() / (a | b).sum()).item()


def test_the_independently_moving_object_is_found_under_a_zooming_camera():
    flow, inside = zoom_and_object()
    flow = flow + 0.1 * torch.randn(flow.shape, generator=torch.Generator().manual_seed(0))  # flow noise
    masks, valid = motion_masks(flow)
    assert valid.tolist() == [True]
    assert iou(masks[0] > 0.5, inside) > 0.95
    # The camera fit is robust: the background's residual stays at the noise level.
    assert camera_residual(flow)[0][~inside].median() < 0.2


def test_a_camera_only_flow_has_no_mask_and_is_left_out():
    flow, _ = zoom_and_object(shift=(0.0, 0.0))
    masks, valid = motion_masks(flow)
    assert valid.tolist() == [False] and masks.sum() == 0
    probs = torch.rand(1, 3, 48, 48).softmax(1)
    assert motion_mask_loss(flow, probs, channel=0) == 0


def test_otsus_threshold_matches_opencvs():
    cv2 = pytest.importorskip("cv2")
    rng = np.random.default_rng(0)
    values = np.concatenate([rng.normal(40, 10, 3000), rng.normal(170, 20, 1000)]).clip(0, 255).round()
    values[0] = 255  # the histogram spans 0..255 as the uint8 image does
    level, _ = cv2.threshold(values.astype(np.uint8).reshape(1, -1), 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    ours = otsu_threshold(torch.tensor(values, dtype=torch.float32)[None])[0].item()
    assert ours == pytest.approx(level + 0.5, abs=1e-3)  # above OpenCV's level, below the next one


def test_fitting_the_loss_puts_the_object_in_the_chosen_channel():
    flow, inside = zoom_and_object()
    logits = torch.zeros(1, 3, 24, 24, requires_grad=True)  # on a coarser grid than the flow, as f_A's output
    optimizer = torch.optim.Adam([logits], lr=0.1)
    for _ in range(200):
        loss = motion_mask_loss(flow, logits.softmax(1), channel=2)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    probs = torch.nn.functional.interpolate(logits.softmax(1), size=(48, 48), mode="bilinear")[0]
    assert iou(probs[2] > 0.5, inside) > 0.9
    assert (probs[0] < 0.5).all() and (probs[1] < 0.5).all()
    with pytest.raises(ValueError, match="motion_mask_channel"):
        motion_mask_loss(flow, logits.softmax(1), channel=3)


def test_training_on_the_motion_masks_lowers_their_loss(tmp_path, tiny_overrides):
    pytest.importorskip("cv2")
    cfg = load_config(None, [*tiny_overrides, "loss.motion_mask_weight=1", "loss.motion_mask_channel=1",
                             "loss.view_synthesis_weight=0",
                             "loss.level_weights=[1,1,1]", "train.steps=30", "train.lr=1e-3",
                             "train.log_every=10", "data.gap=1", f"data.flow_cache={tmp_path / 'flow'}"])
    train(cfg, tmp_path / "run")
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    losses = [record["motion_mask"] for record in records]
    assert len(losses) == 3 and losses[-1] < losses[0]
    assert "flow_fit" not in records[0]
    # The channel taught the masks is the objectness channel from the first checkpoint on.
    assert load_model(tmp_path / "run")[2]["objectness_channel"] == 1


def test_a_motion_mask_channel_the_model_lacks_is_refused_before_the_run_folder_is_made(tmp_path, tiny_overrides):
    from objectness.config import ConfigError

    with pytest.raises(ConfigError, match="motion_mask_channel 5"):
        cfg = load_config(None, [*tiny_overrides, "loss.motion_mask_weight=1", "loss.motion_mask_channel=5",
                                 "loss.view_synthesis_weight=0"])
        train(cfg, tmp_path / "run")
    assert not (tmp_path / "run").exists()
