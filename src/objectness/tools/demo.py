"""The demo: objectness emerging from unlabeled synthetic video in minutes on a CPU.

Train the cpu-small model (the ``demo`` preset) from scratch on synthetic
videos (no labels), pick the objectness channel from label-free statistics,
then segment held-out videos and score them against their ground truth
beside a centre-prior baseline.
Ground truth is read only in that last step.
"""
from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np

from ..config import Config, load_config
from ..data import synthetic
from ..evaluation.metrics import jaccard
from ..files import write_json
from ..inference.centre_prior import centre_prior
from ..inference.channels import (
    channel_statistics,
    choose_objectness_channel,
    sample_pairs,
)
from ..inference.forward import frames_to_tensor, predict_masks
from ..inference.sizing import inference_short_edge, inference_size
from ..model.checkpoint import load_model
from ..training.train import train
from ..visualize import mask_strip, overlay, save_image_atomic

logger = logging.getLogger(__name__)

HELD_OUT_SEED_OFFSET = 1000  # held-out videos come from another seed than the training videos
CHANNEL_SAMPLE_PAIRS = 64


def demo_config(minutes: float, steps: int = None, seed: int = 0, device: str = "auto", overrides=None) -> Config:
    cfg = load_config("demo", overrides)
    cfg.data.source = "synthetic"
    cfg.train.time_limit = minutes
    cfg.train.seed = seed
    cfg.train.device = device
    if steps is not None:
        cfg.train.steps = steps
    return cfg


def run_demo(cfg: Config, out_dir, overwrite: bool = False, held_out_videos: int = 8) -> dict:
    """Train, choose the channel, segment held-out videos; returns (and writes) the summary."""
    out_dir = Path(out_dir)
    run_dir = out_dir / "run"
    training = train(cfg, run_dir, overwrite=overwrite)
    model, _, _ = load_model(run_dir / "last.pt")
    return evaluate_demo(model, cfg, out_dir, held_out_videos, training=training)


def evaluate_checkpoint(checkpoint, out_dir, overwrite: bool = False, held_out_videos: int = 8) -> dict:
    """The demo's evaluation of an existing checkpoint (or run folder) trained on synthetic video."""
    out_dir = Path(out_dir)
    if (out_dir / "summary.json").exists() and not overwrite:
        raise FileExistsError(f"{out_dir} already holds a demo summary; pass --overwrite to replace it")
    model, cfg, _ = load_model(checkpoint)
    out_dir.mkdir(parents=True, exist_ok=True)
    return evaluate_demo(model, cfg, out_dir, held_out_videos, checkpoint=str(checkpoint))


def evaluate_demo(model, cfg: Config, out_dir, held_out_videos: int = 8, **extra) -> dict:
    """Choose the channel without labels, segment held-out synthetic videos, score them."""
    out_dir = Path(out_dir)
    model.eval()
    summary = dict(extra)
    stats = channel_statistics(model, sample_pairs(cfg.data, CHANNEL_SAMPLE_PAIRS, seed=cfg.train.seed + 1), cfg.loss)
    channel = choose_objectness_channel(stats)
    summary["objectness_channel"] = channel
    summary["channel_statistics"] = [s.as_dict() for s in stats]

    held_out = dataclasses.replace(cfg.data.synthetic, seed=cfg.data.synthetic.seed + HELD_OUT_SEED_OFFSET)
    results = [_segment_video(model, cfg, synthetic.make_video(held_out, i), channel, out_dir) for i in range(held_out_videos)]
    summary["held_out"] = results
    summary["mean_iou"] = float(np.mean([r["iou"] for r in results]))
    summary["centre_prior_mean_iou"] = float(np.mean([r["centre_prior_iou"] for r in results]))
    summary["best_channel_mean_iou"] = float(np.mean([r["iou_per_channel"] for r in results], axis=0).max())
    write_json(out_dir / "summary.json", summary)
    return summary


def _segment_video(model, cfg: Config, video, channel: int, out_dir: Path) -> dict:
    size = inference_size(*video.frames.shape[1:3], inference_short_edge(cfg))
    masks = predict_masks(model, frames_to_tensor(video.frames), size=size)  # (T, c, H, W)
    prediction = masks[:, channel] > 0.5  # (T, H, W)
    prior = centre_prior(*video.masks.shape[1:]) > 0.5
    per_channel = [float(np.mean([jaccard(m > 0.5, g) for m, g in zip(masks[:, k], video.masks)])) for k in range(masks.shape[1])]
    result = {
        "video": video.name,
        "iou": per_channel[channel],
        "centre_prior_iou": float(np.mean([jaccard(prior, g) for g in video.masks])),
        "iou_per_channel": per_channel,
    }
    middle = len(video.frames) // 2
    save_image_atomic(overlay(video.frames[middle], prediction[middle].numpy()), out_dir / "overlays" / f"{video.name}.png")
    save_image_atomic(mask_strip(frames_to_tensor(video.frames[middle:middle + 1])[0], masks[middle]),
                      out_dir / "channels" / f"{video.name}.png")
    return result


def format_summary(summary: dict) -> str:
    lines = [
        f"objectness channel (chosen without labels): {summary['objectness_channel']}",
        f"held-out mean IoU, objectness channel: {summary['mean_iou']:.3f}",
        f"held-out mean IoU, centre prior:       {summary['centre_prior_mean_iou']:.3f}",
        f"(best single channel in hindsight:     {summary['best_channel_mean_iou']:.3f})",
    ]
    return "\n".join(lines)
