"""Zero-shot segmentation of images and videos with a trained AMD (SPEC 2.2, 2.3).

Only the appearance network f_A segments: its objectness channel is the soft
objectness map. For a video, test-time adaptation may first continue training a
copy of the whole model, with the training objective, on frame pairs of that
video alone; the copy is thrown away afterwards.

    segmenter = load_segmenter("runs/amd")               # or "centre-prior"
    maps = segment_images(segmenter, images)             # uint8 (H, W, 3) -> float32 (H, W) in 0..1
    maps = segment_video(segmenter, frames, adapt_steps=100)

``segment_inputs`` is what ``objectness segment`` runs: files and folders in,
soft maps, masks, overlays (and per video overlay.mp4 and channels.png) out.
"""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import io
import logging
import shutil
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from tqdm import tqdm

from ..config import Config, ConfigError
from ..data.classical_flow import FlowCache, cache_short_edge, compute_flows
from ..data.pairs import (
    IMAGE_SUFFIXES,
    VIDEO_SUFFIXES,
    DataError,
    FrameError,
    PairDataset,
    Video,
    list_frames,
    natural_key,
)
from ..evaluation.metrics import centre_prior
from ..files import publish, temporary_beside
from ..model.checkpoint import CheckpointError, load_model
from ..training.train import make_optimizer, optimisation_step, resolve_device
from ..visualize import mask_strip, overlay, save_image_atomic, soft_map_to_png
from .forward import frames_to_tensor, mean_objectness
from .refine import check_guided_filter, refine_objectness

log = logging.getLogger(__name__)

CENTRE_PRIOR = "centre-prior"  # the checkpoint name of the baseline with no weights
TEST_SCALE = 0.98  # test-time shorter edge = data.short_edge x 0.98: 392 for the paper's 400 (released code)
BATCH_SIZE = 8  # images per forward pass at test time
VIDEO_FPS = 24  # overlay.mp4 of a folder of frames, which has no frame rate of its own


@dataclass
class Segmenter:
    """A trained model, its objectness channel and device; ``model`` None is the centre-prior baseline."""

    model: Optional[torch.nn.Module]  # an AMD in eval mode
    cfg: Optional[Config]
    channel: Optional[int]  # the objectness channel of the masks
    device: torch.device
    short_edge: int = 0  # test-time shorter edge in pixels, a multiple of 8
    scales: tuple = (1.0,)  # the objectness map is the mean over these multiples of short_edge
    guided_radius: float = 0.0  # refine.py: guided filter radius, a fraction of the shorter edge; 0 = off
    guided_eps: float = 0.001
    adaptation_noted: bool = field(default=False, repr=False)  # the baseline said once it cannot adapt

    @property
    def is_centre_prior(self) -> bool:
        return self.model is None


SHIPPED_MODEL = "amd-davis2016-flowfit.safetensors"  # see MODEL_CARD.md


def default_checkpoint() -> Path:
    """The model shipped with the package (MODEL_CARD.md), used when no checkpoint is given."""
    path = Path(__file__).resolve().parents[1] / "weights" / SHIPPED_MODEL
    if not path.is_file():
        raise CheckpointError(f"no checkpoint given and the shipped model {path} is missing: pass --checkpoint "
                              f"(a run folder, last.pt or model.safetensors, or '{CENTRE_PRIOR}' for the baseline)")
    return path


