"""``objectness app``: a local page that segments dropped images and short videos, its threshold moved live.

The page is Gradio laid thinly over plain functions, which a test or a notebook
calls the same way:

    uploads, notes = read_uploads(paths)                  # images and videos; unreadable files become notes
    results = segment_uploads(segmenter, uploads, adapt_steps=0)   # the objectness maps, cached
    soft, mask, tinted = views(results, index, threshold)  # the cached map cut again: the network does not run
    write_zip(results, threshold, "results.zip")           # every soft map, mask and overlay

``running_app`` serves the page on 127.0.0.1 and keeps every file it makes
(uploads, images shown, zips) in a TemporaryDirectory removed when it stops. It
sends nothing anywhere: no analytics, no share link, no run history kept in the browser.
"""
from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import logging
import os
import signal
import tempfile
import threading
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from ..config import ConfigError
from ..data.video import VIDEO_SUFFIXES, DataError, Video, decode_video, read_image
from ..evaluation.metrics import binarise
from ..files import distinct_names
from ..inference.segmenter import CENTRE_PRIOR, SHIPPED_MODEL, Segmenter, load_segmenter, segment_frames
from ..model.checkpoint import CheckpointError
from ..training.adapt import adapt
from ..visualize import overlay, soft_map_to_png

MAX_FRAMES = 300  # frames segmented per press of Segment: a long clip would keep the page waiting for minutes
VIDEO_SHORT_EDGE = 480  # a video's frames are decoded at most this high: above every test scale of our presets
GUIDED_RADIUS = 0.13  # the filter "on" for a checkpoint whose own radius is 0: the shipped recipe's (davis-flowfit)
MAX_ADAPT_STEPS = 300
MAX_UPLOAD = "500mb"
CACHE_SECONDS = 3600  # Gradio's copies of uploads and shown images are deleted after an hour, and all on exit
HOST = "127.0.0.1"

SHIPPED = f"shipped model ({SHIPPED_MODEL})"
PATH_CHOICE = "run folder or weights file below"
CHECKPOINT_SCALES = "the checkpoint's test scales"
ONE_SCALE = "one scale"
USER_ERRORS = (CheckpointError, ConfigError, DataError, OSError)  # said on the page, never as a traceback


class AppError(RuntimeError):
    """The app cannot start: its optional dependencies are missing, or it has no address to listen on."""


def import_gradio():
    """Gradio, or AppError saying how to install it. It reads GRADIO_TEMP_DIR when first imported."""
    try:
        import gradio
    except ImportError:
        raise AppError("objectness app needs Gradio, an optional extra: pip install 'objectness[app]'") from None
    return gradio


@dataclass
class Upload:
    """One readable file: an image (one frame) or the frames of a video, JPEG-encoded in memory."""

    video: Video
    is_video: bool
    declared_frames: int = 0  # a video's frames as its header says, of which the first were read


@dataclass
class Results:
    """The cached objectness maps of one press of Segment: what the threshold, the views and the zip read."""

    names: list  # one distinct name per frame: the file names in the zip
    sources: list  # (Video, frame index) per frame
    soft: list  # float16 (H, W) in 0..1 per frame, the objectness map
    settings: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.names)

    def frame(self, index: int) -> np.ndarray:
        video, frame = self.sources[index]
        return video.read(frame)


def read_uploads(paths, max_frames: int = MAX_FRAMES) -> tuple:
    """(uploads, notes): the files that are images or videos, with at most ``max_frames`` frames in all.

    A file that cannot be read, or that finds no room under the cap, is a note
    naming it; a video over the cap keeps its first frames, also with a note.
    """
    uploads, notes, room = [], [], max_frames
    for path in map(Path, paths):
        try:
            upload = _read_upload(path, max_frames=room + 1)
        except DataError as err:
            notes.append(str(err))
            continue
        if room == 0:
            notes.append(f"{path.name}: left out: {max_frames} frames at most are segmented at a time")
            continue
        if len(upload.video) > room:
            total = max(upload.declared_frames, len(upload.video))
            notes.append(f"{path.name}: only its first {room} of {total} frames are segmented "
                         f"({max_frames} at most at a time, so that the page stays quick)")
            upload = Upload(Video(upload.video.name, upload.video.frames[:room]), upload.is_video)
        uploads.append(upload)
        room -= len(upload.video)
    return uploads, notes


