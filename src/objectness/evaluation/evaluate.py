"""``objectness evaluate``: a checkpoint on a benchmark, scored as the paper scores it (docs/method.md#evaluation).

Video benchmarks are scored with J, F and J&F, averaged over the annotated
frames of a sequence, then over sequences; saliency benchmarks with F-beta
(max, mean, adaptive), MAE, S-measure and E-measure. Soft objectness maps are
binarised at one threshold (0.5 by default) for every video benchmark, fixed or, with
``relative_threshold``, times each map's own maximum.

Outputs in the output folder: ``per_sequence.csv`` and ``per_frame.csv`` (J and
F of each annotated frame) or ``per_image.csv`` and ``curves.json`` (PySODMetrics'
precision, recall and F-beta at each threshold), ``summary.json`` and ``summary.md``
(our numbers beside the paper's), the soft maps as 8-bit PNGs under
``predictions/``, which ``reuse=True`` reads back instead of segmenting again,
and ``report.html`` with its ``figures/`` (report.py), drawn from those files alone;
``compare=`` earlier evaluation folders adds ``compare.html``.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from ..data.video import FrameError, Video, read_image
from ..files import write_bytes, write_json, write_text
from ..inference.segmenter import segment_images
from ..model.checkpoint import CheckpointError, weights_file
from ..training.adapt import adapt
from .benchmarks import (
    BENCHMARKS,
    check_saliency_sizes,
    check_sequence_sizes,
    load_ground_truth,
    load_saliency_benchmark,
    load_saliency_mask,
    load_video_benchmark,
)
from .metrics import BINARISATION_THRESHOLD, SaliencyScores, VideoScores, binarise
from .report import read_comparable, write_comparison, write_report

logger = logging.getLogger(__name__)

MODES = ("per-image", "per-video")
ADAPT_STEPS = 100  # docs/method.md#video-object-segmentation: test-time adaptation steps per video


@dataclass(frozen=True)
class PaperResult:
    metric: str  # key of our summary it compares with
    value: float
    data: str  # the data the paper reports it on


# docs/method.md#evaluation, the paper's table. The paper does not say which F-beta it reports on DUTS.
PAPER = {
    ("davis2016", "per-image"): [PaperResult("J_mean", 0.457, "DAVIS 2016 val")],
    ("davis2016", "per-video"): [PaperResult("J_mean", 0.578, "DAVIS 2016 val")],
    ("segtrackv2", "per-video"): [PaperResult("J_mean", 0.570, "SegTrackv2, 14 videos, objects merged")],
    ("fbms59", "per-video"): [PaperResult("J_mean", 0.475, "FBMS-59, 59 videos, 720 annotated frames")],
    ("duts", "per-image"): [
        PaperResult("fbeta_max", 0.602, "DUTS-TE (variant of F-beta not stated)"),
        PaperResult("mae", 0.13, "DUTS-TE"),
    ],
}


class EvaluationError(ValueError):
    """An evaluation asked for in a way that cannot work (mode, output folder)."""


def evaluate(segmenter, benchmark: str, root, out_dir, mode: str = "per-image", adapt_steps: int = ADAPT_STEPS,
             split=None, resolution=None, images=None, masks=None, threshold: float = BINARISATION_THRESHOLD,
             relative_threshold: bool = False, reuse: bool = False, overwrite: bool = False, model_name: str = "",
             compare=(), progress: bool = True) -> dict:
    """Score ``segmenter`` (inference.segmenter.load_segmenter) on ``benchmark``; write the tables, the
    summary and report.html, and return the summary. ``compare``: earlier evaluation folders of the same
    benchmark to put beside this one in compare.html (checked before any segmenting)."""
    if benchmark not in BENCHMARKS:
        raise EvaluationError(f"unknown benchmark '{benchmark}' (one of {', '.join(BENCHMARKS)})")
    if mode not in MODES:
        raise EvaluationError(f"unknown mode '{mode}' (per-image or per-video)")
    kind = BENCHMARKS[benchmark].kind
    if kind == "saliency" and mode == "per-video":
        raise EvaluationError(f"{benchmark} is a set of single images: it has no per-video mode")
    if kind == "saliency" and relative_threshold:
        raise EvaluationError(f"{benchmark} is scored at every threshold (F-beta, MAE, S- and E-measure): "
                              "--relative-threshold applies to the video benchmarks' J and F")
    out_dir = Path(out_dir)
    _check_compared(compare, benchmark, out_dir)
    settings = {"benchmark": benchmark, "root": _text(root), "images": _text(images), "masks": _text(masks),
                "mode": mode, "model": model_name, "model_sha256": _weights_sha256(model_name),
                "threshold": threshold, "relative_threshold": relative_threshold, "split": split,
                "resolution": resolution,
                "test_scales": _test_scales(segmenter), "guided_filter": _guided_filter(segmenter),
                "precision": _precision(segmenter)}
    _check_out_dir(out_dir, settings, overwrite=overwrite, reuse=reuse)
    out_dir.mkdir(parents=True, exist_ok=True)  # a place that cannot be written fails here, not after segmenting
    predictions = Predictions(out_dir / "predictions", reuse)
    if kind == "video":
        sequences = load_video_benchmark(benchmark, root, split=split, resolution=resolution)
        check_sequence_sizes(sequences)  # before any segmenting
        if overwrite:
            _clear_outputs(out_dir)
        steps = adapt_steps if mode == "per-video" else 0
        settings["adapt_steps"] = steps
        scores = _evaluate_videos(segmenter, sequences, predictions, steps, threshold, relative_threshold, progress)
        write_csv(out_dir / "per_sequence.csv", scores.per_sequence())
        write_csv(out_dir / "per_frame.csv", scores.per_frame())
    else:
        items = load_saliency_benchmark(benchmark, root, images=images, masks=masks)
        check_saliency_sizes(items)  # before any segmenting
        if overwrite:
            _clear_outputs(out_dir)
        scores = _evaluate_saliency(segmenter, items, predictions, progress)
        write_csv(out_dir / "per_image.csv", scores.per_image())
        write_json(out_dir / "curves.json", scores.curves())
    summary = {**settings, "scores": scores.summary()}
    summary["paper"] = _paper(benchmark, mode, summary["scores"])
    write_text(out_dir / "summary.json", json.dumps(summary, indent=2))
    write_text(out_dir / "summary.md", format_markdown(summary))
    write_report(out_dir, overwrite=True)  # the earlier evaluation's report, if any, is out of date
    if compare:
        write_comparison([out_dir, *compare], out_dir, overwrite=True)
    return summary


def _check_compared(compare, benchmark: str, out_dir: Path) -> None:
    """Refuse, before any segmenting, a folder to compare with that holds no evaluation of ``benchmark``,
    or that is the output folder itself (whose evaluation this one replaces)."""
    if any(Path(folder).resolve() == out_dir.resolve() for folder in compare):
        raise EvaluationError(f"{out_dir} is the output folder: compare with earlier evaluations in other folders")
    read_comparable(compare, benchmark)


def _text(path):
    return None if path is None else str(path)


def _weights_sha256(model_name: str):
    """The sha256 of the model's weights file (a run folder's model.safetensors or last.pt), which says
    which weights were scored where a path alone does not; None for the centre prior or a bare name."""
    if not model_name or not Path(model_name).exists():
        return None
    try:
        path = weights_file(Path(model_name))
    except CheckpointError:
        return None
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _test_scales(segmenter):
    """The scales whose maps the segmenter averages (None for a baseline, which has none)."""
    if segmenter is None or segmenter.is_baseline:
        return None
    return list(segmenter.scales)


def _precision(segmenter):
    """What f_A computed in (None for a baseline)."""
    if segmenter is None or segmenter.is_baseline:
        return None
    return segmenter.precision


def _guided_filter(segmenter):
    """{radius, eps} of the segmenter's guided filter (inference/refine.py), or None when it has none."""
    if segmenter is None or segmenter.is_baseline or segmenter.guided_radius == 0:
        return None
    return {"radius": segmenter.guided_radius, "eps": segmenter.guided_eps}


