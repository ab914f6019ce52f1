"""Distillation (objectives/distillation.py, training/teachers.py, not the paper's): f_A learns the mean objectness map of trained models."""
import dataclasses
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from objectness import cli
from objectness.config import ConfigError, load_config
from objectness.inference.refine import refine_objectness
from objectness.model.amd import AMD
from objectness.model.checkpoint import (
    CheckpointError,
    load_model,
    metadata,
    save_weights,
)
from objectness.objectives.distillation import confidence, distillation_loss, paste_objects
from objectness.training.teachers import Teachers
from objectness.training.train import train


def _teacher(path, cfg, channel, seed):
    torch.manual_seed(seed)
    save_weights(path, AMD(cfg.model), cfg, metadata(objectness_channel=channel))
    return path


def test_the_teachers_map_is_the_mean_of_each_teachers_objectness_channel(tmp_path, tiny_config):
    a = _teacher(tmp_path / "a.safetensors", tiny_config, 1, seed=0)
    b = _teacher(tmp_path / "b.safetensors", tiny_config, 3, seed=1)
    images = torch.rand(2, 3, 64, 64)
    target = Teachers([a, b], student_short_edge=64, device="cpu").objectness(images, size=(8, 8))
    expected = [load_model(p)[0].appearance(images)[:, k] for p, k in ((a, 1), (b, 3))]
    assert target.shape == (2, 8, 8)
    torch.testing.assert_close(target, (expected[0] + expected[1]) / 2)


def test_a_teacher_sees_the_batch_at_its_own_test_scale(tmp_path, tiny_config):
    # Trained at half the student's scale: it sees the 64 x 64 crops at 32 x 32.
    cfg = dataclasses.replace(tiny_config, data=dataclasses.replace(tiny_config.data, short_edge=32))
    path = _teacher(tmp_path / "t.safetensors", cfg, 0, seed=0)
    images = torch.rand(1, 3, 64, 64)
    target = Teachers([path], student_short_edge=64, device="cpu").objectness(images, size=(4, 4))
    small = F.interpolate(images, size=(32, 32), mode="bilinear", align_corners=False, antialias=True)
    torch.testing.assert_close(target[0], load_model(path)[0].appearance(small)[0, 0])


def test_a_teacher_with_several_test_scales_gives_the_mean_over_them(tmp_path, tiny_config):
    cfg = dataclasses.replace(tiny_config, data=dataclasses.replace(tiny_config.data, test_scales=(0.5, 1.0)))
    path = _teacher(tmp_path / "t.safetensors", cfg, 2, seed=0)
    images = torch.rand(1, 3, 64, 64)
    target = Teachers([path], student_short_edge=64, device="cpu").objectness(images, size=(8, 8))
    appearance = load_model(path)[0].appearance
    small = F.interpolate(images, size=(32, 32), mode="bilinear", align_corners=False, antialias=True)
    at_half = F.interpolate(appearance(small)[:, 2:3], size=(8, 8), mode="bilinear", align_corners=False)[0, 0]
    torch.testing.assert_close(target[0], (at_half + appearance(images)[0, 2]) / 2)


def test_a_teacher_with_a_guided_filter_is_refined_on_the_crop_then_averaged_to_the_grid(tmp_path, tiny_config):
    cfg = dataclasses.replace(tiny_config, data=dataclasses.replace(tiny_config.data, test_guided_radius=0.2,
                                                                   test_guided_eps=0.01))
    path = _teacher(tmp_path / "t.safetensors", cfg, 1, seed=0)
    images = torch.rand(2, 3, 64, 64)
    target = Teachers([path], student_short_edge=64, device="cpu").objectness(images, size=(8, 8))
    soft = load_model(path)[0].appearance(images)[:, 1:2]
    full = F.interpolate(soft, size=(64, 64), mode="bilinear", align_corners=False)[:, 0].clamp(0, 1)
    refined = [refine_objectness(image.permute(1, 2, 0).numpy(), m.numpy(), 0.2, 0.01)
               for image, m in zip(images, full.detach())]
    expected = F.avg_pool2d(torch.from_numpy(np.stack(refined))[:, None], 8)[:, 0]
    torch.testing.assert_close(target, expected, atol=1e-5, rtol=0)
    unrefined = F.avg_pool2d(full[:, None], 8)[:, 0]
    assert (target - unrefined).abs().max() > 1e-3  # the filter changed the target


