"""``objectness app``'s logic without a browser: reading uploads, segmenting, thresholding, zipping."""
import importlib.util
import io
import json
import socket
import sys
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

from objectness import cli
from objectness.data.video import VideoWriter
from objectness.inference.centre_prior import centre_prior
from objectness.model.amd import AMD
from objectness.model.checkpoint import metadata, save_weights
from objectness.tools import app

SIZE = (48, 64)  # (H, W)


def _box_image(path, size=SIZE):
    """A bright box left of centre on a dark ground."""
    image = np.full((*size, 3), 20, np.uint8)
    image[size[0] // 4:size[0] * 3 // 4, size[1] // 8:size[1] // 2] = 230
    Image.fromarray(image).save(path)
    return path


def _video(path, frames):
    with VideoWriter(path, fps=10) as writer:
        for t in range(frames):
            image = np.full((*SIZE, 3), 20, np.uint8)
            image[10:30, 4 + 2 * t:24 + 2 * t] = 230
            writer.write(Image.fromarray(image))
    return path


@pytest.fixture
def prior():
    return app.load_app_segmenter(app.CENTRE_PRIOR)


def test_an_unreadable_upload_is_a_message_naming_it_and_the_rest_is_segmented(tmp_path):
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "broken.png").write_bytes(_box_image(tmp_path / "whole.png").read_bytes()[:40])
    results, message = app.run_segmentation([tmp_path / "notes.txt", tmp_path / "broken.png", tmp_path / "whole.png"],
                                            app.CENTRE_PRIOR)
    assert results.names == ["whole"]
    assert "notes.txt: not an image or a video that can be read" in message
    assert "broken.png: not an image or a video that can be read" in message
    assert "Traceback" not in message


def test_only_unreadable_uploads_give_a_message_and_no_results(tmp_path):
    (tmp_path / "notes.txt").write_text("not an image")
    results, message = app.run_segmentation([tmp_path / "notes.txt"], app.CENTRE_PRIOR)
    assert results is None and message.startswith("Nothing to segment.") and "notes.txt" in message


def test_a_checkpoint_that_cannot_be_loaded_is_a_message(tmp_path):
    results, message = app.run_segmentation([_box_image(tmp_path / "a.png")], tmp_path / "no-such-run")
    assert results is None and "cannot be used" in message and "no-such-run" in message


def test_an_empty_path_box_is_refused_with_what_to_type():
    with pytest.raises(app.CheckpointError, match="type the path"):
        app.checkpoint_of(app.PATH_CHOICE, "  ")
    assert app.checkpoint_of(app.PATH_CHOICE, " runs/amd ") == app.Path("runs/amd")
    assert app.checkpoint_of(app.SHIPPED, "ignored") is None


def test_a_video_over_the_cap_keeps_its_first_frames_with_a_note(tmp_path):
    uploads, notes = app.read_uploads([_video(tmp_path / "clip.mp4", 6), _box_image(tmp_path / "late.png")],
                                      max_frames=4)
    assert [len(u.video) for u in uploads] == [4] and uploads[0].is_video
    assert "clip.mp4: only its first 4 of 6 frames" in notes[0] and "late.png: left out" in notes[1]


def test_a_long_video_is_decoded_only_up_to_the_cap(tmp_path, monkeypatch):
    decoded = []
    real = app.decode_video

    def counting(*args, **kwargs):
        video, fps = real(*args, **kwargs)
        decoded.append(len(video))
        return video, fps

    monkeypatch.setattr(app, "decode_video", counting)
    uploads, notes = app.read_uploads([_video(tmp_path / "clip.mp4", 12)], max_frames=3)
    assert decoded == [4] and [len(u.video) for u in uploads] == [3]
    assert "clip.mp4: only its first 3 of 12 frames" in notes[0]


def test_video_frames_are_named_by_number_and_images_by_their_stem(tmp_path, prior):
    uploads, _ = app.read_uploads([_video(tmp_path / "clip.mp4", 3), _box_image(tmp_path / "photo.png")])
    results = app.segment_uploads(prior, uploads, progress=False)
    assert results.names == ["clip_00000", "clip_00001", "clip_00002", "photo"]
    assert results.frame(3).shape == (*SIZE, 3)


def test_the_threshold_cuts_the_cached_map_without_running_the_network(tmp_path, prior, monkeypatch):
    uploads, _ = app.read_uploads([_box_image(tmp_path / "a.png")])
    results = app.segment_uploads(prior, uploads, progress=False)

    def refuse(*args, **kwargs):
        raise AssertionError("the network ran again")

    monkeypatch.setattr(app, "segment_frames", refuse)
    soft = centre_prior(*SIZE)
    for threshold in (0.2, 0.8):
        soft_view, mask, tinted = app.views(results, 0, threshold)
        np.testing.assert_array_equal(np.asarray(mask) > 0, soft.astype(np.float16) > threshold)
        assert tinted.size == soft_view.size == (SIZE[1], SIZE[0])
    assert (np.asarray(app.views(results, 0, 0.2)[1]) > 0).sum() > (np.asarray(app.views(results, 0, 0.8)[1]) > 0).sum()


