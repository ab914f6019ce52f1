"""Training AMD from scratch by view synthesis on unlabeled video (SPEC 1.5).

``train`` is the recipe top to bottom: run folder, data, model, optimizer,
loop, checkpoints. ``training_step`` is the paper's objective for one batch.
Distributed training (torchrun), bf16 autocast, logging and checkpointing wrap
the step; they live in distributed.py, logger.py and checkpoint.py.
"""
import dataclasses
import logging
import random
import shutil
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Sampler
from tqdm import tqdm

from ..config import Config, ConfigError, save_config, to_dict
from ..data.device_frames import DeviceFrames, DevicePairLoader
from ..data.pairs import build_pair_dataset
from ..device import resolve_device
from ..model.amd import AMD, AMDOutput
from ..model.checkpoint import (
    LAST,
    WEIGHTS,
    CheckpointError,
    load_checkpoint,
    load_model,
    metadata,
    rng_state,
    save_checkpoint,
    save_weights,
    saved_config,
    set_rng_state,
)
from ..model.warp import backward_warp
from ..objectives.distillation import distillation_loss, paste_objects
from ..objectives.flow_fit import flow_fit_loss
from ..objectives.motion_masks import motion_mask_loss
from ..objectives.view_synthesis import view_synthesis_loss
from . import distributed
from .logger import MetricsLogger
from .teachers import Teachers

log = logging.getLogger(__name__)


def training_step(model, frames, loss_cfg, flows=None, teachers=None):
    """The objective on one batch of pairs; frames: (B, 2, 3, H, W) in 0..1.

    flows: (B, 2, 2, H, W) classical flow of each frame towards the other, for
    the flow fit and the motion masks (``loss.flow_fit_weight``,
    ``loss.motion_mask_weight``, not the paper's); teachers: the Teachers
    whose mean objectness map the distillation teaches (``loss.distill_weight``,
    and on pasted objects ``loss.paste_weight``; not the paper's). Returns
    (loss, terms, out): the scalar to minimise, its parts, the model output.
    """
    frame1, frame2 = frames[:, 0], frames[:, 1]  # (B, 3, H, W) each
    if loss_cfg.view_synthesis_weight:
        # Masks of both frames (f_A), motion features (f_M), segment flows (eq. 4-6).
        out = model(frame1, frame2)
        # Rebuild each frame by warping the other with its segment flow (eq. 7, 8).
        loss, terms = view_synthesis_loss(frame1, frame2, out, loss_cfg)
        loss = loss_cfg.view_synthesis_weight * loss
    else:  # the flow fit alone needs only f_A's masks
        out = appearance_output(model, frame1, frame2)
        loss, terms = frames.new_zeros(()), {}
    if loss_cfg.uses_classical_flow and flows is None:
        raise ConfigError("loss.flow_fit_weight and loss.motion_mask_weight need the pairs' classical flow; "
                          "the data gave none")
    if loss_cfg.flow_fit_weight:
        # Each frame's masks split its own flow into per-segment motions (flow_fit.py).
        fit = (flow_fit_loss(flows[:, 0], out.masks1, loss_cfg.flow_fit_model)
               + flow_fit_loss(flows[:, 1], out.masks2, loss_cfg.flow_fit_model)) / 2
        loss = loss + loss_cfg.flow_fit_weight * fit
        terms["flow_fit"] = fit.detach()
    if loss_cfg.motion_mask_weight:
        # The objectness channel learns each frame's motion mask (motion_masks.py).
        channel = loss_cfg.motion_mask_channel
        bce = (motion_mask_loss(flows[:, 0], out.masks1, channel)
               + motion_mask_loss(flows[:, 1], out.masks2, channel)) / 2
        loss = loss + loss_cfg.motion_mask_weight * bce
        terms["motion_mask"] = bce.detach()
    if loss_cfg.distill_weight:
        if teachers is None:
            raise ConfigError("loss.distill_weight needs the teachers of loss.distill_from; none were given")
        # The objectness channel learns the teachers' mean objectness map (distill.py).
        channel, size = loss_cfg.distill_channel, out.masks1.shape[-2:]
        if loss_cfg.paste_weight:  # the maps at the frames' size, for the pasted objects' alpha
            full = teachers.objectness(torch.cat([frame1, frame2]), frame1.shape[-2:])
            target1, target2 = F.interpolate(full[:, None], size=tuple(size), mode="area")[:, 0].chunk(2)
        else:
            target1, target2 = teachers.objectness(torch.cat([frame1, frame2]), size).chunk(2)  # (B, h, w) each
        bce = (distillation_loss(target1, out.masks1, channel) + distillation_loss(target2, out.masks2, channel)) / 2
        loss = loss + loss_cfg.distill_weight * bce
        terms["distill"] = bce.detach()
        if loss_cfg.paste_weight:
            # The objects of the first frames, pasted onto each other's (distill.py).
            if distributed.world_size() > 1:
                raise ConfigError("loss.paste_weight runs in one process only")
            composites, target = paste_objects(frame1, full[:frame1.shape[0]], loss_cfg.paste_scale_range)
            masks = distributed.unwrap(model).appearance(composites)
            target = F.interpolate(target[:, None], size=tuple(masks.shape[-2:]), mode="area")[:, 0]
            pasted = distillation_loss(target, masks, channel)
            loss = loss + loss_cfg.paste_weight * pasted
            terms["paste"] = pasted.detach()
    return loss, terms, out


