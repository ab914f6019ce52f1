"""The flow-fit bootstrap: classical flow (cached), carried through augmentation, and the per-segment fit loss."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

from objectness.config import DataConfig, load_config
from objectness.data.classical_flow import FlowCache, dis_flow, load_or_compute
from objectness.data.pairs import PairDataset
from objectness.data.video import Video
from objectness.model.warp import backward_warp
from objectness.objectives.flow_fit import fit_segment_motion, flow_fit_loss
from objectness.training.train import train

pytest.importorskip("cv2")


def smooth_texture(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A random texture blurred enough for optical flow to lock on (uint8 RGB)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (height // 4, width // 4, 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(small).resize((width, height), Image.Resampling.BICUBIC))


def two_motion_flow(size: int = 32) -> tuple:
    """A zooming background (affine) and a square object translating by (5, -3): (flow (1, 2, h, w), object mask)."""
    ys, xs = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    flow = torch.stack([2 * xs, 2 * ys]).unsqueeze(0)
    inside = torch.zeros(size, size, dtype=torch.bool)
    inside[8:20, 10:24] = True
    flow[0, 0][inside], flow[0, 1][inside] = 5.0, -3.0
    return flow, inside


# --- the loss ----------------------------------------------------------------------------


def test_fitting_the_loss_recovers_an_independently_moving_object():
    flow, inside = two_motion_flow()
    torch.manual_seed(0)
    logits = (0.01 * torch.randn(1, 3, 32, 32)).requires_grad_()
    optimizer = torch.optim.Adam([logits], lr=0.1)
    for _ in range(300):
        loss = flow_fit_loss(flow, logits.softmax(1))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    masks = logits.softmax(1)[0] > 0.5
    ious = [((m & inside).sum() / (m | inside).sum()).item() for m in masks]
    assert loss.item() < 0.01
    assert max(ious) > 0.95  # one channel is the object, exactly


def test_a_constant_flow_is_one_segment_whatever_the_masks():
    flow = torch.tensor([3.0, -1.5]).view(1, 2, 1, 1).expand(2, 2, 16, 16)
    masks = torch.randn(2, 5, 16, 16).softmax(1)
    fitted = fit_segment_motion(flow, masks, "constant")  # (B, c, 2, h, w)
    assert torch.allclose(fitted, flow.unsqueeze(1).expand_as(fitted), atol=2e-3)  # every segment: the same vector (ridge: 1e-4 relative)
    assert flow_fit_loss(flow, masks) < 1e-5


def test_the_affine_model_explains_a_zoom_with_one_segment_and_the_constant_model_does_not():
    ys, xs = torch.meshgrid(torch.linspace(-1, 1, 16), torch.linspace(-1, 1, 16), indexing="ij")
    zoom = torch.stack([3 * xs, 3 * ys]).unsqueeze(0)
    one_segment = torch.zeros(1, 2, 16, 16)
    one_segment[:, 0] = 1
    assert flow_fit_loss(zoom, one_segment, "affine") < 1e-4
    assert flow_fit_loss(zoom, one_segment, "constant") > 0.9  # a constant leaves the whole zoom unexplained


def test_the_true_partition_scores_better_than_a_wrong_one():
    flow, inside = two_motion_flow()
    true = torch.stack([inside, ~inside]).float().unsqueeze(0)
    wrong = torch.stack([inside.T, ~inside.T]).float().unsqueeze(0)
    assert flow_fit_loss(flow, true) < 1e-4 < flow_fit_loss(flow, wrong)


# --- classical flow ---------------------------------------------------------------------


def test_dis_flow_recovers_a_known_shift_with_the_warp_convention():
    image = smooth_texture(96, 128)
    shifted = np.roll(image, shift=(2, 3), axis=(0, 1))  # content moves 3 right, 2 down
    flow = dis_flow(image, shifted)  # image(p) = shifted(p + flow(p))
    median = np.median(flow[16:-16, 16:-16].reshape(-1, 2), axis=0)
    assert np.allclose(median, [3, 2], atol=0.25)


def test_flow_is_computed_once_then_read_from_the_cache(tmp_path, monkeypatch):
    frames = [smooth_texture(40, 60, seed) for seed in range(4)]
    videos = [Video("clip", frames)]
    first = load_or_compute(videos, gap=1, short_edge=30, cache_dir=tmp_path)
    assert first.flows.shape == (3, 2, 30, 45, 2)

    def no_recomputation(*args):
        raise AssertionError("the cache was not used")

    monkeypatch.setattr("objectness.data.classical_flow.dis_flow", no_recomputation)
    second = load_or_compute(videos, gap=1, short_edge=30, cache_dir=tmp_path)
    assert np.array_equal(first.flow("clip", 2, 1), second.flow("clip", 2, 1))
    assert np.array_equal(second.flow("clip", 0, 1), np.asarray(second.flows[0, 0], np.float32))
    assert np.array_equal(second.flow("clip", 1, 0), np.asarray(second.flows[0, 1], np.float32))
    other_gap = tmp_path / "other"
    monkeypatch.undo()
    assert load_or_compute(videos, gap=2, short_edge=30, cache_dir=other_gap).flows.shape[0] == 2


@pytest.mark.parametrize("height, width", [(60, 80), (80, 60)])  # landscape, and portrait (turned)
def test_augmented_flow_still_maps_the_crop_of_one_frame_onto_the_other(height, width):
    """Resize, crop, flip and rotation move the flow with the frames: warping the second crop
    along the first crop's flow rebuilds the first crop."""
    dx, dy = 4, -2
    first = smooth_texture(height, width, seed=1)
    second = np.roll(first, shift=(-dy, -dx), axis=(0, 1))  # first(p) = second(p - (dx, dy))
    # Cached at half the frames' size: the flow's values in half-size pixels.
    constant = np.broadcast_to(np.array([-dx / 2, -dy / 2], np.float32), (height // 2, width // 2, 2))
    cache = FlowCache(np.stack([constant, -constant])[None].astype(np.float16), {"clip": 0})
    cfg = DataConfig(source="unused", gap=1, short_edge=44, scale_range=(0.8, 1.0), crop_size=(32, 40))
    dataset = PairDataset([Video("clip", [first, second])], cfg, seed=0, flows=cache)
    for k in range(8):  # both orders, with and without flips
        item = dataset[k]
        frames, flows = item["frames"], item["flows"]  # (2, 3, h, w), (2, 2, h, w)
        for a, b in ((0, 1), (1, 0)):
            rebuilt = backward_warp(frames[b : b + 1], flows[a : a + 1])
            error = (rebuilt - frames[a : a + 1])[..., 6:-6, 6:-6].abs().mean()
            assert error < 0.03, (k, a, error)


# --- training ---------------------------------------------------------------------------


def test_training_on_the_flow_fit_alone_lowers_it(tmp_path, tiny_overrides):
    cfg = load_config(None, [*tiny_overrides, "loss.flow_fit_weight=1", "loss.view_synthesis_weight=0",
                             "loss.level_weights=[1,1,1]", "train.steps=30", "train.lr=1e-3",
                             "train.log_every=10", "data.gap=1", f"data.flow_cache={tmp_path / 'flow'}"])
    train(cfg, tmp_path / "run")
    records = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    fits = [json.loads(line)["flow_fit"] for line in records]
    assert len(fits) == 3 and fits[-1] < fits[0]
    assert any((tmp_path / "flow").glob("*.npy"))


def test_adaptation_fits_the_videos_own_classical_flow(tmp_path, tiny_overrides):
    """A model trained with the flow fit adapts on its test video's DIS flow, computed on the spot."""
    import dataclasses

    from objectness.inference.segmenter import load_segmenter, segment_video
    from objectness.model.amd import AMD
    from objectness.model.checkpoint import metadata, save_weights
    from objectness.training.adapt import adapt

    cfg = load_config(None, [*tiny_overrides, "loss.flow_fit_weight=1", "loss.view_synthesis_weight=0"])
    torch.manual_seed(0)
    path = tmp_path / "model.safetensors"
    save_weights(path, AMD(cfg.model), cfg, metadata(objectness_channel=0))
    segmenter = load_segmenter(path, device="cpu")
    frames = np.stack([np.roll(smooth_texture(64, 64, 1), 2 * t, axis=1) for t in range(4)])
    adapted = adapt(segmenter, frames, steps=2, progress=False)
    before = dict(segmenter.model.named_parameters())
    changed = [name for name, p in adapted.model.named_parameters() if not torch.equal(p, before[name])]
    assert changed and all(name.startswith("appearance.") for name in changed)  # f_A alone is trained
    assert segment_video(adapt(segmenter, frames, 1, progress=False), frames, progress=False).shape == (4, 64, 64)
    assert dataclasses.asdict(segmenter.cfg) == dataclasses.asdict(adapted.cfg)


def test_the_flow_fit_with_frames_on_the_device_is_refused_before_the_run_folder_is_made(tmp_path, tiny_overrides):
    from objectness.config import ConfigError

    with pytest.raises(ConfigError, match="data.on_device"):
        train(load_config(None, [*tiny_overrides, "loss.flow_fit_weight=1", "data.on_device=true"]), tmp_path / "run")
    assert not (tmp_path / "run").exists()