def test_the_relative_cut_gives_a_faint_map_a_mask_in_the_view_and_the_zip(tmp_path, prior):
    uploads, _ = app.read_uploads([_box_image(tmp_path / "a.png")])
    results = app.segment_uploads(prior, uploads, progress=False)
    results.soft[0] = results.soft[0] * np.float16(0.4)  # a faint map: its maximum 0.4, under a fixed 0.5
    assert not (np.asarray(app.views(results, 0, 0.5)[1]) > 0).any()
    mask = np.asarray(app.views(results, 0, 0.5, relative=True)[1]) > 0
    np.testing.assert_array_equal(mask, results.soft[0] > 0.5 * results.soft[0].max())
    assert mask.any()
    archive = zipfile.ZipFile(app.write_zip(results, 0.5, tmp_path / "results.zip", relative=True))
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(archive.read("a_mask.png")))) > 0, mask)
    assert json.loads(archive.read("settings.json"))["relative_threshold"] is True


def test_the_zip_holds_a_map_mask_and_overlay_per_frame_and_the_settings(tmp_path):
    paths = [_box_image(tmp_path / "a.png"), _box_image(tmp_path / "b.png", (32, 32))]
    results, _ = app.run_segmentation(paths, app.CENTRE_PRIOR, progress=False)
    archive = zipfile.ZipFile(app.write_zip(results, 0.3, tmp_path / "results.zip"))
    assert sorted(archive.namelist()) == sorted(
        [f"{n}_{kind}" for n in ("a", "b") for kind in ("soft.png", "mask.png", "overlay.jpg")] + ["settings.json"])
    mask = np.asarray(Image.open(io.BytesIO(archive.read("b_mask.png"))))
    np.testing.assert_array_equal(mask > 0, centre_prior(32, 32).astype(np.float16) > 0.3)
    assert json.loads(archive.read("settings.json")) == {"checkpoint": "centre-prior", "threshold": 0.3}


def test_scales_and_guided_filter_follow_the_page(tmp_path, tiny_config):
    weights = tmp_path / "model.safetensors"
    save_weights(weights, AMD(tiny_config.model), tiny_config, metadata(objectness_channel=0))
    one = app.load_app_segmenter(weights, single_scale=True, guided=False, device="cpu")
    assert one.scales == (1.0,) and one.guided_radius == 0
    # tiny_config keeps the paper's one scale and no filter: "on" takes the shipped recipe's radius
    on = app.load_app_segmenter(weights, guided=True, device="cpu")
    assert on.guided_radius == app.GUIDED_RADIUS


def test_each_video_is_adapted_to_and_images_are_not(tmp_path, tiny_config, monkeypatch):
    torch.manual_seed(0)
    weights = tmp_path / "model.safetensors"
    save_weights(weights, AMD(tiny_config.model), tiny_config, metadata(objectness_channel=0))
    adapted = []
    monkeypatch.setattr(app, "adapt", lambda segmenter, video, steps, progress: adapted.append((video.name, steps))
                        or segmenter)
    results, message = app.run_segmentation([_video(tmp_path / "clip.mp4", 3), _box_image(tmp_path / "photo.png")],
                                            weights, adapt_steps=20, device="cpu", progress=False)
    assert adapted == [("clip", 20)] and len(results) == 4
    assert "20 adaptation steps per video" in message


def test_adaptation_on_images_alone_is_said_not_done(tmp_path):
    _, message = app.run_segmentation([_box_image(tmp_path / "a.png")], app.CENTRE_PRIOR, adapt_steps=50,
                                      progress=False)
    assert "no adaptation" in message


def test_the_app_command_without_gradio_says_how_to_install_it(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "gradio", None)  # import gradio raises ImportError
    assert cli.main(["app", "--checkpoint", "centre-prior"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pip install 'objectness[app]'" in err


NO_GRADIO = importlib.util.find_spec("gradio") is None


@pytest.mark.skipif(NO_GRADIO, reason="gradio is not installed (pip install -e '.[app]')")
def test_a_port_in_use_is_one_error_line(capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        code = cli.main(["app", "--checkpoint", "centre-prior", "--port", str(taken.getsockname()[1])])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "the port is taken" in err


def test_the_app_listens_on_this_computer_only_by_default():
    args = cli.build_parser().parse_args(["app"])
    assert (args.host, args.port, args.checkpoint) == ("127.0.0.1", None, None)