def test_a_teacher_without_an_objectness_channel_is_refused(tmp_path, tiny_config):
    path = _teacher(tmp_path / "t.safetensors", tiny_config, None, seed=0)
    with pytest.raises(CheckpointError, match="objectness channels"):
        Teachers([path], student_short_edge=64, device="cpu")
    with pytest.raises(CheckpointError, match="loss.distill_from"):
        Teachers([], student_short_edge=64, device="cpu")


def test_fitting_the_loss_reproduces_the_soft_target_in_the_chosen_channel():
    target = torch.rand(2, 6, 6)
    logits = torch.zeros(2, 3, 6, 6, requires_grad=True)
    optimizer = torch.optim.Adam([logits], lr=0.1)
    for _ in range(300):
        loss = distillation_loss(target, logits.softmax(1), channel=2)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    torch.testing.assert_close(logits.softmax(1)[:, 2], target, atol=0.02, rtol=0)
    with pytest.raises(ValueError, match="distill_channel"):
        distillation_loss(target, logits.softmax(1), channel=3)


def _student(tmp_path, tiny_overrides, tiny_config, *overrides) -> list:
    """Train a student of one random teacher for 30 steps in tmp_path/run; its metrics records."""
    teacher = _teacher(tmp_path / "teacher.safetensors", tiny_config, 4, seed=3)
    cfg = load_config(None, [*tiny_overrides, "loss.distill_weight=1", *overrides,
                             f"loss.distill_from=[{teacher}]", "loss.view_synthesis_weight=0",
                             "train.steps=30", "train.lr=1e-3", "train.log_every=10"])
    train(cfg, tmp_path / "run")
    return [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]


def test_a_student_learns_its_teachers_map_and_keeps_the_taught_channel(tmp_path, tiny_overrides, tiny_config, capsys):
    records = _student(tmp_path, tiny_overrides, tiny_config, "loss.distill_channel=1")
    losses = [record["distill"] for record in records]
    assert len(losses) == 3 and losses[-1] < losses[0]
    assert load_model(tmp_path / "run")[2]["objectness_channel"] == 1
    assert cli.main(["channels", "--checkpoint", str(tmp_path / "run"), "--data", "synthetic", "--pairs", "2"]) == 0
    assert "channel 1 was trained on its teachers' objectness maps" in capsys.readouterr().out


def test_a_pasted_object_keeps_its_pixels_and_its_map_where_it_lands():
    images = torch.rand(3, 3, 32, 48)
    objectness = torch.zeros(3, 32, 48)
    objectness[0, 12:20, 16:32] = 1  # image 0: a rectangle that stays in the frame; images 1, 2: no object
    composites, target = paste_objects(images, objectness, scale_range=(1, 1), generator=torch.Generator().manual_seed(0))
    # Composite 0: image 0's rectangle (moved, perhaps mirrored) over image 2.
    landed = target[0] > 1 - 1e-5  # wholly under the pasted rectangle
    assert landed.sum() >= 7 * 15  # 8 x 16 moved by a fraction of a pixel: its interior at least
    assert target[0].sum() == pytest.approx(8 * 16, abs=2)  # its edges, cut between pixels, sharpened
    inside = composites[0][:, landed]
    colours = images[0].permute(1, 2, 0)[12:20, 16:32].reshape(-1, 3)
    # Each pasted pixel is a blend of the rectangle's neighbouring pixels: within their colour range.
    assert (inside.T >= colours.min(0).values - 1e-5).all() and (inside.T <= colours.max(0).values + 1e-5).all()
    torch.testing.assert_close(composites[0][:, target[0] == 0], images[2][:, target[0] == 0])
    # Composite 1: image 1 has no object to paste, so it is image 0 as it was, with image 0's own map.
    torch.testing.assert_close(composites[1], images[0])
    torch.testing.assert_close(target[1], objectness[0])