def _clear_outputs(out_dir: Path) -> None:
    """What an earlier evaluation wrote in ``out_dir``, removed (--overwrite); other files stay."""
    for name in OUTPUTS:
        path = out_dir / name
        shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)


OUTPUTS = ("predictions", "per_sequence.csv", "per_frame.csv", "per_image.csv", "curves.json", "summary.json",
           "summary.md", "report.html", "compare.html", "figures")  # what evaluate writes


def _check_out_dir(out_dir: Path, settings: dict, overwrite: bool, reuse: bool) -> None:
    """Refuse an --out that holds something unless --overwrite (which replaces what evaluate wrote
    there) or --reuse of an evaluation with the same settings."""
    if out_dir.exists() and not out_dir.is_dir():
        raise FileExistsError(f"output folder {out_dir} is a file")
    if not (out_dir.is_dir() and any(out_dir.iterdir())):
        return
    if overwrite:
        return  # replaced once the benchmark has been read and checked (_clear_outputs)
    previous = out_dir / "summary.json"
    if not previous.is_file():
        raise FileExistsError(f"output folder {out_dir} is not empty and holds no evaluation; pass --overwrite "
                              "to write into it, or choose another folder")
    if not reuse:
        raise FileExistsError(f"{out_dir} already holds an evaluation; pass --overwrite to replace it "
                              "or --reuse to score its cached predictions again")
    try:
        earlier = json.loads(previous.read_text())
    except (OSError, ValueError):
        raise EvaluationError(f"{previous}: not a readable summary; use --overwrite") from None
    # A summary written before the guided filter existed was made without it.
    earlier.setdefault("guided_filter", None)
    earlier.setdefault("precision", None if earlier.get("test_scales") is None else "fp32")  # before bf16: fp32
    compared = ("benchmark", "mode", "model", "model_sha256", "test_scales", "guided_filter", "precision")
    changed = [key for key in compared if key in earlier and earlier[key] != settings[key]]
    if changed:
        raise EvaluationError(f"{out_dir}: its cached predictions were made with another "
                              f"{', '.join(changed)}; use another --out or --overwrite")