def load_segmenter(checkpoint, channel: Optional[int] = None, device="auto", scales=None,
                   guided_radius: Optional[float] = None) -> Segmenter:
    """A segmenter from a run folder, last.pt or .safetensors file, or ``"centre-prior"``.

    The objectness channel is ``channel`` if given, else the one stored with the
    checkpoint by ``objectness channels``. device: auto (CUDA when there is a GPU),
    cpu, cuda, cuda:1, ... scales: multiples of the test shorter edge whose maps
    are averaged (default: the checkpoint's ``data.test_scales``). guided_radius:
    the guided filter's radius as a fraction of the shorter edge, 0 = off (default:
    the checkpoint's ``data.test_guided_radius``).
    """
    device = resolve_device(device)
    if str(checkpoint) == CENTRE_PRIOR:
        return Segmenter(None, None, None, device)
    model, cfg, meta = load_model(checkpoint, map_location=device)
    if channel is None:
        channel = meta.get("objectness_channel")
    if channel is None:
        raise CheckpointError(f"{checkpoint}: no objectness channel is stored with this checkpoint; "
                              "run `objectness channels` on it, or pass --channel")
    count = cfg.model.num_segments
    if isinstance(channel, bool) or not isinstance(channel, int) or not 0 <= channel < count:
        raise CheckpointError(f"objectness channel {channel!r} is out of range: "
                              f"{checkpoint} has {count} mask channels (0 to {count - 1})")
    scales = check_scales(cfg.data.test_scales if scales is None else scales)
    radius, eps = check_guided_filter(cfg.data.test_guided_radius if guided_radius is None else guided_radius,
                                      cfg.data.test_guided_eps)
    return Segmenter(model, cfg, channel, device, inference_short_edge(cfg), scales, radius, eps)


def check_scales(scales) -> tuple:
    """The test scales as a tuple of positive floats, or a clear error."""
    scales = tuple(scales) if isinstance(scales, (list, tuple)) else (scales,)
    if not scales or not all(isinstance(s, (int, float)) and not isinstance(s, bool) and s > 0 for s in scales):
        raise ConfigError(f"test scales must be positive numbers, got {list(scales)}")
    return tuple(float(s) for s in scales)


def inference_short_edge(cfg: Config) -> int:
    """The test-time shorter edge: the training resize x 0.98, a multiple of 8 (392 for the paper)."""
    short_edge = cfg.data.test_short_edge or cfg.data.short_edge * TEST_SCALE
    return max(8, round(short_edge / 8) * 8)


def inference_size(height: int, width: int, short_edge: int) -> tuple:
    """(H, W) with the shorter edge near ``short_edge``, the aspect kept, both multiples of 8."""
    scale = short_edge / min(height, width)
    return max(8, round(height * scale / 8) * 8), max(8, round(width * scale / 8) * 8)


def _as_array(image) -> np.ndarray:
    return np.asarray(image.convert("RGB")) if isinstance(image, Image.Image) else np.asarray(image)


def _to_inference_size(images: list, segmenter: Segmenter, size=None) -> torch.Tensor:
    """Same-size uint8 (H, W, 3) images -> (B, 3, h, w) float in 0..1 on the device, at ``size``
    or else at the test-time size of their own."""
    batch = frames_to_tensor(np.stack(images)).to(segmenter.device)  # (B, 3, H, W)
    size = size or inference_size(*images[0].shape[:2], segmenter.short_edge)
    return F.interpolate(batch, size=size, mode="bilinear", align_corners=False, antialias=True)


@torch.no_grad()
def _objectness(segmenter: Segmenter, images: list) -> list:
    """Soft objectness maps of same-size uint8 images, each float32 (H, W) in 0..1: the mean of
    the objectness channel at each of the segmenter's scales, upsampled to the images, then
    refined by the guided filter of each image where the segmenter has a radius."""
    height, width = images[0].shape[:2]
    if segmenter.is_centre_prior:
        return [centre_prior(height, width) for _ in images]
    batch = frames_to_tensor(np.stack(images)).to(segmenter.device)  # (B, 3, H, W)
    sizes = [inference_size(height, width, max(8, round(segmenter.short_edge * scale / 8) * 8))
             for scale in segmenter.scales]
    maps = mean_objectness(segmenter.model.appearance.eval(), batch, segmenter.channel, sizes, (height, width))
    return [refine_objectness(image, soft, segmenter.guided_radius, segmenter.guided_eps)
            for image, soft in zip(images, maps.clamp(0, 1).cpu().numpy())]