def test_a_pasted_object_moves_where_the_shift_and_scale_say():
    images = torch.zeros(2, 3, 40, 40)
    objectness = torch.zeros(2, 40, 40)
    objectness[0, 16:24, 16:24] = 1  # centred: a shift without scaling moves its centre, a scale keeps it
    generator = torch.Generator().manual_seed(1)
    _, target = paste_objects(images, objectness, scale_range=(2, 2), generator=generator)
    area = target[0].sum()
    assert 230 < area < 290  # 8 x 8 at scale 2 is 256 pixels (bilinear edges)
    rows, cols = torch.nonzero(target[0] > 0.5, as_tuple=True)
    centre = torch.stack([rows.float().mean(), cols.float().mean()]) - 19.5
    assert centre.abs().max() <= 10.5  # at most a quarter of each side away from the middle


def test_a_student_with_pasted_objects_learns_them_too(tmp_path, tiny_overrides, tiny_config):
    records = _student(tmp_path, tiny_overrides, tiny_config, "loss.paste_weight=1")
    pasted = [record["paste"] for record in records]
    assert len(pasted) == 3 and pasted[-1] < pasted[0]


@pytest.mark.parametrize("overrides, message", [
    (["loss.distill_channel=5"], "distill_channel 5"),
    (["loss.paste_scale_range=[0, 1]"], "paste_scale_range"),
    (["loss.paste_scale_range=[1.2]"], "paste_scale_range"),
    (["loss.motion_mask_weight=1", "loss.motion_mask_channel=1"], "make them equal"),
    (["loss.distill_from=[missing.safetensors]"], "not found"),
    (["loss.distill_weight=0"], "needs loss.distill_weight"),
    (["loss.image_confidence=true"], "needs loss.image_weight"),
])
def test_a_bad_distillation_is_refused_before_the_run_folder_is_made(tmp_path, tiny_overrides, overrides, message):
    with pytest.raises((ConfigError, CheckpointError), match=message):
        cfg = load_config(None, [*tiny_overrides, "loss.distill_weight=1", "loss.paste_weight=1",
                                 "loss.view_synthesis_weight=0", *overrides])
        train(cfg, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_a_distilled_model_adapts_without_its_teachers(tmp_path, tiny_config, caplog):
    from objectness.data import synthetic
    from objectness.inference.segmenter import load_segmenter, segment_images
    from objectness.training.adapt import adapt

    video = synthetic.make_video(tiny_config.data.synthetic, 0).frames
    flow_fit = dataclasses.replace(tiny_config.loss, flow_fit_weight=1.0, view_synthesis_weight=0.0,
                                   distill_weight=1.0, distill_from=(str(tmp_path / "gone.safetensors"),))
    cfg = dataclasses.replace(tiny_config, loss=flow_fit,
                              data=dataclasses.replace(tiny_config.data, flow_cache=str(tmp_path / "flow")))
    path = _teacher(tmp_path / "student.safetensors", cfg, 0, seed=0)
    segmenter = load_segmenter(path, device="cpu")
    adapted = adapt(segmenter, video, steps=2, progress=False)  # the flow fit alone; the teacher file is gone
    assert not torch.equal(torch.as_tensor(segment_images(adapted, video[:1])[0]),
                           torch.as_tensor(segment_images(segmenter, video[:1])[0]))
    # Taught by its teachers alone, there is nothing to adapt with: said once, then segmented as it is.
    alone = dataclasses.replace(cfg, loss=dataclasses.replace(flow_fit, flow_fit_weight=0.0))
    segmenter = load_segmenter(_teacher(tmp_path / "alone.safetensors", alone, 0, seed=0), device="cpu")
    assert adapt(segmenter, video, steps=2, progress=False) is segmenter
    assert adapt(segmenter, video, steps=2, progress=False) is segmenter
    assert caplog.text.count("teachers' maps alone") == 1


def test_adaptation_anchored_to_the_models_own_maps_moves_them_less(tmp_path, tiny_config):
    from objectness.data import synthetic
    from objectness.inference.segmenter import load_segmenter, segment_images
    from objectness.training.adapt import adapt

    video = synthetic.make_video(tiny_config.data.synthetic, 0).frames
    flow_fit = dataclasses.replace(tiny_config.loss, flow_fit_weight=1.0, view_synthesis_weight=0.0)
    data = dataclasses.replace(tiny_config.data, flow_cache=str(tmp_path / "flow"))
    fast = dataclasses.replace(tiny_config.train, lr=5e-3)  # adaptation runs at train.lr
    moved = {}
    for anchor in (0.0, 20.0):
        cfg = dataclasses.replace(tiny_config, loss=dataclasses.replace(flow_fit, adapt_self_weight=anchor), data=data,
                                  train=fast)
        segmenter = load_segmenter(_teacher(tmp_path / f"m{anchor}.safetensors", cfg, 1, seed=0), device="cpu")
        before = segment_images(segmenter, video[:2])
        after = segment_images(adapt(segmenter, video, steps=6, progress=False), video[:2])
        moved[anchor] = float(np.mean([np.abs(a - b).mean() for a, b in zip(after, before)]))
    assert 0 < moved[20.0] < 0.7 * moved[0.0], moved


def test_sharpened_targets_move_away_from_one_half_and_stay_in_0_1():
    from objectness.training.step import sharpened

    target = torch.tensor([0.0, 0.3, 0.5, 0.6, 0.9, 1.0])
    torch.testing.assert_close(sharpened(target, 2.0), torch.tensor([0.0, 0.1, 0.5, 0.7, 1.0, 1.0]))
    assert sharpened(target, 1.0) is target


def test_confidence_weighting_counts_each_pixel_by_how_far_its_target_is_from_one_half():
    target = torch.tensor([[[0.5, 1.0, 0.0, 0.75]]])  # (1, 1, 4)
    prob = torch.tensor([[[0.2, 0.9, 0.3, 0.6]]])
    logits = torch.stack([prob, 1 - prob], 1).log().requires_grad_(True)  # (1, 2, 1, 4): softmax gives prob back
    weight = confidence(target)
    torch.testing.assert_close(weight, torch.tensor([[[0.0, 1.0, 1.0, 0.5]]]))
    loss = distillation_loss(target, logits.softmax(1), 0, weight)
    by_hand = (-np.log(0.9) - np.log(0.7) - 0.5 * (0.75 * np.log(0.6) + 0.25 * np.log(0.4))) / 2.5
    assert loss.item() == pytest.approx(by_hand, rel=1e-5)
    loss.backward()
    assert logits.grad[0, :, 0, 0].abs().max() == 0  # the undecided pixel teaches nothing
    assert logits.grad[0, :, 0, 1:].abs().min() > 0
    unweighted = distillation_loss(target, logits.softmax(1), 0)
    assert unweighted.item() > loss.item()  # the undecided pixel, far from its target, counted there
    nothing = distillation_loss(target, logits.softmax(1), 0, torch.zeros_like(target))
    assert nothing.item() == 0


@pytest.mark.parametrize("weighted", [False, True])
def test_still_images_whose_target_is_undecided_teach_nothing_with_confidence_weighting(tiny_config, weighted):
    from objectness.training.step import training_step

    torch.manual_seed(0)
    loss_cfg = dataclasses.replace(tiny_config.loss, view_synthesis_weight=0.0, flow_fit_weight=0.0,
                                   image_weight=1.0, distill_gain=3.0, image_confidence=weighted)
    model = AMD(tiny_config.model)
    frames = torch.rand(2, 2, 3, 64, 64)
    images = {"images": torch.rand(2, 3, 64, 64), "targets": torch.full((2, 64, 64), 0.5)}
    loss, terms, _ = training_step(model, frames, loss_cfg, images=images)
    if weighted:
        assert terms["image"].item() == 0
    else:
        assert terms["image"].item() >= np.log(2) - 1e-4  # cross-entropy against 0.5 is at least log 2
