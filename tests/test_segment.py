"""Zero-shot segmentation: the Python API (inference/segmenter.py, training/adapt.py) and `objectness segment`."""
import dataclasses
import logging

import av
import numpy as np
import pytest
import torch
from PIL import Image

from objectness import cli
from objectness.config import ConfigError
from objectness.data import synthetic
from objectness.inference.centre_prior import centre_prior
from objectness.inference.refine import refine_objectness
from objectness.inference.segmenter import (
    all_channels,
    default_checkpoint,
    load_segmenter,
    segment_images,
    segment_video,
)
from objectness.inference.sizing import inference_size
from objectness.model.amd import AMD
from objectness.model.checkpoint import CheckpointError, metadata, save_weights
from objectness.training.adapt import adapt

CHANNEL = 2


def _save_model(path, cfg, channel):
    torch.manual_seed(0)
    save_weights(path, AMD(cfg.model), cfg, metadata(objectness_channel=channel))
    return path


@pytest.fixture
def checkpoint(tmp_path, tiny_config):
    """A tiny untrained model whose objectness channel is stored with it."""
    return _save_model(tmp_path / "ckpt" / "model.safetensors", tiny_config, CHANNEL)


@pytest.fixture
def video(tiny_config):
    """Six 64 x 64 synthetic frames, uint8 (T, H, W, 3)."""
    return synthetic.make_video(tiny_config.data.synthetic, 0).frames


