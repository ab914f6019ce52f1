"""Benchmark metrics.

Conventions (docs/method.md#evaluation):
- soft objectness maps are binarised by `binarise` (> 0.5), the same for every benchmark;
- video segmentation follows DAVIS: per-frame region similarity J (`jaccard`) and
  boundary F (`boundary_f`), summarised per sequence as mean, recall and decay
  (`region_statistics`), then averaged over sequences (`VideoScores`);
- salient object detection follows the DUTS protocol as computed by PySODMetrics
  (`SaliencyScores`): F-beta with beta^2 = 0.3 (max, mean, adaptive), MAE, S-measure, E-measure.
"""

import math

import numpy as np
import torch
from scipy import ndimage

# Threshold on a soft objectness map (0..1) that every benchmark uses to make a binary mask.
BINARISATION_THRESHOLD = 0.5

# DAVIS boundary tolerance as a fraction of the image diagonal.
BOUNDARY_TOLERANCE = 0.008

# F-beta weight of precision used by every saliency benchmark: beta^2 = 0.3.
FBETA_BETA_SQUARED = 0.3


def _as_bool_array(mask):
    if isinstance(mask, torch.Tensor):
        mask = mask.detach().cpu().numpy()
    mask = np.asarray(mask)
    if np.issubdtype(mask.dtype, np.floating):
        # A soft map cast to bool would be binarised at > 0: make the caller choose.
        raise ValueError(f"expected a binary mask, got a {mask.dtype} array; binarise soft maps first (binarise)")
    return mask.astype(bool)


def _check_same_shape(pred, gt):
    if pred.shape != gt.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from ground-truth shape {gt.shape}")


def binarise(soft_map, threshold=BINARISATION_THRESHOLD, relative: bool = False):
    """Binary mask of a soft objectness map in 0..1: pixels strictly above ``threshold`` or, ``relative``,
    above ``threshold`` times the map's own maximum (numpy or torch in, same out).

    The relative cut is the fixed one for a map that reaches 1, and lower for a faint map whose
    maximum stays below 1, which a fixed cut leaves empty (docs/method.md#evaluation). An all-zero
    map gives an empty mask either way."""
    if relative:
        threshold = threshold * soft_map.max()
    return soft_map > threshold


def jaccard(pred, gt):
    """Intersection over union of two boolean masks (numpy or torch); 1.0 when both are empty (DAVIS)."""
    pred, gt = _as_bool_array(pred), _as_bool_array(gt)
    _check_same_shape(pred, gt)
    union = np.logical_or(pred, gt).sum()
    if union == 0:
        return 1.0
    return float(np.logical_and(pred, gt).sum() / union)


def boundary_map(mask):
    """One-pixel-wide boundary of a boolean (H, W) mask, as in DAVIS.

    A pixel is on the boundary when it differs from its right, bottom or bottom-right
    neighbour; neighbours outside the image are not compared, so a mask's edge along the
    image border is no boundary. Returns a bool (H, W) array.
    """
    mask = _as_bool_array(mask)
    boundary = np.zeros_like(mask)
    boundary[:, :-1] |= mask[:, :-1] != mask[:, 1:]  # right neighbour
    boundary[:-1, :] |= mask[:-1, :] != mask[1:, :]  # bottom neighbour
    boundary[:-1, :-1] |= mask[:-1, :-1] != mask[1:, 1:]  # bottom-right neighbour
    return boundary


def _dilate(boundary, radius):
    """Pixels within Euclidean distance radius of a non-empty boolean map: its dilation by a disk."""
    return ndimage.distance_transform_edt(~boundary) <= radius


def boundary_f(pred, gt, tolerance=BOUNDARY_TOLERANCE):
    """DAVIS boundary measure F between two boolean (H, W) masks (numpy or torch).

    Boundaries come from `boundary_map`. A boundary pixel of one mask is matched when it
    lies in the other mask's boundary dilated by a disk of radius r = ceil(tolerance *
    image diagonal) pixels, i.e. within Euclidean distance r of it; the dilation is computed
    as a distance transform (scipy.ndimage.distance_transform_edt) thresholded at r, the
    same pixels as scipy.ndimage.binary_dilation with the disk, several times faster.
    Precision is the matched fraction of the prediction's boundary, recall that of the
    ground truth's; F = 2PR / (P + R). Both boundaries empty -> 1.0; exactly one -> 0.0.
    """
    pred, gt = _as_bool_array(pred), _as_bool_array(gt)
    _check_same_shape(pred, gt)
    if pred.ndim != 2:
        raise ValueError(f"expected (H, W) masks, got shape {pred.shape}")
    pred_boundary, gt_boundary = boundary_map(pred), boundary_map(gt)
    pred_count, gt_count = pred_boundary.sum(), gt_boundary.sum()
    if pred_count == 0 and gt_count == 0:
        return 1.0
    if pred_count == 0 or gt_count == 0:
        return 0.0
    radius = math.ceil(tolerance * math.hypot(*pred.shape))
    precision = (pred_boundary & _dilate(gt_boundary, radius)).sum() / pred_count
    recall = (gt_boundary & _dilate(pred_boundary, radius)).sum() / gt_count
    if precision + recall == 0:
        return 0.0
    return float(2 * precision * recall / (precision + recall))