class Predictions:
    """Soft maps cached as 8-bit PNGs: predictions/<sequence>/<frame>.png."""

    def __init__(self, folder: Path, reuse: bool):
        self.folder, self.reuse = folder, reuse

    def path(self, sequence: str, frame: str) -> Path:
        return self.folder / sequence / f"{frame}.png"

    def load(self, sequence: str, frames: list, sizes: list):
        """The cached maps of ``frames`` (float32 0..1), or None unless reuse is on and all are cached,
        readable 8-bit maps of the (H, W) ``sizes`` (a truncated or resized one is warned of and made again)."""
        paths = [self.path(sequence, frame) for frame in frames]
        if not self.reuse or not all(p.is_file() for p in paths):
            return None
        maps = []
        for path, size in zip(paths, sizes):
            try:
                with Image.open(path) as image:
                    soft = np.asarray(image, dtype=np.float32) / 255 if image.mode == "L" else None
            except (OSError, ValueError, SyntaxError) as err:
                logger.warning("cached prediction %s cannot be read (%s): segmenting %s again", path, err, sequence)
                return None
            if soft is None or soft.shape != tuple(size):
                logger.warning("cached prediction %s is not an 8-bit map of %s x %s: segmenting %s again",
                               path, size[1], size[0], sequence)
                return None
            maps.append(soft)
        return maps

    def save(self, sequence: str, frame: str, soft: np.ndarray) -> np.ndarray:
        """Store ``soft`` and return it as stored (8-bit), so fresh and cached scores are equal."""
        quantised = np.round(np.clip(soft, 0, 1) * 255).astype(np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(quantised).save(buffer, format="PNG")
        write_bytes(self.path(sequence, frame), buffer.getvalue())
        return quantised.astype(np.float32) / 255


def _evaluate_videos(segmenter, sequences, predictions: Predictions, adapt_steps: int, threshold: float,
                     relative_threshold: bool, progress) -> VideoScores:
    scores = VideoScores()
    for sequence in tqdm(sequences, desc="sequences", unit="seq", disable=not progress):
        indices = sorted(sequence.annotations)
        names = [Path(sequence.frame_name(i)).stem for i in indices]
        truths = [load_ground_truth(sequence, index) for index in indices]
        maps = predictions.load(sequence.name, names, [truth.shape for truth in truths])
        if maps is None:
            maps = _segment_sequence(segmenter, sequence, indices, adapt_steps, progress)
            maps = [predictions.save(sequence.name, name, soft) for name, soft in zip(names, maps)]
        for name, soft, truth in zip(names, maps, truths):
            scores.add(sequence.name, binarise(soft, threshold, relative_threshold), truth, frame=name)
    return scores


def _segment_sequence(segmenter, sequence, indices: list, adapt_steps: int, progress) -> list:
    """Soft maps of the annotated frames, after adapting to the whole sequence if asked."""
    if adapt_steps > 0:
        segmenter = adapt(segmenter, _readable(sequence), adapt_steps, progress=progress)
    try:
        frames = [sequence.read(i) for i in indices]
    except FrameError as err:
        raise EvaluationError(f"an annotated frame cannot be read, so the sequence cannot be scored: {err}") from None
    return segment_images(segmenter, frames)


def _readable(sequence) -> Video:
    """The sequence's frames as arrays, unreadable ones left out with a warning (adaptation only)."""
    frames = []
    for i in range(len(sequence)):
        try:
            frames.append(sequence.read(i))
        except FrameError as err:
            logger.warning("adaptation skips an unreadable frame: %s", err)
    return Video(sequence.name, frames)


def _evaluate_saliency(segmenter, items, predictions: Predictions, progress) -> SaliencyScores:
    scores = SaliencyScores()
    for item in tqdm(items, desc="images", unit="image", disable=not progress):
        truth = load_saliency_mask(item)
        cached = predictions.load("images", [item.name], [truth.shape])
        if cached is None:
            image = read_image(item.image)
            cached = [predictions.save("images", item.name, segment_images(segmenter, [image])[0])]
        scores.add(cached[0], truth, name=item.name)
    return scores


def _paper(benchmark: str, mode: str, scores: dict) -> list:
    return [{"metric": r.metric, "paper": r.value, "ours": scores.get(r.metric), "paper_data": r.data}
            for r in PAPER.get((benchmark, mode), [])]


def format_markdown(summary: dict) -> str:
    """The summary as a Markdown report: settings, every score, and the paper's numbers beside ours."""
    lines = [f"# {summary['benchmark']}, {summary['mode']}", ""]
    for key in ("model", "model_sha256", "root", "images", "masks", "split", "resolution", "adapt_steps",
                "test_scales", "guided_filter", "threshold", "relative_threshold"):
        value = summary.get(key)
        if key == "relative_threshold":
            value = "yes: the threshold times each map's maximum" if value else None
        if key == "guided_filter" and value:
            value = f"radius {value['radius']} of the shorter edge, eps {value['eps']}"
        if value not in (None, ""):
            lines.append(f"- {key}: {value}")
    lines += ["", "| metric | ours |", "| --- | --- |"]
    lines += [f"| {key} | {_number(value)} |" for key, value in summary["scores"].items()]
    if summary["paper"]:
        lines += ["", "| metric | ours | paper | paper's data |", "| --- | --- | --- | --- |"]
        lines += [f"| {r['metric']} | {_number(r['ours'])} | {_number(r['paper'])} | {r['paper_data']} |"
                  for r in summary["paper"]]
        lines += ["", "The paper's numbers are on its test data; ours are on the data above "
                  "(a different split or resolution is not the same benchmark)."]
    return "\n".join(lines) + "\n"


def _number(value) -> str:
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def write_csv(path: Path, rows: list) -> None:
    buffer = io.StringIO()
    if rows:
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    write_text(path, buffer.getvalue())
