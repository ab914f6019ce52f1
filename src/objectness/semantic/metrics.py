"""Semantic-segmentation scores from one confusion matrix accumulated over a whole set.

Conventions (PASCAL VOC, as mmsegmentation computes them):
- pixels whose ground truth is void (255) are left out, whatever was predicted there;
- IoU of class k = TP / (TP + FP + FN); a class absent from the ground truth and
  never predicted has no IoU (NaN) and is left out of the mean; one absent from the
  ground truth but predicted somewhere scores 0;
- accuracy of class k = TP / (TP + FN), NaN where k is absent from the ground truth;
- pixel accuracy = correct pixels / labelled pixels.
"""
from __future__ import annotations

import math

import numpy as np

VOID = 255  # label value of pixels that are not scored (VOC's void, CamVid's Unlabelled)


class ConfusionMatrix:
    """counts[t, p]: labelled pixels of true class t predicted as class p, over every image added."""

    def __init__(self, num_classes: int):
        self.num_classes = num_classes
        self.counts = np.zeros((num_classes, num_classes), dtype=np.int64)

    def add(self, prediction, truth) -> None:
        """prediction, truth: integer (H, W) arrays of the same shape; truth may hold VOID."""
        prediction, truth = np.asarray(prediction), np.asarray(truth)
        if prediction.shape != truth.shape:
            raise ValueError(f"prediction shape {prediction.shape} differs from ground-truth shape {truth.shape}")
        labelled = truth != VOID
        t, p = truth[labelled].astype(np.int64), prediction[labelled].astype(np.int64)
        if t.size and (t.max() >= self.num_classes or p.max() >= self.num_classes or min(t.min(), p.min()) < 0):
            raise ValueError(f"class indices must lie in 0..{self.num_classes - 1} (or {VOID} in the ground truth)")
        n = self.num_classes
        self.counts += np.bincount(t * n + p, minlength=n * n).reshape(n, n)

    def per_class_iou(self) -> np.ndarray:
        tp = np.diag(self.counts).astype(np.float64)
        union = self.counts.sum(0) + self.counts.sum(1) - tp
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(union > 0, tp / union, np.nan)

    def per_class_accuracy(self) -> np.ndarray:
        tp = np.diag(self.counts).astype(np.float64)
        present = self.counts.sum(1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(present > 0, tp / present, np.nan)

    def pixel_accuracy(self) -> float:
        total = self.counts.sum()
        return float(np.trace(self.counts) / total) if total else math.nan

    def summary(self, classes: list) -> dict:
        """mIoU, pixel accuracy, mean class accuracy and both per-class lists (None where undefined)."""
        iou, accuracy = self.per_class_iou(), self.per_class_accuracy()
        return {
            "mIoU": _nanmean(iou),
            "pixel_accuracy": _plain(self.pixel_accuracy()),
            "mean_class_accuracy": _nanmean(accuracy),
            "labelled_pixels": int(self.counts.sum()),
            "per_class": [{"class": name, "IoU": _plain(i), "accuracy": _plain(a), "pixels": int(n)}
                          for name, i, a, n in zip(classes, iou, accuracy, self.counts.sum(1))],
        }


def _nanmean(values: np.ndarray):
    defined = values[~np.isnan(values)]
    return float(defined.mean()) if defined.size else None


def _plain(value: float):
    return None if math.isnan(value) else float(value)