def segment_images(segmenter: Segmenter, images, batch_size: int = BATCH_SIZE) -> list:
    """Soft objectness maps (f_A only, SPEC 2.2), each float32 (H, W) in 0..1 at its image's size.

    images: uint8 (H, W, 3) RGB arrays or PIL images, of any sizes; images of
    one size go through the network together.
    """
    images = [_as_array(image) for image in images]
    maps = [None] * len(images)
    by_size = {}
    for index, image in enumerate(images):
        by_size.setdefault(image.shape, []).append(index)
    for indices in by_size.values():
        for start in range(0, len(indices), batch_size):
            chunk = indices[start:start + batch_size]
            for index, soft in zip(chunk, _objectness(segmenter, [images[i] for i in chunk])):
                maps[index] = soft
    return maps


def _as_video(frames) -> Video:
    return frames if isinstance(frames, Video) else Video("video", [_as_array(frame) for frame in frames])


def adapt(segmenter: Segmenter, frames, steps: int, progress: bool = True, seed: int = 0) -> Segmenter:
    """Test-time adaptation (SPEC 2.3): a segmenter whose model is a copy trained on this video only.

    ``steps`` steps of the training objective with Adam at the config's train.lr
    (constant) on batches of train.batch_size pairs at data.gap, resized,
    cropped and flipped as in training; a model trained with the flow fit also
    fits the video's own DIS flow. The distillation term is left out (its
    teachers are not at hand at test time). ``segmenter`` is left untouched.
    frames: a data.Video or a sequence of uint8 (H, W, 3) frames.
    """
    video = _as_video(frames)
    if steps <= 0:
        return segmenter
    if segmenter.is_centre_prior:
        if not segmenter.adaptation_noted:
            log.warning("the centre-prior baseline has no weights: test-time adaptation does nothing for it")
            segmenter.adaptation_noted = True
        return segmenter
    if len(video) < 2:
        log.info("video '%s' has one frame, no pair to adapt on: segmenting it per image", video.name)
        return segmenter
    cfg, device = segmenter.cfg, segmenter.device
    cfg = dataclasses.replace(cfg, loss=dataclasses.replace(cfg.loss, distill_weight=0.0))
    if not (cfg.loss.view_synthesis_weight or cfg.loss.uses_classical_flow):
        if not segmenter.adaptation_noted:
            log.warning("this model was trained on its teachers' maps alone: without them there is no objective "
                        "to adapt with, so videos are segmented per image")
            segmenter.adaptation_noted = True
        return segmenter
    data_cfg = dataclasses.replace(cfg.data, gap=min(cfg.data.gap, len(video) - 1))
    flows = None
    if cfg.loss.uses_classical_flow:  # the objective reads the video's own classical flow: computed here, not cached
        flows = FlowCache(*compute_flows([video], data_cfg.gap, cache_short_edge(data_cfg), progress=progress))
    pairs = PairDataset([video], data_cfg, seed=seed, flows=flows)
    model = copy.deepcopy(segmenter.model).train()
    optimizer, _ = make_optimizer(model, cfg.train)  # its poly schedule is never stepped: lr stays train.lr
    amp = cfg.train.amp and device.type == "cuda"
    batch_size = cfg.train.batch_size
    cuda_devices = []  # the GPU whose generator dropout draws from
    if device.type == "cuda":
        cuda_devices = [torch.cuda.current_device() if device.index is None else device.index]
    with torch.random.fork_rng(devices=cuda_devices):  # seeded, and the caller's generators untouched
        torch.manual_seed(seed)
        bar = tqdm(range(steps), desc=f"adapting to {video.name}", unit="step", disable=not progress, leave=False)
        for step in bar:
            items = [pairs[step * batch_size + i] for i in range(batch_size)]
            batch = torch.stack([item["frames"] for item in items])  # (B, 2, 3, H, W)
            flow = torch.stack([item["flows"] for item in items]).to(device) if flows is not None else None
            optimisation_step(model, optimizer, batch.to(device), cfg, amp, flow)
    return dataclasses.replace(segmenter, model=model.eval())