def run_metadata(cfg: Config) -> dict:
    """A run's metadata: the objectness channel is known from the start when the objective teaches it."""
    return metadata(objectness_channel=taught_channel(cfg.loss))


def taught_channel(loss_cfg):
    """The channel the objective makes the objectness channel (``loss.distill_channel``,
    ``loss.motion_mask_channel``), or None."""
    if loss_cfg.distill_weight:
        return loss_cfg.distill_channel
    return loss_cfg.motion_mask_channel if loss_cfg.motion_mask_weight else None


def appearance_output(model, frame1: torch.Tensor, frame2: torch.Tensor) -> AMDOutput:
    """The masks of both frames from f_A alone, as an AMDOutput without flows."""
    if distributed.world_size() > 1:
        raise ConfigError("loss.view_synthesis_weight=0 (f_A alone) runs in one process only")
    masks = distributed.unwrap(model).appearance(torch.cat([frame1, frame2]))  # (2B, c, h, w)
    b = frame1.shape[0]
    empty = {field.name: None for field in dataclasses.fields(AMDOutput)}
    return AMDOutput(**{**empty, "masks1": masks[:b], "masks2": masks[b:], "flows12": [], "flows21": []})


def optimisation_step(model, optimizer, frames, cfg: Config, amp: bool, flows=None, teachers=None) -> tuple:
    """One step of the objective on (B, 2, 3, H, W) frames (and their classical flows, if the
    loss fits them; the teachers, if it distils): forward (bf16 autocast if ``amp``), backward,
    optional gradient clipping, Adam. Returns (loss, terms, out) of training_step."""
    with torch.autocast(frames.device.type, dtype=torch.bfloat16, enabled=amp):
        loss, terms, out = training_step(model, frames, cfg.loss, flows, teachers)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if cfg.train.grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.train.grad_clip)
    optimizer.step()
    return loss, terms, out


def poly_lr(step: int, train_cfg) -> float:
    """lr(t) = (lr - min_lr) * (1 - t / steps)^power + min_lr."""
    progress = min(step / train_cfg.steps, 1.0)
    return (train_cfg.lr - train_cfg.min_lr) * (1 - progress) ** train_cfg.poly_power + train_cfg.min_lr