def region_statistics(per_frame_values):
    """DAVIS summary of one sequence's per-frame J (or F) values, in frame order.

    Returns dict(mean, recall, decay): recall is the fraction of frames scoring above 0.5;
    decay is the mean of the first quarter of the sequence minus that of the last quarter.
    The quarters follow DAVIS: bin edges at frames round(k (n - 1) / 4), k = 0..4 (halves
    rounded up), each bin including both its edge frames, so neighbouring bins share a frame
    and no bin is empty (a 1-frame sequence has decay 0).
    """
    values = np.asarray(per_frame_values, dtype=np.float64)
    if values.ndim != 1 or len(values) == 0:
        raise ValueError(f"expected a non-empty list of per-frame values, got shape {values.shape}")
    edges = np.floor(np.linspace(0, len(values) - 1, 5) + 0.5).astype(int)
    first, last = values[edges[0] : edges[1] + 1], values[edges[3] : edges[4] + 1]
    return {
        "mean": float(values.mean()),
        "recall": float((values > 0.5).mean()),
        "decay": float(first.mean() - last.mean()),
    }


def sequence_mean(values_by_sequence):
    """Mean over sequences of the per-sequence mean: {sequence: [per-frame values]} -> float."""
    if not values_by_sequence:
        raise ValueError("no sequences to average")
    empty = [name for name, values in values_by_sequence.items() if len(values) == 0]
    if empty:
        raise ValueError(f"sequence {empty[0]!r} has no values")
    return float(np.mean([np.mean(values) for values in values_by_sequence.values()]))


class VideoScores:
    """Per-frame J and F of binary video masks, summarised per sequence and over sequences (DAVIS).

        scores = VideoScores()
        scores.add("bear", pred_mask, gt_mask)  # once per annotated frame, in frame order
        scores.per_sequence()  # one row per sequence
        scores.summary()  # per-sequence statistics averaged over sequences
    """

    STATISTICS = ("J_mean", "J_recall", "J_decay", "F_mean", "F_recall", "F_decay", "JF_mean")

    def __init__(self, boundary_tolerance=BOUNDARY_TOLERANCE):
        self.boundary_tolerance = boundary_tolerance
        self.j = {}  # {sequence: [per-frame J]}
        self.f = {}  # {sequence: [per-frame F]}
        self.frames = {}  # {sequence: [frame names]}

    def add(self, sequence, pred, gt, frame=None):
        """Score one frame of a sequence: pred and gt are boolean (H, W) masks (numpy or torch);
        ``frame`` names it in `per_frame` (default: its position in the sequence)."""
        names = self.frames.setdefault(sequence, [])
        names.append(str(len(names)) if frame is None else frame)
        self.j.setdefault(sequence, []).append(jaccard(pred, gt))
        self.f.setdefault(sequence, []).append(boundary_f(pred, gt, self.boundary_tolerance))

    def per_frame(self):
        """Rows {sequence, frame, J, F}, one per scored frame, in order added: what the per-sequence
        statistics summarise, kept to show where a sequence fails."""
        return [
            {"sequence": sequence, "frame": frame, "J": j, "F": f}
            for sequence, names in self.frames.items()
            for frame, j, f in zip(names, self.j[sequence], self.f[sequence])
        ]

    def per_sequence(self):
        """Rows {sequence, frames, J_mean, J_recall, J_decay, F_mean, F_recall, F_decay, JF_mean}, in order added."""
        rows = []
        for sequence, j_values in self.j.items():
            j, f = region_statistics(j_values), region_statistics(self.f[sequence])
            row = {"sequence": sequence, "frames": len(j_values)}
            row.update({f"J_{key}": value for key, value in j.items()})
            row.update({f"F_{key}": value for key, value in f.items()})
            row["JF_mean"] = (j["mean"] + f["mean"]) / 2
            rows.append(row)
        return rows

    def summary(self):
        """Each statistic of `per_sequence` averaged over sequences, plus the sequence and frame counts."""
        rows = self.per_sequence()
        if not rows:
            raise ValueError("no frames scored")
        summary = {"sequences": len(rows), "frames": sum(row["frames"] for row in rows)}
        summary.update({key: float(np.mean([row[key] for row in rows])) for key in self.STATISTICS})
        return summary


def _as_uint8_map(soft_map):
    if isinstance(soft_map, torch.Tensor):
        soft_map = soft_map.detach().cpu().numpy()
    soft_map = np.asarray(soft_map)
    if soft_map.dtype == np.uint8:
        return soft_map
    if not np.issubdtype(soft_map.dtype, np.floating):
        raise ValueError(f"expected a float map in 0..1 or a uint8 map in 0..255, got {soft_map.dtype}")
    if soft_map.min() < 0 or soft_map.max() > 1:
        raise ValueError(f"float saliency map must lie in 0..1, got {soft_map.min():.3g}..{soft_map.max():.3g}")
    return np.round(soft_map * 255).astype(np.uint8)