def segment_frames(segmenter: Segmenter, video: Video, progress: bool = True):
    """Yield (index, frame, soft map) for each readable frame of ``video``, in order.

    An unreadable frame is skipped with a warning. No adaptation here: see ``adapt``.
    """
    bar = tqdm(total=len(video), desc=f"segmenting {video.name}", unit="frame", disable=not progress, leave=False)
    with bar:
        for start in range(0, len(video), BATCH_SIZE):
            indices, frames = [], []
            for index in range(start, min(start + BATCH_SIZE, len(video))):
                try:
                    frames.append(video.read(index))
                    indices.append(index)
                except FrameError as err:
                    log.warning("skipping unreadable frame: %s", err)
            yield from zip(indices, frames, segment_images(segmenter, frames))
            bar.update(min(BATCH_SIZE, len(video) - start))


def segment_video(segmenter: Segmenter, frames, adapt_steps: int = 0, progress: bool = True, seed: int = 0):
    """Soft objectness maps of a video's frames (SPEC 2.3): per image, or per video with adaptation.

    frames: a sequence of uint8 (H, W, 3) frames or a data.Video. With
    ``adapt_steps`` > 0, a copy of the model is first adapted to this video
    (see ``adapt``); the segmenter's own weights are never changed. Returns
    float32 (N, H, W) in 0..1 (a list of (H, W) maps if the frames differ in size).
    """
    video = _as_video(frames)
    segmenter = adapt(segmenter, video, adapt_steps, progress, seed)
    maps = [soft for _, _, soft in segment_frames(segmenter, video, progress)]
    return np.stack(maps) if len({m.shape for m in maps}) == 1 else maps


@torch.no_grad()
def all_channels(segmenter: Segmenter, frame1, frame2=None) -> tuple:
    """Every mask channel of frame1 and the segment flow that rebuilds it from frame2.

    frame1, frame2: uint8 (H, W, 3). Returns soft masks, float (c, H, W), and the
    segment flow, (2, H, W) in pixels of frame1 (None without frame2, or for a model
    trained without view synthesis), on the CPU.
    The centre-prior baseline has one channel and no flow.
    """
    frame1 = _as_array(frame1)
    height, width = frame1.shape[:2]
    if frame2 is not None and not segmenter.is_centre_prior and not segmenter.cfg.loss.view_synthesis_weight:
        frame2 = None  # f_M was never trained (the flow fit alone): its segment flow means nothing
    if segmenter.is_centre_prior:
        return torch.from_numpy(centre_prior(height, width))[None], None
    model = segmenter.model.eval()
    image1 = _to_inference_size([frame1], segmenter)  # (1, 3, h, w)
    if frame2 is None:
        masks, flow = model.appearance(image1), None  # (1, c, h/8, w/8)
    else:
        image2 = _to_inference_size([_as_array(frame2)], segmenter, size=image1.shape[-2:])
        out = model(image1, image2)
        masks, flow = out.masks1, out.flows12[0]  # (1, 2, h, w) in test-size pixels
        scale = torch.tensor([width / flow.shape[-1], height / flow.shape[-2]], device=flow.device)
        flow = F.interpolate(flow, size=(height, width), mode="bilinear", align_corners=False)[0] * scale[:, None, None]
        flow = flow.float().cpu()
    masks = F.interpolate(masks.float(), size=(height, width), mode="bilinear", align_corners=False)[0]
    return masks.cpu(), flow


# ---------------------------------------------------------------- objectness segment: files in, files out


@dataclass
class Input:
    """One thing to segment, written to its own output folder ``name``."""

    name: str
    path: Path
    kind: str  # "image", "images" (a folder of independent images), "frames" (a folder as a video), "video"


def collect_inputs(paths, images: bool = False) -> tuple:
    """(inputs, skipped): what to segment among ``paths``, and how many paths were unusable (warned).

    An image file is an image; a video file is a video; a folder of images is a
    video of its frames in name order, or independent images with ``images``; a
    folder with no images stands for its video files.
    """
    inputs, skipped = [], 0
    for path in map(Path, paths):
        found = _inputs_of(path, images)
        if not found:
            skipped += 1
        inputs += found
    names = set()
    for item in inputs:  # two inputs called x would write to one folder
        name, n = item.name, 1
        while name in names:
            n += 1
            name = f"{item.name}-{n}"
        names.add(name)
        item.name = name
    return inputs, skipped