def _read_upload(path: Path, max_frames: int) -> Upload:
    """An image or a video file (at most its first ``max_frames`` frames decoded); DataError naming it by
    its name (Gradio's copy lies in a folder of its own)."""
    unreadable = DataError(f"{path.name}: not an image or a video that can be read; left out")
    if path.suffix.lower() in VIDEO_SUFFIXES:
        try:
            video = decode_video(path, path.stem, max_short_edge=VIDEO_SHORT_EDGE, max_frames=max_frames)[0]
            return Upload(video, True, _declared_frames(path))
        except DataError:
            raise unreadable from None
    try:
        return Upload(Video(path.stem, [read_image(path)]), False)
    except DataError:
        raise unreadable from None


def _declared_frames(path: Path) -> int:
    """The frames a video file's header declares, none decoded; 0 where it says nothing or cannot be opened."""
    import av

    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            if stream.frames:
                return stream.frames
            if container.duration and stream.average_rate:  # some containers (WebM) declare a duration only
                return int(container.duration / av.time_base * stream.average_rate)
            return 0
    except (av.FFmpegError, OSError, IndexError):
        return 0  # decode_video says whether it can be read


def load_app_segmenter(checkpoint=None, single_scale: bool = False, guided: bool = True,
                       device="auto") -> Segmenter:
    """The segmenter of the page's settings: ``checkpoint`` as ``load_segmenter`` takes it, at one scale
    or at the checkpoint's test scales, with the guided filter at the checkpoint's radius (GUIDED_RADIUS
    where that is 0) or without it."""
    segmenter = load_segmenter(checkpoint, device=device, scales=[1.0] if single_scale else None,
                               guided_radius=None if guided else 0.0)
    if guided and not segmenter.is_baseline and segmenter.guided_radius == 0:
        segmenter = dataclasses.replace(segmenter, guided_radius=GUIDED_RADIUS)
    return segmenter


def segment_uploads(segmenter: Segmenter, uploads, adapt_steps: int = 0, progress: bool = True) -> Results:
    """The objectness map of every frame; each video is adapted to first for ``adapt_steps`` steps
    (training/adapt.py), images are not. Unreadable frames are skipped."""
    names, sources, soft = [], [], []
    for upload in uploads:
        model = adapt(segmenter, upload.video, adapt_steps, progress) if upload.is_video else segmenter
        for index, _, soft_map in segment_frames(model, upload.video, progress):
            names.append(f"{upload.video.name}_{index:05d}" if upload.is_video else upload.video.name)
            sources.append((upload.video, index))
            soft.append(soft_map.astype(np.float16))  # half the memory; finer than the 8-bit files
    return Results(distinct_names(names), sources, soft)


def views(results: Results, index: int, threshold: float, relative: bool = False) -> tuple:
    """(objectness map, mask, overlay) of frame ``index`` as PIL images: the cached map cut at ``threshold``
    or, ``relative``, at ``threshold`` times its own maximum (evaluation.metrics.binarise)."""
    soft = results.soft[index]
    mask = binarise(soft, threshold, relative)
    return soft_map_to_png(soft), Image.fromarray(mask.astype(np.uint8) * 255), overlay(results.frame(index), mask)


def write_zip(results: Results, threshold: float, path, relative: bool = False) -> Path:
    """<name>_soft.png (the 8-bit map), <name>_mask.png (the map cut as ``views`` cuts it, 0/255) and
    <name>_overlay.jpg of every frame, and settings.json (the settings and the cut), in one zip at ``path``."""
    path = Path(path)
    with zipfile.ZipFile(path, "w") as archive:  # stored: PNG and JPEG are compressed already
        for index, name in enumerate(results.names):
            soft, mask, tinted = views(results, index, threshold, relative)
            for suffix, image in (("_soft.png", soft), ("_mask.png", mask), ("_overlay.jpg", tinted)):
                buffer = io.BytesIO()
                image.save(buffer, format="JPEG" if suffix.endswith(".jpg") else "PNG")
                archive.writestr(name + suffix, buffer.getvalue())
        cut = {"threshold": threshold, **({"relative_threshold": True} if relative else {})}
        archive.writestr("settings.json", json.dumps({**results.settings, **cut}, indent=2) + "\n")
    return path


def checkpoint_of(choice: str, path: str = ""):
    """What ``load_segmenter`` takes for the page's checkpoint choice: None (the shipped model),
    ``centre-prior``, or the path typed in."""
    if choice == CENTRE_PRIOR:
        return CENTRE_PRIOR
    if choice == PATH_CHOICE:
        if not path.strip():
            raise CheckpointError("type the path of a run folder, last.pt or .safetensors file in the box")
        return Path(path.strip()).expanduser()
    return None