def make_optimizer(model, train_cfg):
    """Adam with weight decay and poly decay from train.lr to train.min_lr over train.steps."""
    if train_cfg.lr <= 0 or train_cfg.steps <= 0:
        raise ConfigError("train.lr and train.steps must be positive")
    if train_cfg.appearance_lr is not None and train_cfg.appearance_lr <= 0:
        raise ConfigError("train.appearance_lr must be positive (or null for train.lr)")
    optimizer = torch.optim.Adam(_parameter_groups(model, train_cfg), lr=train_cfg.lr,
                                 weight_decay=train_cfg.weight_decay, foreach=True)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: poly_lr(step, train_cfg) / train_cfg.lr)
    return optimizer, scheduler


def _parameter_groups(model, train_cfg) -> list:
    """One group at train.lr; with train.appearance_lr, f_A's parameters in a second group at that lr."""
    if train_cfg.appearance_lr is None or train_cfg.appearance_lr == train_cfg.lr:
        return [{"params": list(model.parameters())}]
    appearance, rest = [], []
    for name, parameter in model.named_parameters():
        (appearance if name.removeprefix("module.").startswith("appearance.") else rest).append(parameter)
    return [{"params": rest}, {"params": appearance, "lr": train_cfg.appearance_lr}]


def train(cfg: Config, run_dir, resume: bool = False, overwrite: bool = False) -> dict:
    """Train AMD as ``cfg`` says; config, metrics, panels, checkpoints and weights go to ``run_dir``.

    A non-empty ``run_dir`` is refused unless ``resume`` (continue from its last.pt,
    reproducing the uninterrupted run) or ``overwrite`` (delete it, start again).
    Returns a summary: steps, final loss, bad frames, throughput, file paths.
    """
    run_dir = Path(run_dir)
    deadline = time.perf_counter() + 60 * cfg.train.time_limit if cfg.train.time_limit > 0 else None
    checkpoint_path = check_run_dir(run_dir, resume, overwrite)
    resumed = load_training_state(checkpoint_path, cfg) if checkpoint_path else None
    initial = initial_weights(cfg) if resumed is None and cfg.train.init else None
    device = distributed.local_device(resolve_device(cfg.train.device))
    # Bad data fails before the folder is made; classical flow is computed (or read from its cache) here.
    if cfg.loss.motion_mask_weight and not 0 <= cfg.loss.motion_mask_channel < cfg.model.num_segments:
        raise ConfigError(f"loss.motion_mask_channel {cfg.loss.motion_mask_channel} is not one of the "
                          f"{cfg.model.num_segments} mask channels (model.num_segments)")
    if cfg.loss.distill_weight and not 0 <= cfg.loss.distill_channel < cfg.model.num_segments:
        raise ConfigError(f"loss.distill_channel {cfg.loss.distill_channel} is not one of the "
                          f"{cfg.model.num_segments} mask channels (model.num_segments)")
    if cfg.loss.distill_weight and cfg.loss.motion_mask_weight and cfg.loss.distill_channel != cfg.loss.motion_mask_channel:
        raise ConfigError("loss.distill_channel and loss.motion_mask_channel teach two channels to be the "
                          "objectness channel; make them equal")
    if cfg.loss.paste_weight and not cfg.loss.distill_weight:
        raise ConfigError("loss.paste_weight pastes the objects of the teachers' maps: it needs loss.distill_weight > 0")
    scales = cfg.loss.paste_scale_range
    if cfg.loss.paste_weight and not (len(scales) == 2 and all(isinstance(v, (int, float)) for v in scales)
                                      and 0 < scales[0] <= scales[1]):
        raise ConfigError(f"loss.paste_scale_range must be [low, high] with 0 < low <= high, "
                          f"got {list(cfg.loss.paste_scale_range)}")
    teachers = Teachers(cfg.loss.distill_from, cfg.data.short_edge, device) if cfg.loss.distill_weight else None
    if cfg.data.on_device and cfg.loss.uses_classical_flow:
        raise ConfigError("loss.flow_fit_weight and loss.motion_mask_weight need classical flow, "
                          "which data.on_device does not load")
    if cfg.data.on_device:  # every frame decoded once into the device's memory (gpu_data.py)
        dataset = DeviceFrames.load(cfg.data, device)
    else:
        dataset = build_pair_dataset(cfg.data, seed=cfg.train.seed, with_flow=cfg.loss.uses_classical_flow)
    distributed.init(device)
    rank, world = distributed.rank(), distributed.world_size()
    seed_everything(cfg.train.seed + rank)
    if rank == 0:
        prepare_run_dir(run_dir, overwrite)
        save_config(cfg, run_dir / "config.yaml")
    distributed.barrier()

    model = AMD(cfg.model).to(device)
    optimizer, scheduler = make_optimizer(model, cfg.train)
    start_step, bad_frames, rng = 0, 0, None
    if initial is not None:
        model.load_state_dict(initial)
        log.info("starting from the weights of %s", cfg.train.init)
    if resumed is not None:
        start_step, bad_frames, rng = restore(resumed, model, optimizer, scheduler)
        log.info("resuming %s at step %d", run_dir, start_step)
    ddp_model = distributed.wrap(model, device)
    if cfg.data.on_device:
        loader = DevicePairLoader(dataset, cfg, start_step, rank)
    else:
        loader = pair_loader(dataset, cfg, start_step, device)
    meter = Meter(cfg, run_dir, start_step, bad_frames, device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed crop size
    amp = cfg.train.amp and device.type == "cuda"

    restore_rng(rng, cfg.train.seed, start_step)
    ddp_model.train()
    try:
        for step, batch in enumerate(loader, start=start_step):
            frames = batch["frames"].to(device, non_blocking=True)  # (B, 2, 3, H, W)
            flows = batch["flows"].to(device, non_blocking=True) if "flows" in batch else None  # (B, 2, 2, H, W)
            lr = optimizer.param_groups[0]["lr"]
            loss, terms, out = optimisation_step(ddp_model, optimizer, frames, cfg, amp, flows, teachers)
            scheduler.step()

            done = step + 1
            meter.update(loss, terms, batch["bad_frames"])
            stopped_early = done == cfg.train.stop_after
            stop = out_of_time(deadline, device) or stopped_early
            at_checkpoint = done % cfg.train.checkpoint_every == 0 or done == cfg.train.steps or stop
            if done % cfg.train.log_every == 0 or at_checkpoint:
                meter.flush(done, lr)
            if at_checkpoint:
                write_checkpoint(run_dir / LAST, ddp_model, optimizer, scheduler, cfg, done, meter.bad_frames)
            if rank == 0 and done % cfg.train.panel_every == 0:
                save_panel(run_dir / "panels" / f"step-{done:07d}.png", frames, out, flows)
            if stop:
                reason = "train.stop_after" if stopped_early else f"train.time_limit of {cfg.train.time_limit:g} minutes"
                log.info("%s reached: stopping at step %d", reason, done)
                break
        if rank == 0:
            save_weights(run_dir / WEIGHTS, distributed.unwrap(ddp_model), cfg, run_metadata(cfg))
    finally:
        meter.close()
        distributed.cleanup()
    return meter.summary(run_dir, start_step, world)


def out_of_time(deadline, device: torch.device) -> bool:
    """Past train.time_limit in any process; all processes agree, so they stop at the same step."""
    if deadline is None:
        return False
    return distributed.any_process(time.perf_counter() > deadline, device)


def check_run_dir(run_dir: Path, resume: bool, overwrite: bool):
    """The checkpoint to resume from, or None to start afresh; refuse to clobber a run.

    Every process checks before any of them changes the folder, so they agree.
    """
    if resume and overwrite:
        raise ValueError("resume and overwrite exclude each other")
    if run_dir.exists() and not run_dir.is_dir():
        raise FileExistsError(f"run folder {run_dir} is a file")
    if not (run_dir.is_dir() and any(run_dir.iterdir())):
        return None
    if not (run_dir / "config.yaml").is_file():
        raise FileExistsError(f"{run_dir} is not empty and holds no run (no config.yaml); choose another folder")
    if resume:
        if (run_dir / LAST).is_file():
            return run_dir / LAST
        log.warning("nothing to resume in %s (no %s yet): starting from step 0", run_dir, LAST)
        return None
    if not overwrite:
        raise FileExistsError(
            f"run folder {run_dir} exists and is not empty; pass --resume to continue it or --overwrite to start again"
        )
    return None


def prepare_run_dir(run_dir: Path, overwrite: bool) -> None:
    if overwrite and run_dir.is_dir():
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # CPU and every GPU


class PairStream(Sampler):
    """Pair indices k = (step * world + rank) * B + i, i < B, for steps start_step..steps-1.

    The processes read disjoint slices of one stream of pairs, and a run resumed
    at step s reads exactly what the uninterrupted run read from step s on.
    """

    def __init__(self, start_step: int, steps: int, batch_size: int, rank: int, world: int):
        self.start_step, self.steps, self.batch_size = start_step, steps, batch_size
        self.rank, self.world = rank, world

    def __iter__(self):
        for step in range(self.start_step, self.steps):
            first = (step * self.world + self.rank) * self.batch_size
            yield from range(first, first + self.batch_size)

    def __len__(self):
        return max(self.steps - self.start_step, 0) * self.batch_size


def pair_loader(dataset, cfg: Config, start_step: int, device: torch.device) -> DataLoader:
    sampler = PairStream(start_step, cfg.train.steps, cfg.train.batch_size, distributed.rank(), distributed.world_size())
    workers = cfg.data.workers
    return DataLoader(
        dataset,
        batch_size=cfg.train.batch_size,
        sampler=sampler,
        num_workers=workers,
        persistent_workers=workers > 0,
        pin_memory=device.type == "cuda",
        # Its own generator: starting the loader must not draw from the global
        # RNG, or a resumed run would drift from the uninterrupted one.
        generator=torch.Generator().manual_seed(cfg.train.seed),
    )


def write_checkpoint(path: Path, model, optimizer, scheduler, cfg: Config, step: int, bad_frames: int) -> None:
    """Everything needed to continue exactly; every process sends its RNG state, rank 0 writes."""
    rng = distributed.gather_objects(rng_state())
    if distributed.is_main():
        state = {
            "model": distributed.unwrap(model).state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "step": step,
            "bad_frames": bad_frames,
            "rng": rng,
            "config": to_dict(cfg),
            "metadata": run_metadata(cfg),
        }
        save_checkpoint(path, state)


def load_training_state(path: Path, cfg: Config) -> dict:
    """The checkpoint to resume from, checked against ``cfg`` before anything is built."""
    state = load_checkpoint(path, map_location="cpu")
    missing = [k for k in ("optimizer", "scheduler", "step", "bad_frames", "rng") if k not in state]
    if missing:
        raise CheckpointError(f"{path} holds weights but no training state ({', '.join(missing)}); cannot resume")
    changed = _differences(saved_config(state["config"]).get("model", {}), to_dict(cfg.model), "model.")
    if changed:
        raise CheckpointError(f"{path} was trained with another model config ({', '.join(changed)})")
    return state


def initial_weights(cfg: Config) -> dict:
    """The weights named by ``train.init``, checked to fit ``cfg.model``: fine-tuning, not resuming."""
    model, saved, _ = load_model(cfg.train.init)
    changed = _differences(to_dict(saved.model), to_dict(cfg.model), "model.")
    if changed:
        raise CheckpointError(f"train.init {cfg.train.init} was trained with another model config "
                              f"({', '.join(changed)})")
    return model.state_dict()


def restore(state: dict, model, optimizer, scheduler):
    """Load a training checkpoint into model, optimizer and scheduler; (step, bad_frames, rng)."""
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    return state["step"], state["bad_frames"], state["rng"]


def restore_rng(rng, seed: int, start_step: int) -> None:
    """Put back this process's generators as they were at the checkpoint."""
    if rng is None:
        return
    rank, world = distributed.rank(), distributed.world_size()
    if len(rng) == world:
        set_rng_state(rng[rank])
    else:
        log.warning("checkpoint comes from %d processes, this run has %d: reseeding", len(rng), world)
        seed_everything(seed + rank + start_step)


def _differences(saved: dict, current: dict, prefix: str) -> list:
    changed = []
    for key in sorted(set(saved) | set(current)):
        a, b = saved.get(key), current.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            changed += _differences(a, b, f"{prefix}{key}.")
        elif a != b:
            changed.append(f"{prefix}{key}: {a} -> {b}")
    return changed


def save_panel(path: Path, frames: torch.Tensor, out, flows=None) -> None:
    """Frames, masks, segment flow, reconstruction and error of the batch's first pair
    (with f_A alone: the frame, its masks and its classical flow)."""
    try:
        from ..visualize import mask_strip, training_panel
    except ImportError:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        frame1, frame2 = frames[:, 0].float(), frames[:, 1].float()  # (B, 3, H, W)
        if not out.flows12:
            mask_strip(frame1[0], out.masks1[0].float(), None if flows is None else flows[0, 0]).save(path)
            return
        recon1 = backward_warp(frame2, out.flows12[0].float())
    training_panel(frame1, frame2, out, recon1).save(path)


class Meter:
    """Averages the loss over the steps between log lines, across processes; rank 0 reports.

    Reports go to the tqdm bar (loss, lr, pairs/s, ETA) and to metrics.jsonl.
    """

    def __init__(self, cfg: Config, run_dir: Path, start_step: int, bad_frames: int, device: torch.device):
        self.device, self.bad_frames, self.record = device, bad_frames, {}
        self.pairs_per_step = cfg.train.batch_size * distributed.world_size()
        self.sums, self.names, self.pending, self.total = None, [], 0, 0  # steps since the last line, in all
        self.started = self.last_flush = time.perf_counter()
        main = distributed.is_main()
        self.logger = MetricsLogger(run_dir, start_step) if main else None
        self.bar = tqdm(total=cfg.train.steps, initial=start_step, unit="step", disable=not main, dynamic_ncols=True)

    def update(self, loss: torch.Tensor, terms: dict, bad_frames: torch.Tensor) -> None:
        """Accumulate on the device: no synchronisation between log lines."""
        self.names = ["loss", *terms]
        values = [loss, *terms.values(), bad_frames.sum()]
        values = torch.stack([torch.as_tensor(v).detach().to(self.device, torch.float32) for v in values])
        self.sums = values if self.sums is None else self.sums + values
        self.pending += 1
        self.total += 1
        self.bar.update(1)

    def flush(self, step: int, lr: float) -> None:
        *sums, bad_frames = distributed.all_reduce_sum(self.sums).tolist()
        now = time.perf_counter()
        pairs_per_s = self.pending * self.pairs_per_step / max(now - self.last_flush, 1e-9)
        self.bad_frames += int(round(bad_frames))
        means = {name: s / (self.pending * distributed.world_size()) for name, s in zip(self.names, sums)}
        self.record = {"step": step, **means, "lr": lr, "pairs_per_s": pairs_per_s, "bad_frames": self.bad_frames}
        self.sums, self.pending, self.last_flush = None, 0, now
        if self.logger is not None:
            self.logger.log(self.record)
            self.bar.set_postfix(loss=f"{means['loss']:.4f}", lr=f"{lr:.2e}", pairs_s=f"{pairs_per_s:.1f}")

    def summary(self, run_dir: Path, start_step: int, world: int) -> dict:
        seconds = time.perf_counter() - self.started
        return {
            "run_dir": str(run_dir),
            "start_step": start_step,
            "step": self.record.get("step", start_step),
            "loss": self.record.get("loss"),
            "bad_frames": self.bad_frames,
            "pairs_per_s": self.total * self.pairs_per_step / max(seconds, 1e-9),
            "seconds": seconds,
            "checkpoint": str(run_dir / LAST),
            "weights": str(run_dir / WEIGHTS),
            "world_size": world,
        }

    def close(self) -> None:
        self.bar.close()
        if self.logger is not None:
            self.logger.close()