def _inputs_of(path: Path, images: bool) -> list:
    suffix = path.suffix.lower()
    if path.is_file() and suffix in IMAGE_SUFFIXES:
        return [Input(path.stem, path, "image")]
    if path.is_file() and suffix in VIDEO_SUFFIXES:
        return [Input(path.stem, path, "video")]
    if path.is_dir():
        if list_frames(path):
            return [Input(path.name, path, "images" if images else "frames")]
        videos = [p for p in path.iterdir() if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES]
        if videos:
            return [Input(p.stem, p, "video") for p in sorted(videos, key=natural_key)]
        log.warning("skipping %s: a folder with no images (%s) or videos", path, ", ".join(IMAGE_SUFFIXES))
    elif path.exists():
        log.warning("skipping %s: not an image (%s) or a video (%s)", path,
                    ", ".join(IMAGE_SUFFIXES), ", ".join(VIDEO_SUFFIXES))
    else:
        log.warning("skipping %s: not found", path)
    return []


def segment_inputs(segmenter: Segmenter, paths, out_dir, threshold: float = 0.5, adapt_steps: int = 0,
                   images: bool = False, overwrite: bool = False, progress: bool = True, seed: int = 0) -> dict:
    """Segment image files, video files and folders; results go to ``out_dir/<input name>/``.

    Per image or frame: <stem>_soft.png (8-bit soft map), <stem>_mask.png (soft map
    > threshold, 0/255) and <stem>_overlay.jpg; per video also overlay.mp4 and
    channels.png (every mask channel and the segment flow of the first pair).
    Unreadable files are skipped with a warning. Returns {"outputs": [folders], "skipped": count}.
    """
    out_dir = Path(out_dir)
    inputs, skipped = collect_inputs(paths, images)
    if not inputs:
        raise DataError("no image, video or folder of frames to segment among the inputs")
    for item in inputs:  # refuse before any work is done
        folder = out_dir / item.name
        if folder.exists() and not overwrite:
            raise FileExistsError(f"output folder {folder} exists; pass --overwrite to replace it")
    single_images = sum(item.kind == "image" for item in inputs)
    if adapt_steps > 0 and single_images:
        log.warning("adaptation needs a video: %d single image(s) are segmented without it", single_images)
    outputs = []
    for item in tqdm(inputs, desc="inputs", unit="input", disable=not progress or len(inputs) == 1):
        try:
            video, fps = _read_input(item)
        except DataError as err:
            log.warning("skipping %s", err)
            skipped += 1
            continue
        folder = _fresh_folder(out_dir / item.name)
        written = _write_segmentation(segmenter, item, video, fps, folder, threshold, adapt_steps, progress, seed)
        skipped += len(video) - written
        if written:
            outputs.append(folder)
        else:
            shutil.rmtree(folder)
    if not outputs:
        raise DataError("none of the inputs could be read")
    return {"outputs": outputs, "skipped": skipped}


def _read_input(item: Input) -> tuple:
    """(Video of the input's frames, frames per second or None); DataError if it cannot be read."""
    if item.kind == "image":
        video = Video(item.name, [item.path])
        try:
            return Video(item.name, [video.read(0)]), None
        except FrameError as err:
            raise DataError(f"unreadable image {err}") from None
    if item.kind == "video":
        return _decode_video(item.path, item.name)
    return Video(item.name, list_frames(item.path)), VIDEO_FPS


def _decode_video(path: Path, name: str) -> tuple:
    """Every frame at full size, JPEG-encoded in memory (random access for adaptation); and the frame rate."""
    import av

    frames = []
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            fps = stream.average_rate
            for frame in container.decode(stream):
                buffer = io.BytesIO()
                frame.to_image().save(buffer, format="JPEG", quality=95)
                frames.append(buffer.getvalue())
    except (av.FFmpegError, OSError, IndexError) as err:
        raise DataError(f"unreadable video {path}: {err}") from None
    if not frames:
        raise DataError(f"unreadable video {path}: no frames")
    return Video(name, frames), fps or VIDEO_FPS