def run_segmentation(paths, checkpoint=None, single_scale: bool = False, guided: bool = True, adapt_steps: int = 0,
                     device="auto", progress: bool = True) -> tuple:
    """What the page's Segment button does: (Results, or None, and the message for the page, Markdown).

    Unreadable files and a checkpoint that cannot be used are said in the message, never raised.
    """
    if not paths:
        return None, "Drop images or a short video first."
    uploads, notes = read_uploads(paths)
    if not uploads:
        return None, _message("Nothing to segment.", notes)
    try:
        segmenter = load_app_segmenter(checkpoint, single_scale, guided, device)
    except USER_ERRORS as err:
        return None, _message(f"This checkpoint cannot be used: {err}", notes)
    adapted = adapt_steps if any(u.is_video for u in uploads) and not segmenter.is_baseline else 0
    if adapt_steps and not adapted:
        notes.append("no adaptation: it needs a video, and weights to adapt (a baseline has none)")
    start = time.perf_counter()
    try:
        results = segment_uploads(segmenter, uploads, adapted, progress)
    except (DataError, ConfigError) as err:
        return None, _message(f"Segmenting stopped: {err}", notes)
    if not len(results):
        return None, _message("No frame could be read.", notes)
    results.settings = _settings(segmenter, checkpoint, adapted)
    model = "the " + SHIPPED if checkpoint is None else str(checkpoint)
    summary = (f"{len(results)} frame(s) of {len(uploads)} file(s) segmented in {time.perf_counter() - start:.1f} s "
               f"with {model} ({_describe(results.settings)}). Move the threshold to cut the masks again; "
               "press Segment again after changing the settings on the left.")
    return results, _message(summary, notes)


def _settings(segmenter: Segmenter, checkpoint, adapt_steps: int) -> dict:
    name = SHIPPED if checkpoint is None else str(checkpoint)
    if segmenter.is_baseline:
        return {"checkpoint": name}
    return {"checkpoint": name, "channel": segmenter.channel, "scales": list(segmenter.scales),
            "guided_radius": segmenter.guided_radius, "precision": segmenter.precision, "adapt_steps": adapt_steps}


def _describe(settings: dict) -> str:
    if "scales" not in settings:
        return "a Gaussian at the image centre, no network"
    radius = settings["guided_radius"]
    parts = [f"scales {', '.join(f'{s:g}' for s in settings['scales'])}",
             f"guided filter {'radius ' + format(radius, 'g') if radius else 'off'}", settings["precision"]]
    if settings["adapt_steps"]:
        parts.append(f"{settings['adapt_steps']} adaptation steps per video")
    return "; ".join(parts)


def _message(text: str, notes) -> str:
    return "\n".join([text, ""] + [f"- {note}" for note in notes])


def initial_choice(checkpoint) -> tuple:
    """(radio choice, path box) of the page for the command line's ``--checkpoint``."""
    if checkpoint is None:
        return SHIPPED, ""
    if str(checkpoint) == CENTRE_PRIOR:
        return CENTRE_PRIOR, ""
    return PATH_CHOICE, str(checkpoint)