def _as_uint8_mask(gt):
    if isinstance(gt, torch.Tensor):
        gt = gt.detach().cpu().numpy()
    gt = np.asarray(gt)
    if gt.dtype == bool:
        return gt.astype(np.uint8) * 255
    if gt.dtype != np.uint8:
        raise ValueError(f"expected a bool or uint8 (0..255) ground-truth mask, got {gt.dtype}")
    if 0 < gt.max() <= 128:
        # PySODMetrics keeps pixels > 128: a 0/1 mask would read as empty.
        raise ValueError(f"uint8 ground truth has maximum {gt.max()}, expected 0..255 (pass a 0/1 mask as bool)")
    return gt


class SaliencyScores:
    """Salient object detection scores over a data set (DUTS protocol), computed by PySODMetrics.

    Each map is quantised to uint8 and, as in the field's evaluation toolboxes, min-max
    normalised per image by PySODMetrics before scoring; the ground truth is binarised at
    > 128 of 255. F-beta uses beta^2 = 0.3 at 256 thresholds (0..255): its per-image curves
    are averaged over images, then "max" is the curve's maximum and "mean" its mean;
    "adaptive" thresholds each map at twice its mean (capped at 1) and averages over images.
    The E-measure is reported the same three ways; MAE and S-measure are means over images.
    Precision and recall are averaged over images at the same thresholds, for the
    precision-recall curve (`curves`).
    """

    def __init__(self):
        # Imported here: py_sod_metrics pulls in OpenCV and scikit-image (seconds to import).
        import py_sod_metrics

        # PySODMetrics' `beta` is beta^2.
        self._fbeta_handler = py_sod_metrics.FmeasureHandler(
            with_dynamic=True, with_adaptive=True, beta=FBETA_BETA_SQUARED
        )
        self._fmeasure = py_sod_metrics.FmeasureV2({
            "fbeta": self._fbeta_handler,
            "precision": py_sod_metrics.PrecisionHandler(with_dynamic=True, with_adaptive=False),
            "recall": py_sod_metrics.RecallHandler(with_dynamic=True, with_adaptive=False),
        })
        self._mae = py_sod_metrics.MAE()
        self._s_measure = py_sod_metrics.Smeasure()
        self._e_measure = py_sod_metrics.Emeasure()
        self.names = []

    def add(self, soft_map, gt, name=None):
        """Score one image: soft_map float 0..1 or uint8 0..255, gt bool or uint8 0..255, both (H, W)."""
        pred, gt = _as_uint8_map(soft_map), _as_uint8_mask(gt)
        _check_same_shape(pred, gt)
        for metric in (self._fmeasure, self._mae, self._s_measure, self._e_measure):
            metric.step(pred=pred, gt=gt)
        self.names.append(str(len(self.names)) if name is None else name)

    def per_image(self):
        """Rows {name, mae, fbeta_adaptive, s_measure}, in order added."""
        fbeta_adaptive = self._fbeta_handler.adaptive_results
        return [
            {"name": name, "mae": float(mae), "fbeta_adaptive": float(fbeta), "s_measure": float(s_measure)}
            for name, mae, fbeta, s_measure in zip(self.names, self._mae.maes, fbeta_adaptive, self._s_measure.sms)
        ]

    def summary(self):
        """Dict of images, fbeta_{max,mean,adaptive}, mae, s_measure, e_measure_{max,mean,adaptive}."""
        if not self.names:
            raise ValueError("no images scored")
        fbeta = self._fmeasure.get_results()["fbeta"]
        e_measure = self._e_measure.get_results()["em"]
        return {
            "images": len(self.names),
            "fbeta_max": float(fbeta["dynamic"].max()),
            "fbeta_mean": float(fbeta["dynamic"].mean()),
            "fbeta_adaptive": float(fbeta["adaptive"]),
            "mae": float(self._mae.get_results()["mae"]),
            "s_measure": float(self._s_measure.get_results()["sm"]),
            "e_measure_max": float(e_measure["curve"].max()),
            "e_measure_mean": float(e_measure["curve"].mean()),
            "e_measure_adaptive": float(e_measure["adp"]),
        }

    def curves(self):
        """The mean precision, recall and F-beta over images at each of PySODMetrics' 256 thresholds,
        in its order: entry i is grey level ``threshold[i]`` = 255 - i of the normalised map."""
        if not self.names:
            raise ValueError("no images scored")
        results = self._fmeasure.get_results()
        curves = {"threshold": list(range(255, -1, -1))}
        curves.update({name: results[name]["dynamic"].tolist() for name in ("precision", "recall", "fbeta")})
        return curves