def _fresh_folder(folder: Path) -> Path:
    if folder.is_dir():
        shutil.rmtree(folder)
    elif folder.exists():
        folder.unlink()
    folder.mkdir(parents=True)
    return folder


def _write_segmentation(segmenter, item: Input, video: Video, fps, folder: Path, threshold: float,
                        adapt_steps: int, progress: bool, seed: int) -> int:
    """Write the outputs of one input; returns how many of its frames were readable."""
    is_video = item.kind in ("frames", "video")
    if is_video:
        try:
            segmenter = adapt(segmenter, video, adapt_steps, progress, seed)
        except DataError as err:  # e.g. too few readable frames for a pair
            log.warning("%s: cannot adapt (%s); segmenting without adaptation", item.name, err)
    first_frames, written = [], 0
    with VideoWriter(folder / "overlay.mp4", fps) if is_video else contextlib.nullcontext() as writer:
        for index, frame, soft in segment_frames(segmenter, video, progress):
            stem = _stem(item, video, index)
            mask = soft > threshold
            save_image_atomic(soft_map_to_png(soft), folder / f"{stem}_soft.png")
            save_image_atomic(Image.fromarray(mask.astype(np.uint8) * 255), folder / f"{stem}_mask.png")
            tinted = overlay(frame, mask)
            save_image_atomic(tinted, folder / f"{stem}_overlay.jpg")
            if writer is not None:
                writer.write(tinted)
            if len(first_frames) < 2:
                first_frames.append(frame)
            written += 1
    if is_video and first_frames:
        masks, flow = all_channels(segmenter, *first_frames)
        strip = mask_strip(frames_to_tensor(np.stack(first_frames[:1]))[0], masks, flow)
        save_image_atomic(strip, folder / "channels.png")
    return written


def _stem(item: Input, video: Video, index: int) -> str:
    """Output names: the image's own name, or the frame's file name, or the frame number of a video file."""
    if item.kind == "image":
        return item.path.stem
    if item.kind == "video":
        return f"{index:05d}"
    return Path(video.frames[index]).stem


class VideoWriter:
    """An .mp4 written to a temporary file and renamed on success: H.264 where PyAV has it, else MPEG-4.

    The first frame fixes the size, cut to even numbers as yuv420p needs; frames
    of another size are resized to it.
    """

    def __init__(self, path, fps=VIDEO_FPS):
        self.path, self.fps = Path(path), Fraction(fps).limit_denominator(1001)
        self.container = self.stream = self.first_size = self.size = None
        self.tmp = temporary_beside(self.path)

    def _open(self, width: int, height: int) -> None:
        import av

        self.first_size = (width, height)
        self.size = (max(2, width - width % 2), max(2, height - height % 2))
        self.container = av.open(str(self.tmp), mode="w", format="mp4")
        try:
            self.stream = self.container.add_stream("libx264", rate=self.fps)
        except (av.FFmpegError, ValueError):
            self.stream = self.container.add_stream("mpeg4", rate=self.fps)
            self.stream.bit_rate = 8_000_000
        self.stream.width, self.stream.height = self.size
        self.stream.pix_fmt = "yuv420p"

    def write(self, image: Image.Image) -> None:
        import av

        if self.container is None:
            self._open(*image.size)
        if image.size == self.first_size:
            image = image.crop((0, 0, *self.size))
        else:
            image = image.resize(self.size, Image.Resampling.BILINEAR)
        for packet in self.stream.encode(av.VideoFrame.from_image(image.convert("RGB"))):
            self.container.mux(packet)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, traceback):
        try:
            if self.container is not None:
                if exc_type is None:
                    for packet in self.stream.encode():
                        self.container.mux(packet)
                self.container.close()
            if exc_type is None and self.container is not None:
                publish(self.tmp, self.path)
        finally:
            self.tmp.unlink(missing_ok=True)
        return False
