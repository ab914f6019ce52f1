"""Figures and one self-contained HTML page of an evaluation folder, and the comparison of several.

Everything is drawn from what ``evaluate`` wrote in the folder (evaluate.py), so
an evaluation can be reported again, or compared with others, without a model:

- saliency: the precision-recall curve and F-beta against the threshold, from
  the arrays PySODMetrics computed (``curves.json``);
- video: J and F per sequence as bars, and J over the annotated frames of each
  sequence (``per_sequence.csv``, ``per_frame.csv``);
- both: the best and the worst frames or images, each beside its ground truth
  and with the prediction drawn over it, read through the benchmark loaders and
  the cached maps in ``predictions/``.

``report.html`` and ``compare.html`` embed their figures as base64 PNGs and
their style inline: one file to send or archive, nothing loaded from elsewhere.
The PNGs are also written under ``figures/``. Where a folder predates an output
(curves, per-frame scores) or its benchmark is not where it was, the page says
so instead of failing.
"""
from __future__ import annotations

import base64
import csv
import html
import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image

from ..data.video import DataError, FrameError, read_image
from ..files import distinct_names, write_bytes, write_text
from ..visualize import overlay
from .benchmarks import (
    BENCHMARKS,
    load_ground_truth,
    load_saliency_benchmark,
    load_saliency_mask,
    load_video_benchmark,
)
from .metrics import binarise