def build_app(gr, workdir: Path, checkpoint=None, device="auto"):
    """The page: Gradio's Blocks over the functions above; zips are written under ``workdir``."""
    choice, path = initial_choice(checkpoint)
    with gr.Blocks(title="objectness", analytics_enabled=False, delete_cache=(CACHE_SECONDS, CACHE_SECONDS)) as page:
        gr.Markdown("## objectness: zero-shot object segmentation\nDrop images or a short video, pick a "
                    "checkpoint, press **Segment**. Everything stays on this computer.")
        results = gr.State(None)
        with gr.Row():
            with gr.Column(scale=1):
                files = gr.File(label=f"images or a short video (the first {MAX_FRAMES} frames)",
                                file_count="multiple", type="filepath", elem_id="uploads")
                model = gr.Radio([SHIPPED, CENTRE_PRIOR, PATH_CHOICE], value=choice, label="checkpoint")
                model_path = gr.Textbox(value=path, label="run folder, last.pt or .safetensors file",
                                        placeholder="runs/amd")
                scales = gr.Radio([CHECKPOINT_SCALES, ONE_SCALE], value=CHECKPOINT_SCALES, label="scales")
                guided = gr.Checkbox(value=True, label="guided filter: the map's edges onto the image's")
                steps = gr.Slider(0, MAX_ADAPT_STEPS, value=0, step=10, elem_id="adapt_steps",
                                  label="test-time adaptation steps per video (0: none; the paper: 100)")
                segment = gr.Button("Segment", variant="primary", elem_id="segment")
            with gr.Column(scale=2):
                message = gr.Markdown(elem_id="message")
                with gr.Row():
                    shown = [gr.Image(label=label, interactive=False, elem_id=key, buttons=["download", "fullscreen"])
                             for key, label in (("soft", "objectness map"), ("mask", "mask"), ("overlay", "overlay"))]
                threshold = gr.Slider(0, 1, value=0.5, step=0.01, label="threshold: the mask is the map above it",
                                      elem_id="threshold")
                relative = gr.Checkbox(value=False, elem_id="relative",
                                       label="relative: the mask is the map above the threshold times the map's "
                                             "maximum, so a faint map still gives one (not the paper's)")
                frame = gr.Slider(0, 1, value=0, step=1, label="frame", visible=False, elem_id="frame")
                with gr.Row(equal_height=True):
                    zip_button = gr.Button("Zip the maps, masks and overlays", scale=1)
                    download = gr.File(label="results", interactive=False, height=80, scale=2, elem_id="download")

        def on_segment(paths, choice, path, scale_choice, guided_on, adapt_steps, cut, relative_on,
                       progress=gr.Progress(track_tqdm=True)):  # shows adapt's and segment_frames' tqdm bars
            try:
                found, text = run_segmentation(paths or [], checkpoint_of(choice, path), scale_choice == ONE_SCALE,
                                               guided_on, int(adapt_steps), device)
            except CheckpointError as err:
                found, text = None, str(err)
            if found is None:
                return None, text, gr.update(visible=False), None, None, None, None
            count = len(found)
            return (found, text, gr.update(maximum=max(count - 1, 1), value=0, visible=count > 1),
                    *views(found, 0, cut, relative_on), None)

        def on_view(found, index, cut, relative_on):
            return views(found, int(index), cut, relative_on) if found is not None else (None, None, None)

        def on_zip(found, cut, relative_on):
            if found is None:
                return None
            folder = Path(tempfile.mkdtemp(dir=workdir))
            return str(write_zip(found, cut, folder / "objectness-results.zip", relative_on))

        model_path.input(lambda: PATH_CHOICE, None, model)  # typing a path chooses it
        segment.click(on_segment, [files, model, model_path, scales, guided, steps, threshold, relative],
                      [results, message, frame, *shown, download])
        for control in (threshold, relative, frame):
            control.change(on_view, [results, frame, threshold, relative], shown, trigger_mode="always_last",
                           show_progress="hidden")
        for control in (threshold, relative):  # a zip made at another cut
            control.change(lambda: None, None, download, show_progress="hidden")
        zip_button.click(on_zip, [results, threshold, relative], download)
    return page


@contextlib.contextmanager
def _environment(**values):
    """Set environment variables for the duration, as they were afterwards."""
    before = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextlib.contextmanager
def running_app(host: str = HOST, port=None, checkpoint=None, device="auto"):
    """Serve the page on host:port (None: 7860 or the next free port) until the block ends; yields its URL.

    Gradio's files (uploads, the images shown) and the zips go to one
    TemporaryDirectory, removed on leaving.
    """
    with tempfile.TemporaryDirectory(prefix="objectness-app-") as workdir, \
            _environment(GRADIO_TEMP_DIR=str(Path(workdir) / "gradio"), GRADIO_ANALYTICS_ENABLED="False",
                         GRADIO_RUN_HISTORY="False"):
        gr = import_gradio()
        logging.getLogger("httpx").setLevel(logging.WARNING)  # Gradio's check that its own page is up
        page = build_app(gr, Path(workdir), checkpoint, device)
        page.queue(default_concurrency_limit=1)  # one segmentation at a time: the cores are shared
        try:
            page.launch(server_name=host, server_port=port, share=False, prevent_thread_lock=True, quiet=True,
                        max_file_size=MAX_UPLOAD, enable_monitoring=False, run_history=False, mcp_server=False,
                        ssr_mode=False, pwa=False)
        except OSError:  # Gradio's own words name its environment variables, not our flags
            raise AppError(f"cannot listen on {host} at port {port or '7860 or the next 99'}: the port is taken "
                           "or the address is not this computer's (--host, --port)") from None
        try:
            yield page.local_url
        finally:
            page.close()


def serve(host: str = HOST, port=None, checkpoint=None, device="auto", announce=print) -> None:
    """Serve the page until Ctrl+C or SIGTERM, then remove its files; ``announce(url)`` once it is up."""
    main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler) if main else None  # stop as Ctrl+C does
    try:
        with contextlib.suppress(KeyboardInterrupt), running_app(host, port, checkpoint, device) as url:
            announce(url)
            threading.Event().wait()
    finally:
        if main:
            signal.signal(signal.SIGTERM, previous)
