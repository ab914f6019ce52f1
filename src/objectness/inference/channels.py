"""Finding the objectness channel without labels (docs/method.md#the-objectness-channel, the paper's Fig. 3).

Which of the c mask channels gathers objects differs from run to run. Over
sampled frame pairs, the objectness channel has the lowest mask entropy, the
highest reconstruction error and the most central, compact masks; the channel
that ranks best on these statistics together is chosen.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from ..config import DataConfig, LossConfig
from ..data.pairs import build_pair_dataset
from ..model.segment_flow import resize_masks
from ..model.warp import backward_warp
from ..objectives.view_synthesis import photometric_distance

MIN_AREA = 0.005  # a channel must hold at least this share of the image ...
MAX_AREA = 0.6  # ... and at most this (larger ones are background) to be a candidate


@dataclass
class ChannelStatistics:
    channel: int
    entropy: float  # mean binary entropy of S_m(p), bits
    reconstruction_error: float  # photometric distance averaged inside the mask
    centre_distance: float  # distance of the mask's centre from the image centre, in half-diagonals
    centre_spread: float  # how much the mask's centre moves from frame to frame (same units)
    spatial_spread: float  # spatial standard deviation of the mask (compactness; same units)
    area: float  # mean of S_m over pixels

    def as_dict(self) -> dict:
        return asdict(self)


class _Accumulator:
    def __init__(self, num_segments: int):
        self.sums = torch.zeros(num_segments, 6, dtype=torch.float64)
        self.centres = []  # (N, c, 2)

    def add(self, masks: torch.Tensor, distance: torch.Tensor) -> None:
        """masks (B, c, H, W) soft masks, distance (B, 1, H, W) photometric error."""
        b, c, h, w = masks.shape
        p = masks.clamp(1e-6, 1 - 1e-6)
        entropy = -(p * p.log2() + (1 - p) * (1 - p).log2()).mean(dim=(2, 3))  # (B, c)
        mass = masks.sum(dim=(2, 3)) + 1e-6  # (B, c)
        error = (masks * distance).sum(dim=(2, 3)) / mass
        ys = torch.linspace(-1, 1, h, device=masks.device) * h / (h**2 + w**2) ** 0.5
        xs = torch.linspace(-1, 1, w, device=masks.device) * w / (h**2 + w**2) ** 0.5
        cy = (masks.sum(3) * ys).sum(2) / mass  # (B, c)
        cx = (masks.sum(2) * xs).sum(2) / mass
        var = ((masks.sum(3) * ys**2).sum(2) + (masks.sum(2) * xs**2).sum(2)) / mass - cy**2 - cx**2
        area = masks.mean(dim=(2, 3))
        stats = torch.stack([entropy, error, (cx**2 + cy**2).sqrt(), var.clamp(min=0).sqrt(), area, torch.ones_like(area)], -1)
        self.sums += stats.sum(0).double().cpu()
        self.centres.append(torch.stack([cx, cy], -1).double().cpu())

    def result(self) -> list:
        n = self.sums[:, 5:6]
        mean = self.sums / n
        centres = torch.cat(self.centres)  # (N, c, 2)
        spread = (centres - centres.mean(0)).pow(2).sum(-1).mean(0).sqrt()  # (c,)
        return [
            ChannelStatistics(k, *(float(v) for v in mean[k, :3]), float(spread[k]), *(float(v) for v in mean[k, 3:5]))
            for k in range(mean.shape[0])
        ]


@torch.no_grad()
def channel_statistics(model, pairs, loss_cfg: LossConfig = LossConfig()) -> list:
    """Per-channel statistics over an iterable of frame batches (B, 2, 3, H, W) in 0..1."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    acc = _Accumulator(model.cfg.num_segments)
    for frames in pairs:
        frame1, frame2 = frames[:, 0].to(device), frames[:, 1].to(device)
        out = model(frame1, frame2)
        distance = photometric_distance(frame1, backward_warp(frame2, out.flows12[0]), loss_cfg)  # (B, 1, H, W)
        acc.add(resize_masks(out.masks1, frame1.shape[-2:]), distance)
    model.train(was_training)
    return acc.result()


def choose_objectness_channel(stats: list) -> int:
    """The candidate channel with the best summed rank over the four statistics of Fig. 3."""
    candidates = [s for s in stats if MIN_AREA <= s.area <= MAX_AREA] or list(stats)

    def ranks(key, reverse=False):
        order = sorted(candidates, key=key, reverse=reverse)
        return {s.channel: order.index(s) for s in candidates}

    scores = [
        ranks(lambda s: s.entropy),
        ranks(lambda s: s.reconstruction_error, reverse=True),
        ranks(lambda s: s.centre_distance),
        ranks(lambda s: s.spatial_spread),
    ]
    return min(candidates, key=lambda s: (sum(r[s.channel] for r in scores), s.entropy)).channel


def sample_pairs(data_cfg: DataConfig, num_pairs: int, seed: int, batch_size: int = 8):
    """Label-free training pairs (B, 2, 3, H, W) from ``data_cfg``'s source, augmented as in training."""
    dataset = build_pair_dataset(data_cfg, seed=seed)
    for start in range(0, num_pairs, batch_size):
        indices = range(start, min(start + batch_size, num_pairs))
        yield torch.stack([dataset[k]["frames"] for k in indices])


FIGURE_PANELS = (  # (field, title, which way is "objectness")
    ("entropy", "mask entropy (bits)", "lowest"),
    ("reconstruction_error", "reconstruction error", "highest"),
    ("centre_distance", "centre distance from image centre", "lowest"),
    ("centre_spread", "centre spread over frames", ""),
    ("spatial_spread", "spatial spread (compactness)", "lowest"),
    ("area", "area (share of the image)", ""),
)


def channels_figure(stats: list, chosen: int, path) -> None:
    """Bar charts of every statistic per channel, the chosen channel highlighted (cf. the paper's Fig. 3)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..visualize import save_figure_atomic

    channels = [s.channel for s in stats]
    colours = ["tab:red" if k == chosen else "tab:grey" for k in channels]
    figure, axes = plt.subplots(1, len(FIGURE_PANELS), figsize=(3 * len(FIGURE_PANELS), 3), constrained_layout=True)
    for ax, (field, title, best) in zip(axes, FIGURE_PANELS):
        ax.bar(channels, [getattr(s, field) for s in stats], color=colours)
        ax.set_title(f"{title}\n({best} for objects)" if best else title, fontsize=9)
        ax.set_xticks(channels)
        ax.set_xlabel("channel")
    figure.suptitle(f"objectness channel: {chosen} (red)", fontsize=10)
    save_figure_atomic(figure, Path(path))
    plt.close(figure)


def format_table(stats: list, chosen: int) -> str:
    """The statistics as a plain-text table, the chosen channel marked with '*'."""
    fields = [field for field, _, _ in FIGURE_PANELS]
    lines = ["channel  " + "  ".join(f"{f:>20}" for f in fields)]
    for s in stats:
        mark = "*" if s.channel == chosen else " "
        lines.append(f"{s.channel:>6} {mark} " + "  ".join(f"{getattr(s, f):>20.4f}" for f in fields))
    return "\n".join(lines)
