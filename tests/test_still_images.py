"""Still images beside the video (data/images.py, training/image_targets.py; not the paper's)."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

from objectness.config import ConfigError, load_config
from objectness.data.images import ImageDataset, MapCache, StillImages, load_or_compute_maps
from objectness.data.video import DataError
from objectness.model.amd import AMD
from objectness.model.checkpoint import metadata, save_weights
from objectness.training.image_targets import build_image_dataset
from objectness.training.train import train


def _square_image(size=(64, 96), box=(16, 48, 24, 56), colour=(250, 30, 30)) -> np.ndarray:
    """A grey image with one coloured rectangle (top, bottom, left, right)."""
    image = np.full((*size, 3), 90, dtype=np.uint8)
    top, bottom, left, right = box
    image[top:bottom, left:right] = colour
    return image


def _folder(tmp_path, count=3, broken=True):
    folder = tmp_path / "images"
    (folder / "sub").mkdir(parents=True)
    for i in range(count):
        Image.fromarray(_square_image()).save(folder / ("sub" if i == 0 else ".") / f"img{i}.png")
    (folder / ".hidden.png").write_bytes(b"not listed")
    if broken:
        (folder / "broken.jpg").write_bytes(b"not an image")
    return folder


def test_still_images_are_found_recursively_in_natural_order_without_hidden_files(tmp_path):
    images = StillImages(_folder(tmp_path))
    assert images.names() == ["broken.jpg", "img1.png", "img2.png", "sub/img0.png"]


def test_a_folder_without_images_is_one_clear_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no images"):
        StillImages(tmp_path / "empty")
    with pytest.raises(DataError, match="not found"):
        StillImages(tmp_path / "missing")


def test_unreadable_images_are_skipped_and_counted_and_maps_are_computed_once(tmp_path):
    images = StillImages(_folder(tmp_path))
    calls = []

    def mean_red(image):
        calls.append(image.shape)
        return image[..., 0] / 255.0

    cache = load_or_compute_maps(images, "test-key", mean_red, "test maps", tmp_path / "cache")
    assert cache.unreadable == 1 and cache.get(0) is None  # broken.jpg
    assert len(calls) == 3
    red = cache.get(1)
    assert red.shape == (64, 96) and red.max() == pytest.approx(250 / 255, abs=1 / 255)
    again = load_or_compute_maps(images, "test-key", mean_red, "test maps", tmp_path / "cache")
    assert len(calls) == 3  # read from the cache
    np.testing.assert_array_equal(again.get(2), cache.get(2))


def test_a_cached_map_keeps_its_image_shape_at_a_smaller_scale(tmp_path):
    folder = tmp_path / "big"
    folder.mkdir()
    Image.fromarray(_square_image(size=(192, 288))).save(folder / "a.png")
    cache = load_or_compute_maps(StillImages(folder), "k", lambda im: im[..., 0] / 255.0, "maps", tmp_path / "c")
    assert cache.get(0).shape == (96, 144)


def test_an_image_crop_and_its_target_crop_are_the_same_place(tmp_path, tiny_overrides):
    folder = tmp_path / "one"
    folder.mkdir()
    Image.fromarray(_square_image(size=(64, 96))).save(folder / "a.png")
    images = StillImages(folder)
    # The target is the image's own red rectangle, so target and image must agree after any crop and flip.
    cache = load_or_compute_maps(images, "k", lambda im: (im[..., 1] < 60).astype(float), "maps", tmp_path / "c")
    cfg = load_config(None, [*tiny_overrides, "data.crop_size=[48,48]", "data.short_edge=64",
                             "data.scale_range=[0.8,1.2]", "data.image_color_jitter=0"])
    dataset = ImageDataset(images, [(cache, 1.0)], cfg.data, seed=3)
    for k in range(6):
        item = dataset[k]
        red = (item["images"][1] < 0.25).float()  # the rectangle is the only low-green area
        inside = item["targets"][red > 0.5]
        outside = item["targets"][red < 0.5]
        assert item["images"].shape == (3, 48, 48) and item["targets"].shape == (48, 48)
        if len(inside):
            assert inside.mean() > 0.8
        assert outside.mean() < 0.2


def test_items_depend_only_on_seed_and_index_and_jitter_leaves_the_target_alone(tmp_path, tiny_overrides):
    images = StillImages(_folder(tmp_path, broken=False))
    cache = MapCache(np.full(64 * 96 * 3, 128, dtype=np.uint8), [[i * 64 * 96, 64, 96] for i in range(3)])
    plain = ImageDataset(images, [(cache, 1.0)], load_config(None, [*tiny_overrides, "data.image_color_jitter=0"]).data)
    jittered = ImageDataset(images, [(cache, 1.0)], load_config(None, [*tiny_overrides, "data.image_color_jitter=0.5"]).data)
    torch.testing.assert_close(plain[5]["images"], plain[5]["images"])
    assert not torch.equal(plain[5]["images"], jittered[5]["images"])
    torch.testing.assert_close(plain[5]["targets"], jittered[5]["targets"])
    assert not torch.equal(plain[5]["images"], plain[6]["images"])


def test_the_target_is_the_weighted_mean_of_its_caches(tmp_path, tiny_overrides):
    images = StillImages(_folder(tmp_path, count=1, broken=False))
    size = 64 * 96
    zeros, ones = MapCache(np.zeros(size, np.uint8), [[0, 64, 96]]), MapCache(np.full(size, 255, np.uint8), [[0, 64, 96]])
    dataset = ImageDataset(images, [(zeros, 0.75), (ones, 0.25)], load_config(None, list(tiny_overrides)).data)
    torch.testing.assert_close(dataset[0]["targets"], torch.full((64, 64), 0.25))


def test_image_training_needs_its_folder_and_teachers_or_the_prior_alone(tmp_path, tiny_overrides):
    folder = _folder(tmp_path, count=1, broken=False)
    with pytest.raises(ConfigError, match="data.images"):
        train(load_config(None, [*tiny_overrides, "loss.image_weight=1", "loss.image_prior_weight=1"]), tmp_path / "a")
    with pytest.raises(ConfigError, match="distill_from"):
        train(load_config(None, [*tiny_overrides, "loss.image_weight=1", f"data.images={folder}"]), tmp_path / "b")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()  # refused before the run folder
    with pytest.raises(ConfigError, match="image_prior_weight"):
        load_config(None, [*tiny_overrides, "loss.image_prior_weight=1.5"])


def test_targets_mix_the_teachers_maps_and_the_prior(tmp_path, tiny_config, tiny_overrides):
    folder = _folder(tmp_path, count=2, broken=True)
    teacher = tmp_path / "teacher.safetensors"
    torch.manual_seed(0)
    save_weights(teacher, AMD(tiny_config.model), tiny_config, metadata(objectness_channel=1))
    cfg = load_config(None, [*tiny_overrides, f"data.images={folder}", "loss.image_weight=1",
                             f"loss.distill_from=[{teacher}]", f"data.map_cache={tmp_path / 'maps'}"])
    dataset = build_image_dataset(cfg, "cpu", seed=0)
    assert [weight for _, weight in dataset.targets] == [0.5, 0.5]
    assert len(dataset) == 2  # the broken file has no map and is never drawn
    assert dataset[0]["targets"].shape == (64, 64)


def test_training_on_still_images_lowers_their_loss(tmp_path, tiny_overrides):
    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(6):
        top, left = rng.integers(8, 32, size=2)
        Image.fromarray(_square_image(size=(64, 64), box=(top, top + 24, left, left + 24))).save(folder / f"{i}.png")
    cfg = load_config(None, [*tiny_overrides, f"data.images={folder}", "loss.image_weight=1",
                             "loss.image_prior_weight=1", "loss.view_synthesis_weight=0", "loss.flow_fit_weight=0",
                             f"data.map_cache={tmp_path / 'maps'}", "train.steps=30", "train.lr=1e-3",
                             "data.image_batch_size=4", "data.image_color_jitter=0"])
    train(cfg, tmp_path / "run")
    lines = [line for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines() if '"image"' in line]
    losses = [json.loads(line)["image"] for line in lines]
    assert np.mean(losses[-5:]) < 0.8 * np.mean(losses[:5])


def test_a_model_trained_on_still_images_adapts_to_a_video_without_them(tmp_path, tiny_config):
    import dataclasses

    from objectness.data import synthetic
    from objectness.inference.segmenter import load_segmenter, segment_images
    from objectness.training.adapt import adapt

    video = synthetic.make_video(tiny_config.data.synthetic, 0).frames
    loss = dataclasses.replace(tiny_config.loss, flow_fit_weight=1.0, view_synthesis_weight=0.0, image_weight=1.0,
                               image_prior_weight=1.0)
    data = dataclasses.replace(tiny_config.data, images=str(tmp_path / "gone"), flow_cache=str(tmp_path / "flow"))
    cfg = dataclasses.replace(tiny_config, loss=loss, data=data)
    torch.manual_seed(0)
    save_weights(tmp_path / "m.safetensors", AMD(cfg.model), cfg, metadata(objectness_channel=0))
    segmenter = load_segmenter(tmp_path / "m.safetensors", device="cpu")
    adapted = adapt(segmenter, video, steps=2, progress=False)  # the flow fit alone; the images are gone
    assert not torch.equal(torch.as_tensor(segment_images(adapted, video[:1])[0]),
                           torch.as_tensor(segment_images(segmenter, video[:1])[0]))