def _image(height, width, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def _write_mp4(path, frames, fps=10):
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def _video_frames(path):
    """(number of frames, (width, height)) of a video file."""
    with av.open(str(path)) as container:
        frames = [frame.to_image() for frame in container.decode(video=0)]
    return len(frames), frames[0].size


# ------------------------------------------------------------------------------------- Python API


def test_maps_have_each_images_size_and_lie_in_0_to_1(checkpoint):
    segmenter = load_segmenter(checkpoint, device="cpu")
    images = [_image(40, 60), _image(40, 60, seed=1), _image(70, 30)]
    maps = segment_images(segmenter, images)
    assert [m.shape for m in maps] == [(40, 60), (40, 60), (70, 30)]
    assert all(m.dtype == np.float32 and m.min() >= 0 and m.max() <= 1 for m in maps)


def test_inference_size_keeps_the_aspect_with_a_short_edge_of_392_in_multiples_of_8():
    assert inference_size(240, 427, 392) == (392, 696)
    assert inference_size(480, 480, 392) == (392, 392)
    assert inference_size(854, 480, 392) == (696, 392)


def test_centre_prior_segmenter_gives_the_centre_prior():
    segmenter = load_segmenter("centre-prior", device="cpu")
    maps = segment_images(segmenter, [_image(30, 50), _image(64, 64)])
    np.testing.assert_array_equal(maps[0], centre_prior(30, 50))
    np.testing.assert_array_equal(maps[1], centre_prior(64, 64))


def test_channel_comes_from_the_checkpoint_metadata(checkpoint):
    assert load_segmenter(checkpoint, device="cpu").channel == CHANNEL


def test_channel_argument_overrides_the_metadata_and_selects_that_mask(checkpoint):
    image = _image(48, 64)
    maps = [segment_images(load_segmenter(checkpoint, channel=k, device="cpu"), [image])[0] for k in range(5)]
    assert load_segmenter(checkpoint, channel=4, device="cpu").channel == 4
    np.testing.assert_allclose(np.sum(maps, axis=0), 1, atol=1e-4)  # the channels of one softmax


def test_checkpoint_without_channel_is_an_error_naming_the_remedies(tmp_path, tiny_config):
    path = _save_model(tmp_path / "model.safetensors", tiny_config, None)
    with pytest.raises(CheckpointError, match="objectness channels.*--channel"):
        load_segmenter(path, device="cpu")


def test_channel_out_of_range_is_an_error(checkpoint):
    with pytest.raises(CheckpointError, match="out of range"):
        load_segmenter(checkpoint, channel=5, device="cpu")


def test_several_scales_give_the_mean_of_the_maps_at_each_scale(checkpoint):
    image = _image(48, 64)
    one = load_segmenter(checkpoint, device="cpu")
    maps = [segment_images(dataclasses.replace(one, short_edge=edge), [image])[0] for edge in (32, 64)]
    half_and_one = load_segmenter(checkpoint, device="cpu", scales=[0.5, 1.0])
    assert half_and_one.short_edge == 64 and half_and_one.scales == (0.5, 1.0)
    assert not np.allclose(maps[0], maps[1], atol=1e-3)  # the two scales differ, so the mean is a test
    np.testing.assert_allclose(segment_images(half_and_one, [image])[0], (maps[0] + maps[1]) / 2, atol=1e-6)


def test_scales_default_to_the_checkpoints_test_scales(tmp_path, tiny_config):
    cfg = dataclasses.replace(tiny_config, data=dataclasses.replace(tiny_config.data, test_scales=(0.75, 1.25)))
    path = _save_model(tmp_path / "model.safetensors", cfg, CHANNEL)
    assert load_segmenter(path, device="cpu").scales == (0.75, 1.25)
    assert load_segmenter(path, device="cpu", scales=[1]).scales == (1.0,)


def test_the_guided_filter_refines_each_map_with_its_own_image(tmp_path, tiny_config):
    cfg = dataclasses.replace(tiny_config, data=dataclasses.replace(tiny_config.data, test_guided_radius=0.25))
    path = _save_model(tmp_path / "model.safetensors", cfg, CHANNEL)
    refined = load_segmenter(path, device="cpu")
    assert (refined.guided_radius, refined.guided_eps) == (0.25, 0.001)
    plain = load_segmenter(path, device="cpu", guided_radius=0)
    images = [_image(48, 64), _image(48, 64)[::-1].copy()]
    raw, maps = segment_images(plain, images), segment_images(refined, images)
    for image, soft, refined_map in zip(images, raw, maps):
        np.testing.assert_allclose(refined_map, refine_objectness(image, soft, 0.25, 0.001), atol=1e-6)
        assert not np.allclose(refined_map, soft, atol=1e-3)
    with pytest.raises(ConfigError, match="guided filter radius"):
        load_segmenter(path, device="cpu", guided_radius=0.9)


@pytest.mark.parametrize("scales", [[], [0], [-1.0], ["a"]])
def test_a_scale_that_is_not_a_positive_number_is_an_error(checkpoint, scales):
    with pytest.raises(ConfigError, match="positive"):
        load_segmenter(checkpoint, device="cpu", scales=scales)


def test_adaptation_changes_predictions_but_not_the_segmenters_weights(checkpoint, video):
    segmenter = load_segmenter(checkpoint, device="cpu")
    before = {k: v.clone() for k, v in segmenter.model.state_dict().items()}
    plain = segment_video(segmenter, video, progress=False)
    adapted = segment_video(adapt(segmenter, video, 2, progress=False), video, progress=False)
    assert adapted.shape == plain.shape == video.shape[:3]
    assert np.abs(adapted - plain).max() > 1e-5
    assert all(torch.equal(before[k], v) for k, v in segmenter.model.state_dict().items())
    assert not segmenter.model.training


def test_adaptation_is_reproducible_for_a_seed(checkpoint, video):
    segmenter = load_segmenter(checkpoint, device="cpu")
    first, second = (adapt(segmenter, video, 1, progress=False, seed=3) for _ in range(2))
    assert all(torch.equal(a, b) for a, b in zip(first.model.state_dict().values(), second.model.state_dict().values()))


def test_one_frame_video_is_segmented_per_image(checkpoint, video, caplog):
    segmenter = load_segmenter(checkpoint, device="cpu")
    with caplog.at_level(logging.INFO, logger="objectness.training.adapt"):
        maps = segment_video(adapt(segmenter, video[:1], 5, progress=False), video[:1], progress=False)
    np.testing.assert_array_equal(maps[0], segment_images(segmenter, video[:1])[0])
    assert "one frame" in caplog.text


def test_centre_prior_says_once_that_it_cannot_adapt(video, caplog):
    segmenter = load_segmenter("centre-prior", device="cpu")
    for steps in (0, 3, 3):
        maps = segment_video(adapt(segmenter, video, steps, progress=False), video, progress=False)
    np.testing.assert_array_equal(maps[0], centre_prior(64, 64))
    assert caplog.text.count("does nothing") == 1


def test_all_channels_gives_every_mask_and_the_segment_flow_at_frame_size(checkpoint, video):
    masks, flow = all_channels(load_segmenter(checkpoint, device="cpu"), video[0][:48], video[1][:48])
    assert masks.shape == (5, 48, 64) and flow.shape == (2, 48, 64)
    torch.testing.assert_close(masks.sum(0), torch.ones(48, 64), atol=1e-4, rtol=0)


# ------------------------------------------------------------------------------------- command line


def _segment(*argv):
    return cli.main(["segment", *map(str, argv)])


def _frame_outputs(folder, stem, size):
    for suffix in ("_soft.png", "_mask.png", "_overlay.jpg"):
        with Image.open(folder / f"{stem}{suffix}") as image:
            assert image.size == size, suffix
    with Image.open(folder / f"{stem}_mask.png") as mask:
        assert set(np.unique(np.asarray(mask))) <= {0, 255}


def test_cli_writes_soft_map_mask_and_overlay_for_an_image(tmp_path, checkpoint, capsys):
    Image.fromarray(_image(40, 56)).save(tmp_path / "photo.png")
    assert _segment(tmp_path / "photo.png", "--checkpoint", checkpoint, "--out", tmp_path / "out") == 0
    _frame_outputs(tmp_path / "out" / "photo", "photo", (56, 40))
    assert str(tmp_path / "out") in capsys.readouterr().out


def test_cli_relative_threshold_cuts_each_map_at_a_share_of_its_own_maximum(tmp_path, checkpoint):
    Image.fromarray(_image(40, 56)).save(tmp_path / "photo.png")
    assert _segment(tmp_path / "photo.png", "--checkpoint", checkpoint, "--out", tmp_path / "out",
                    "--threshold", "0.9", "--relative-threshold") == 0
    soft = np.asarray(Image.open(tmp_path / "out" / "photo" / "photo_soft.png"), np.float32) / 255
    mask = np.asarray(Image.open(tmp_path / "out" / "photo" / "photo_mask.png")) > 0
    # An untrained model's map never reaches 0.9; the pixels above 0.9 of its maximum are kept.
    assert soft.max() < 0.9 and mask.any()
    expected = soft > 0.9 * soft.max()  # up to the 8-bit rounding of the stored map
    assert np.mean(mask != expected) < 0.02


def test_cli_segments_a_folder_of_frames_as_an_adapted_video(tmp_path, checkpoint, video):
    folder = tmp_path / "clip"
    folder.mkdir()
    for t in (0, 1, 10):  # in name order: f10 after f1
        Image.fromarray(video[min(t, 5), :45, :63]).save(folder / f"f{t}.jpg")
    assert _segment(folder, "--checkpoint", checkpoint, "--out", tmp_path / "out", "--adapt", "1") == 0
    out = tmp_path / "out" / "clip"
    for t in (0, 1, 10):
        _frame_outputs(out, f"f{t}", (63, 45))
    assert _video_frames(out / "overlay.mp4") == (3, (62, 44))  # made even
    with Image.open(out / "channels.png") as strip:
        assert strip.size == (63 * 7, 45)  # image, 5 masks, flow


def test_cli_segments_an_mp4_with_even_overlay_frames(tmp_path, checkpoint, video):
    _write_mp4(tmp_path / "clip.mp4", video[:4, :48, :48])
    assert _segment(tmp_path / "clip.mp4", "--checkpoint", checkpoint, "--out", tmp_path / "out") == 0
    out = tmp_path / "out" / "clip"
    for t in range(4):
        _frame_outputs(out, f"{t:05d}", (48, 48))
    assert _video_frames(out / "overlay.mp4") == (4, (48, 48))
    assert (out / "channels.png").is_file()


def test_cli_refuses_to_overwrite_an_output_folder_unless_asked(tmp_path, checkpoint, capsys):
    Image.fromarray(_image(32, 32)).save(tmp_path / "photo.png")
    argv = [tmp_path / "photo.png", "--checkpoint", checkpoint, "--out", tmp_path / "out"]
    assert _segment(*argv) == 0
    capsys.readouterr()
    assert _segment(*argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--overwrite" in err
    assert _segment(*argv, "--overwrite") == 0


def test_cli_skips_an_unreadable_image_with_a_warning(tmp_path, checkpoint, caplog, capsys):
    folder = tmp_path / "photos"
    folder.mkdir()
    Image.fromarray(_image(32, 40)).save(folder / "good.png")
    (folder / "bad.png").write_bytes(b"not a png")
    with caplog.at_level(logging.WARNING):
        assert _segment(folder, "--images", "--checkpoint", checkpoint, "--out", tmp_path / "out") == 0
    _frame_outputs(tmp_path / "out" / "photos", "good", (40, 32))
    assert not (tmp_path / "out" / "photos" / "bad_soft.png").exists()
    assert "bad.png" in caplog.text
    assert "skipped 1" in capsys.readouterr().out


def test_shipped_model_loads_without_pickle_and_segments_a_synthetic_frame():
    path = default_checkpoint()
    assert path.suffix == ".safetensors" and path.stat().st_size <= 25 * 2**20
    segmenter = load_segmenter(path, device="cpu")
    # Channel 0 of 3, refined by the guided filter, as MODEL_CARD.md says.
    assert (segmenter.channel, segmenter.cfg.model.num_segments, segmenter.guided_radius) == (0, 3, 0.13)
    frame = synthetic.make_video(segmenter.cfg.data.synthetic, 0).frames[0]
    (soft,) = segment_images(segmenter, [frame])
    assert soft.shape == frame.shape[:2] and soft.dtype == np.float32
    assert 0 <= soft.min() and soft.max() <= 1 and soft.std() > 0


def test_cli_without_checkpoint_uses_the_shipped_model(tmp_path):
    Image.fromarray(_image(48, 40)).save(tmp_path / "photo.png")
    assert _segment(tmp_path / "photo.png", "--out", tmp_path / "out") == 0
    _frame_outputs(tmp_path / "out" / "photo", "photo", (40, 48))


def test_cli_scales_average_the_maps_of_those_scales(tmp_path, checkpoint):
    image = _image(48, 64)
    Image.fromarray(image).save(tmp_path / "photo.png")
    assert _segment(tmp_path / "photo.png", "--checkpoint", checkpoint, "--out", tmp_path / "out",
                    "--scales", "0.5", "1") == 0
    expected = segment_images(load_segmenter(checkpoint, device="cpu", scales=[0.5, 1]), [image])[0]
    written = np.asarray(Image.open(tmp_path / "out" / "photo" / "photo_soft.png"), dtype=np.float32) / 255
    np.testing.assert_allclose(written, expected, atol=1 / 255)
    with pytest.raises(SystemExit):
        _segment(tmp_path / "photo.png", "--checkpoint", checkpoint, "--out", tmp_path / "o2", "--scales", "0")


def test_cli_missing_checkpoint_file_is_one_error_line_and_exit_2(tmp_path, capsys):
    Image.fromarray(_image(32, 32)).save(tmp_path / "photo.png")
    assert _segment(tmp_path / "photo.png", "--checkpoint", tmp_path / "absent.pt", "--out", tmp_path / "out") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "absent.pt" in err


def test_cli_with_no_usable_input_is_one_error_line_and_exit_2(tmp_path, capsys):
    assert _segment(tmp_path / "absent.jpg", "--checkpoint", "centre-prior", "--out", tmp_path / "out") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no image" in err


def test_cli_says_that_single_images_are_not_adapted(tmp_path, checkpoint, caplog):
    Image.fromarray(_image(32, 32)).save(tmp_path / "photo.png")
    with caplog.at_level(logging.WARNING, logger="objectness.tools.segment_files"):
        assert _segment(tmp_path / "photo.png", "--checkpoint", checkpoint, "--out", tmp_path / "out",
                        "--adapt", "2") == 0
    assert "1 single image(s) are segmented without" in caplog.text
    _frame_outputs(tmp_path / "out" / "photo", "photo", (32, 32))


def test_a_video_that_cannot_be_adapted_is_still_segmented(tmp_path, checkpoint, video, caplog, monkeypatch):
    import objectness.tools.segment_files as segment_module
    from objectness.data.video import DataError

    def refuse(*args, **kwargs):
        raise DataError("no pair")

    monkeypatch.setattr(segment_module, "adapt", refuse)
    _write_mp4(tmp_path / "clip.mp4", video[:3, :32, :32])
    with caplog.at_level(logging.WARNING, logger="objectness.tools.segment_files"):
        assert _segment(tmp_path / "clip.mp4", "--checkpoint", checkpoint, "--out", tmp_path / "out",
                        "--adapt", "2") == 0
    assert "cannot adapt (no pair)" in caplog.text
    _frame_outputs(tmp_path / "out" / "clip", "00002", (32, 32))