REPORT, COMPARISON, FIGURES = "report.html", "compare.html", "figures"
GALLERY_SIZE = 6  # best and worst frames or images shown
DPI = 100
PREDICTION_COLOUR = (255, 0, 0)
TEXT_COLUMNS = ("sequence", "frame", "name")  # the other columns of evaluate's tables are numbers
STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 70em; padding: 0 1em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; }
td.number { text-align: right; font-variant-numeric: tabular-nums; }
figure { margin: 1em 0; }
img { max-width: 100%; }
.note { background: #fff6dd; border-left: 4px solid #e0b000; padding: 0.4em 0.8em; }
"""
SETTINGS = (  # (summary key, label) of the settings a report states
    ("model", "model"),
    ("model_sha256", "weights sha256"),
    ("root", "benchmark folder"),
    ("images", "images folder"),
    ("masks", "masks folder"),
    ("split", "split"),
    ("resolution", "resolution"),
    ("test_scales", "test scales"),
    ("guided_filter", "guided filter"),
    ("threshold", "binarisation threshold"),
    ("relative_threshold", "threshold relative to each map's maximum"),
    ("adapt_steps", "adaptation steps"),
    ("precision", "precision"),
)


class ReportError(DataError):
    """A folder that holds no readable evaluation, or evaluations of different benchmarks put together."""


@dataclass
class Evaluation:
    """What ``evaluate`` wrote in one folder; ``per_frame`` and ``curves`` are None where it has none."""

    folder: Path
    summary: dict
    rows: list  # per_sequence.csv (video) or per_image.csv (saliency)
    per_frame: list | None  # per_frame.csv: {sequence, frame, J, F}, video only
    curves: dict | None  # curves.json: PySODMetrics' precision, recall and F-beta arrays, saliency only

    @property
    def kind(self) -> str:
        return BENCHMARKS[self.summary["benchmark"]].kind


def read_evaluation(folder) -> Evaluation:
    """The evaluation ``evaluate`` wrote in ``folder``; ReportError where there is none."""
    folder = Path(folder)
    summary = _read_json(folder / "summary.json")
    if not isinstance(summary, dict) or summary.get("benchmark") not in BENCHMARKS:
        raise ReportError(f"{folder} holds no evaluation (no readable summary.json of a known benchmark)")
    video = BENCHMARKS[summary["benchmark"]].kind == "video"
    if video:
        summary.setdefault("relative_threshold", False)  # written before the option existed: a fixed cut
    rows = _read_csv(folder / ("per_sequence.csv" if video else "per_image.csv")) or []
    per_frame = _read_csv(folder / "per_frame.csv") if video else None
    curves = None if video else _read_json(folder / "curves.json")
    return Evaluation(folder, summary, rows, per_frame, curves)


def read_comparable(folders, benchmark: str | None = None) -> list:
    """The evaluations of ``folders``, all of one benchmark (``benchmark``, else the first's);
    ReportError naming the first folder of another, since their scores are not comparable."""
    evaluations = [read_evaluation(folder) for folder in folders]
    benchmark = benchmark or evaluations[0].summary["benchmark"]
    for evaluation in evaluations:
        other = evaluation.summary["benchmark"]
        if other != benchmark:
            raise ReportError(f"{evaluation.folder} is an evaluation of {other} ({BENCHMARKS[other].kind}), not of "
                              f"{benchmark} ({BENCHMARKS[benchmark].kind}): only evaluations of one benchmark compare")
    return evaluations


def write_report(folder, out_dir=None, overwrite: bool = False) -> Path:
    """Draw the figures of the evaluation in ``folder`` and write ``report.html`` in ``out_dir``
    (default: the folder itself); an existing report is replaced only if ``overwrite``."""
    evaluation = read_evaluation(folder)
    out_dir = Path(folder if out_dir is None else out_dir)
    page = out_dir / REPORT
    _check_free(page, overwrite)
    figures = out_dir / FIGURES
    summary = evaluation.summary
    body = [_settings_table(summary), "<h2>Scores</h2>", _scores_table(summary["scores"]), _paper_table(summary)]
    draw = _video_figures if evaluation.kind == "video" else _saliency_figures
    body += draw(evaluation, figures)
    body += _gallery(evaluation, figures)
    write_text(page, _page(f"{summary['benchmark']}, {summary['mode']}", body))
    return page


def write_comparison(folders, out_dir, overwrite: bool = False) -> Path:
    """``compare.html`` and its figures in ``out_dir``: the evaluations of ``folders`` (one benchmark)
    in one table, their curves overlaid (saliency) or their per-sequence bars side by side (video)."""
    evaluations = read_comparable(folders)
    out_dir = Path(out_dir)
    page = out_dir / COMPARISON
    _check_free(page, overwrite)
    labels = distinct_names([evaluation.folder.resolve().name for evaluation in evaluations])
    figures = out_dir / FIGURES
    body = [_comparison_table(evaluations, labels)]
    if evaluations[0].kind == "video":
        body.append(_embed(sequence_figure(evaluations, labels), figures / "compare_sequences.png",
                           "J and F per sequence, the evaluations side by side"))
    else:
        body += _compared_curves(evaluations, labels, figures)
    write_text(page, _page(f"{evaluations[0].summary['benchmark']}: {len(evaluations)} evaluations", body))
    return page


def _check_free(page: Path, overwrite: bool) -> None:
    if page.exists() and not overwrite:
        raise FileExistsError(f"{page} already exists; pass --overwrite to replace it")


def _read_json(path: Path):
    """The JSON in ``path``, or None where it is missing or unreadable (an older evaluation)."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _read_csv(path: Path):
    """The rows of one of evaluate's tables, numbers as floats, or None where the file is missing."""
    try:
        text = path.read_text()
    except OSError:
        return None
    try:
        return [{key: value if key in TEXT_COLUMNS else float(value) for key, value in row.items()}
                for row in csv.DictReader(io.StringIO(text))]
    except (TypeError, ValueError) as err:
        raise ReportError(f"{path}: not a table that evaluate wrote ({err})") from None


# Figures. Each function returns a matplotlib Figure on the Agg canvas: no pyplot, no global backend.

def _figure(width: float, height: float, rows: int = 1, columns: int = 1, **options):
    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    return figure, figure.subplots(rows, columns, squeeze=False, **options)


def pr_figure(evaluations: list, labels: list) -> Figure:
    """Precision against recall, averaged over images at each threshold, one line per evaluation."""
    figure, axes = _figure(5.5, 4.5)
    ax = axes[0, 0]
    for evaluation, label in zip(evaluations, labels):
        ax.plot(evaluation.curves["recall"], evaluation.curves["precision"], label=label)
    ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02),
           title="precision-recall, mean over images at 256 thresholds")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left")
    return figure


def fbeta_figure(evaluations: list, labels: list) -> Figure:
    """F-beta against the threshold on the min-max normalised map, one line per evaluation, its maximum
    (fbeta_max) in the legend."""
    figure, axes = _figure(5.5, 4.5)
    ax = axes[0, 0]
    for evaluation, label in zip(evaluations, labels):
        fbeta = np.asarray(evaluation.curves["fbeta"])
        ax.plot(np.asarray(evaluation.curves["threshold"]) / 255, fbeta, label=f"{label} (max {fbeta.max():.3f})")
    ax.set(xlabel="threshold", ylabel="F-beta (beta^2 = 0.3)", xlim=(0, 1), ylim=(0, 1.02),
           title="F-beta against the threshold, mean over images")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left")
    return figure


def sequence_figure(evaluations: list, labels: list) -> Figure:
    """J and F of each sequence as bars, one bar per evaluation side by side; a sequence an evaluation
    did not score has no bar there."""
    sequences = list(dict.fromkeys(row["sequence"] for evaluation in evaluations for row in evaluation.rows))
    width = 0.8 / len(evaluations)
    figure, axes = _figure(max(6.0, 0.3 * len(sequences) * len(evaluations) + 2), 6, rows=2, sharex=True)
    x = np.arange(len(sequences))
    for ax, metric, name in zip(axes[:, 0], ("J_mean", "F_mean"), ("J (region)", "F (boundary)")):
        for k, (evaluation, label) in enumerate(zip(evaluations, labels)):
            values = {row["sequence"]: row[metric] for row in evaluation.rows}
            offset = (k - (len(evaluations) - 1) / 2) * width
            ax.bar(x + offset, [values.get(sequence, np.nan) for sequence in sequences], width, label=label)
        ax.set(ylabel=name, ylim=(0, 1))
        ax.grid(axis="y", alpha=0.3)
    axes[1, 0].set_xticks(x, sequences, rotation=60, ha="right")
    if len(evaluations) > 1:
        axes[0, 0].legend()
    return figure


def frames_figure(per_frame: list) -> Figure:
    """J over the annotated frames of each sequence, one small chart per sequence: where in a
    video the segmentation is lost."""
    by_sequence = {}
    for row in per_frame:
        by_sequence.setdefault(row["sequence"], []).append(row["J"])
    columns = min(4, len(by_sequence))
    rows = -(-len(by_sequence) // columns)
    figure, axes = _figure(3 * columns, 2 * rows, rows=rows, columns=columns, sharey=True)
    for ax, (sequence, values) in zip(axes.flat, by_sequence.items()):
        ax.plot(values, marker="." if len(values) <= 30 else None)
        ax.set(title=f"{sequence} (mean {np.mean(values):.2f})", ylim=(0, 1.02))
        ax.grid(alpha=0.3)
    for ax in axes.flat[len(by_sequence):]:
        ax.set_axis_off()
    figure.supxlabel("annotated frame, in order")
    figure.supylabel("J")
    return figure


def gallery_figure(pictures: list) -> Figure:
    """One row per picture (caption, image, ground truth, prediction drawn over the image)."""
    figure, axes = _figure(9, 2.6 * len(pictures), rows=len(pictures), columns=3)
    for row, (caption, image, truth, drawn) in zip(axes, pictures):
        tiles = ((caption, image), ("ground truth", truth.astype(np.uint8) * 255), ("prediction", drawn))
        for ax, (title, tile) in zip(row, tiles):
            ax.imshow(tile, cmap="gray", vmin=0, vmax=255)
            ax.set_title(title, fontsize=9, loc="left")
            ax.set_axis_off()
    return figure


def _png(figure: Figure, path: Path) -> bytes:
    """The figure as PNG bytes, also written (atomically) to ``path``."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI)
    write_bytes(path, buffer.getvalue())
    return buffer.getvalue()


# The figures of one evaluation, each an HTML fragment.

def _video_figures(evaluation: Evaluation, figures: Path) -> list:
    label = evaluation.folder.resolve().name
    parts = ["<h2>Per sequence</h2>",
             _embed(sequence_figure([evaluation], [label]), figures / "sequences.png", "J and F per sequence")]
    if not evaluation.per_frame:
        return parts + [_note("per_frame.csv is missing (an evaluation made before per-frame scores were kept): "
                              "no J over frames and no gallery. `objectness evaluate ... --reuse` into this folder "
                              "adds them from the cached predictions without segmenting again.")]
    return parts + [_embed(frames_figure(evaluation.per_frame), figures / "j_over_frames.png",
                           "J over the annotated frames of each sequence")]


def _saliency_figures(evaluation: Evaluation, figures: Path) -> list:
    if evaluation.curves is None:
        return [_note("curves.json is missing (an evaluation made before the curves were kept): no precision-recall "
                      "or F-beta curve. `objectness evaluate ... --reuse` into this folder adds it from the cached "
                      "predictions without segmenting again.")]
    evaluations, labels = [evaluation], [evaluation.folder.resolve().name]
    return ["<h2>Curves</h2>",
            _embed(pr_figure(evaluations, labels), figures / "pr_curve.png", "precision-recall curve"),
            _embed(fbeta_figure(evaluations, labels), figures / "fbeta_threshold.png", "F-beta against the threshold")]


def _compared_curves(evaluations: list, labels: list, figures: Path) -> list:
    drawn = [(evaluation, label) for evaluation, label in zip(evaluations, labels) if evaluation.curves is not None]
    missing = [label for evaluation, label in zip(evaluations, labels) if evaluation.curves is None]
    parts = [_note(f"no curves.json (made before the curves were kept): {', '.join(missing)}")] if missing else []
    if drawn:
        kept, kept_labels = map(list, zip(*drawn))
        parts += [_embed(pr_figure(kept, kept_labels), figures / "compare_pr_curve.png", "precision-recall curves"),
                  _embed(fbeta_figure(kept, kept_labels), figures / "compare_fbeta_threshold.png",
                         "F-beta against the threshold")]
    return parts


# The gallery: the best and the worst frames or images.

def _gallery(evaluation: Evaluation, figures: Path) -> list:
    ranked = _ranked(evaluation)
    if not ranked:
        return []  # nothing to rank by: _video_figures has said why
    try:
        picture = _picture_reader(evaluation)
        best = [picture(key, caption) for key, caption in ranked[:GALLERY_SIZE]]
        worst = [picture(key, caption) for key, caption in ranked[::-1][:GALLERY_SIZE]]
    except (DataError, FrameError, OSError) as err:
        return [_note(f"no gallery: the images or the cached predictions cannot be read from here ({err})")]
    score = "J" if evaluation.kind == "video" else "adaptive F-beta"
    return [f"<h2>The best and the worst, by {score}</h2>",
            _embed(gallery_figure(best), figures / "gallery_best.png", f"best {len(best)}, best first"),
            _embed(gallery_figure(worst), figures / "gallery_worst.png", f"worst {len(worst)}, worst first")]


def _ranked(evaluation: Evaluation) -> list:
    """(key, caption) of every scored frame or image, best first: frames by J then F, images by
    adaptive F-beta then MAE."""
    if evaluation.kind == "video":
        rows = sorted(evaluation.per_frame or [], key=lambda row: (row["J"], row["F"]), reverse=True)
        return [((row["sequence"], row["frame"]), f"{row['sequence']} {row['frame']}: J {row['J']:.3f}, "
                 f"F {row['F']:.3f}") for row in rows]
    rows = sorted(evaluation.rows, key=lambda row: (-row["fbeta_adaptive"], row["mae"]))
    return [(("images", row["name"]), f"{row['name']}: F-beta {row['fbeta_adaptive']:.3f}, MAE {row['mae']:.3f}")
            for row in rows]


def _picture_reader(evaluation: Evaluation):
    """A function (sequence, frame), caption -> (caption, image, ground truth, prediction drawn over the
    image), reading the benchmark where the summary says it was and the map cached in predictions/."""
    summary = evaluation.summary
    if evaluation.kind == "video":
        sequences = {sequence.name: sequence for sequence in load_video_benchmark(
            summary["benchmark"], summary["root"], split=summary.get("split"), resolution=summary.get("resolution"))}
        threshold = summary["threshold"], summary["relative_threshold"]
    else:
        items = {item.name: item for item in load_saliency_benchmark(
            summary["benchmark"], summary.get("root"), images=summary.get("images"), masks=summary.get("masks"))}
        threshold = None  # saliency is scored over every threshold: the soft map is drawn

    def picture(key, caption):
        sequence, frame = key
        if evaluation.kind == "video":
            image, truth = _annotated_frame(sequences, sequence, frame)
        else:
            if frame not in items:
                raise ReportError(f"image {frame} is not in the benchmark")
            image, truth = read_image(items[frame].image), load_saliency_mask(items[frame])
        soft = _cached_map(evaluation.folder / "predictions" / sequence / f"{frame}.png")
        if soft.shape != truth.shape:
            raise ReportError(f"the cached prediction of {frame} is not the size of its image")
        return caption, image, truth, _prediction_drawn(image, soft, threshold)

    return picture


def _annotated_frame(sequences: dict, name: str, frame: str) -> tuple:
    """(uint8 (H, W, 3) frame, bool (H, W) ground truth) of the annotated frame of that file stem."""
    sequence = sequences.get(name)
    index = None if sequence is None else next(
        (i for i in sequence.annotations if Path(sequence.frame_name(i)).stem == frame), None)
    if index is None:
        raise ReportError(f"frame {frame} of sequence {name} is not an annotated frame of the benchmark")
    return sequence.read(index), load_ground_truth(sequence, index)


def _cached_map(path: Path) -> np.ndarray:
    """A soft map cached by evaluate (8-bit PNG) as float32 (H, W) in 0..1."""
    with Image.open(path) as image:
        return np.asarray(image.convert("L"), dtype=np.float32) / 255


def _prediction_drawn(image: np.ndarray, soft: np.ndarray, threshold) -> np.ndarray:
    """The prediction in red over its image: the mask J and F scored (``threshold`` is the summary's
    (threshold, relative_threshold); metrics.binarise), or, where ``threshold`` is None (saliency,
    scored at every threshold), the soft map as the tint's alpha."""
    if threshold is not None:
        return np.asarray(overlay(image, binarise(soft, *threshold), color=PREDICTION_COLOUR))
    alpha = 0.6 * soft[..., None]  # (H, W, 1)
    return np.round(image * (1 - alpha) + np.array(PREDICTION_COLOUR) * alpha).astype(np.uint8)


# HTML.

def _page(title: str, body: list) -> str:
    return "\n".join([
        "<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
        f"<title>{html.escape(title)}</title>", f"<style>{STYLE}</style>", "</head>", "<body>",
        f"<h1>{html.escape(title)}</h1>", *[part for part in body if part], "</body>", "</html>", ""])


def _embed(figure: Figure, path: Path, caption: str) -> str:
    """The figure as an <img> holding its PNG (written to ``path`` too) as a data: URI."""
    data = base64.b64encode(_png(figure, path)).decode("ascii")
    return (f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(caption)}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def _note(text: str) -> str:
    return f'<p class="note">{html.escape(text)}</p>'


def _table(header: list, rows: list) -> str:
    """An HTML table; numbers right-aligned, floats to three decimals."""
    head = "".join(f"<th>{html.escape(str(cell))}</th>" for cell in header)
    body = "".join("<tr>" + "".join(_cell(cell) for cell in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _cell(value) -> str:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return f'<td class="number">{_number(value)}</td>'
    return f"<td>{html.escape(str(value))}</td>"


def _number(value) -> str:
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def _settings_table(summary: dict) -> str:
    rows = [("benchmark", summary["benchmark"]), ("mode", summary["mode"])]
    rows += [(label, _setting(key, summary[key])) for key, label in SETTINGS if summary.get(key) not in (None, "")]
    return "<h2>Settings</h2>" + _table(["setting", "value"], rows)


def _setting(key: str, value) -> str:
    if key == "guided_filter":
        return f"radius {value['radius']} of the shorter edge, eps {value['eps']}"
    if key == "test_scales":
        return ", ".join(str(scale) for scale in value)
    if key == "relative_threshold":
        return "yes" if value else "no"
    return str(value)


def _scores_table(scores: dict) -> str:
    return _table(["metric", "ours"], list(scores.items()))


def _paper_table(summary: dict) -> str:
    """Our numbers beside the paper's, where the paper reports this benchmark and mode."""
    if not summary.get("paper"):
        return ""
    rows = [(r["metric"], r["ours"], r["paper"], r["paper_data"]) for r in summary["paper"]]
    return ("<h2>Beside the paper</h2>" + _table(["metric", "ours", "paper", "paper's data"], rows)
            + "<p>The paper's numbers are on its test data; ours are on the data above "
              "(a different split or resolution is not the same benchmark).</p>")


def _comparison_table(evaluations: list, labels: list) -> str:
    """One row per evaluation: its folder, the settings in which the evaluations differ, then every
    score any of them has."""
    settings = [(key, label) for key, label in (("mode", "mode"), *SETTINGS)
                if len({json.dumps(e.summary.get(key)) for e in evaluations}) > 1]
    metrics = list(dict.fromkeys(key for evaluation in evaluations for key in evaluation.summary["scores"]))
    header = ["evaluation", "folder", *[label for _, label in settings], *metrics]
    rows = [[label, str(e.folder),
             *[_setting(key, e.summary[key]) if e.summary.get(key) is not None else "" for key, _ in settings],
             *[e.summary["scores"].get(metric, "") for metric in metrics]]
            for e, label in zip(evaluations, labels)]
    return "<h2>Scores</h2>" + _table(header, rows)
