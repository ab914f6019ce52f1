"""Training AMD from scratch by view synthesis on unlabeled video (docs/method.md#training).

``train`` is the recipe top to bottom: run folder, data, model, optimizer,
loop, checkpoints. The objective of one batch is ``training_step`` (step.py).
Distributed training (torchrun), bf16 autocast, logging and checkpointing wrap
the step; they live in distributed.py, step.py and run.py.
"""
import logging
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Sampler

from ..config import Config, save_config, to_dict, validate
from ..data.device_frames import DeviceFrames, DevicePairLoader
from ..data.pairs import build_pair_dataset
from ..device import memory_format, resolve_device, resolve_precision
from ..model.amd import AMD
from ..model.checkpoint import (
    LAST,
    WEIGHTS,
    CheckpointError,
    load_model,
    metadata,
    save_weights,
    saved_config,
)
from ..model.warp import backward_warp
from . import distributed
from .run import (
    Interrupted,
    Meter,
    RunFolder,
    StopSignals,
    check_finite,
    differences,
    prepare_run_dir,
    read_training_state,
    restore,
    restore_rng,
    seed_everything,
    stop_requested,
    write_training_state,
)
from .step import make_optimizer, optimisation_step, taught_channel
from .image_targets import build_image_dataset
from .teachers import Teachers

log = logging.getLogger(__name__)


def run_metadata(cfg: Config) -> dict:
    """A run's metadata: the objectness channel is known from the start when the objective teaches it."""
    return metadata(objectness_channel=taught_channel(cfg.loss))


def train(cfg: Config, run_dir, resume: bool = False, overwrite: bool = False) -> dict:
    """Train AMD as ``cfg`` says; config, metrics, panels, checkpoints and weights go to ``run_dir``.

    A non-empty ``run_dir`` is refused unless ``resume`` (continue from its last.pt,
    reproducing the uninterrupted run) or ``overwrite`` (delete it, start again).
    Returns a summary: steps, final loss, bad frames, throughput, file paths.
    """
    validate(cfg)
    run_dir = Path(run_dir)
    deadline = time.perf_counter() + 60 * cfg.train.time_limit if cfg.train.time_limit > 0 else None
    with RunFolder(run_dir, resume, overwrite) as run, StopSignals() as signals:
        resumed = resumable_state(run.checkpoint, cfg) if run.checkpoint else None
        initial = initial_weights(cfg) if resumed is None and cfg.train.init else None
        device = distributed.local_device(resolve_device(cfg.train.device))
        # Bad data fails before the folder is filled; classical flow is computed (or read from its cache) here.
        teachers = Teachers(cfg.loss.distill_from, cfg.data.short_edge, device) if cfg.loss.distill_weight else None
        if cfg.data.on_device:  # every frame decoded once into the device's memory (data/device_frames.py)
            dataset = DeviceFrames.load(cfg.data, device)
        else:
            dataset = build_pair_dataset(cfg.data, seed=cfg.train.seed, with_flow=cfg.loss.uses_classical_flow)
        # Still images and their teachers' maps (computed once, cached): not the paper's.
        still_images = build_image_dataset(cfg, device, cfg.train.seed) if cfg.loss.image_weight else None
        distributed.init(device)
        rank, world = distributed.rank(), distributed.world_size()
        seed_everything(cfg.train.seed + rank)
        if rank == 0:
            prepare_run_dir(run_dir, overwrite)
            save_config(cfg, run_dir / "config.yaml")
        distributed.barrier()

        model = memory_format(AMD(cfg.model).to(device), cfg.train.channels_last)
        optimizer, scheduler = make_optimizer(model, cfg.train)
        start_step, bad_frames, last_checkpoint = 0, 0, None
        if initial is not None:
            model.load_state_dict(initial)
            log.info("starting from the weights of %s", cfg.train.init)
        if resumed is not None:
            start_step, bad_frames = restore(resumed, model, optimizer, scheduler), resumed["bad_frames"]
            last_checkpoint = start_step
            log.info("resuming %s at step %d", run_dir, start_step)
        ddp_model = distributed.wrap(model, device)
        if cfg.data.on_device:
            loader = DevicePairLoader(dataset, cfg, start_step, rank)
        else:
            loader = pair_loader(dataset, cfg, start_step, device)
        image_batches = None if still_images is None else iter(
            pair_loader(still_images, cfg, start_step, device, cfg.data.image_batch_size))
        meter = Meter(run_dir, cfg.train.steps, start_step, device)
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # fixed crop size
        precision = resolve_precision(cfg.train.precision, device)

        if resumed is not None:
            restore_rng(resumed, cfg.train.seed)
        ddp_model.train()
        try:
            for step, batch in enumerate(loader, start=start_step):
                frames = batch["frames"].to(device, non_blocking=True)  # (B, 2, 3, H, W)
                flows = batch["flows"].to(device, non_blocking=True) if "flows" in batch else None  # (B, 2, 2, H, W)
                images, bad = None, batch["bad_frames"].sum()
                if image_batches is not None:
                    still = next(image_batches)
                    images = {key: still[key].to(device, non_blocking=True) for key in ("images", "targets")}
                    bad = bad + still["bad_images"].sum()
                lr = optimizer.param_groups[0]["lr"]
                loss, terms, out = optimisation_step(ddp_model, optimizer, frames, cfg, precision, flows, teachers,
                                                     images)
                scheduler.step()

                done = step + 1
                meter.update({"loss": loss, **terms, "bad_frames": bad})
                at_log_line = done % cfg.train.log_every == 0
                stopped_early = done == cfg.train.stop_after
                stop = stopped_early or stop_requested(signals, deadline, device, at_log_line)
                at_checkpoint = done % cfg.train.checkpoint_every == 0 or done == cfg.train.steps or stop
                if at_log_line or at_checkpoint:  # a loss that is no longer finite stops the run here
                    bad_frames = log_line(meter, done, lr, bad_frames, cfg.train.batch_size, last_checkpoint)
                if at_checkpoint:
                    write_training_state(run_dir / LAST, ddp_model, optimizer, scheduler, done, to_dict(cfg),
                                         run_metadata(cfg), bad_frames=bad_frames)
                    last_checkpoint = done
                if rank == 0 and done % cfg.train.panel_every == 0:
                    save_panel(run_dir / "panels" / f"step-{done:07d}.png", frames, out, flows)
                if stop:
                    log.info("%s: stopping at step %d", _stop_reason(cfg, signals, stopped_early), done)
                    break
            if rank == 0:
                save_weights(run_dir / WEIGHTS, distributed.unwrap(ddp_model), cfg, run_metadata(cfg))
        finally:
            meter.close()
            distributed.cleanup()
        if signals.received is not None:
            raise Interrupted(f"{signals.received.name}: stopped at step {last_checkpoint}, its checkpoint written "
                              f"to {run_dir / LAST}; --resume continues the run", signals.received.value)
    pairs = meter.total * cfg.train.batch_size * world
    return {"run_dir": str(run_dir), "start_step": start_step, "step": meter.last.get("step", start_step),
            "loss": meter.last.get("loss"), "bad_frames": bad_frames, "pairs_per_s": pairs / max(meter.seconds, 1e-9),
            "seconds": meter.seconds, "checkpoint": str(run_dir / LAST), "weights": str(run_dir / WEIGHTS),
            "world_size": world}


def _stop_reason(cfg: Config, signals, stopped_early: bool) -> str:
    if signals.received is not None:
        return f"{signals.received.name} received"
    if stopped_early:
        return "train.stop_after reached"
    return f"train.time_limit of {cfg.train.time_limit:g} minutes reached"


class PairStream(Sampler):
    """Pair indices k = (step * world + rank) * B + i, i < B, for steps start_step..steps-1.

    The processes read disjoint slices of one stream of pairs (or of still
    images), and a run resumed at step s reads exactly what the uninterrupted
    run read from step s on.
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


def pair_loader(dataset, cfg: Config, start_step: int, device: torch.device, batch_size=None) -> DataLoader:
    """Batches of ``dataset`` (pairs, or still images with ``batch_size``) for steps start_step..train.steps-1."""
    batch_size = batch_size or cfg.train.batch_size
    sampler = PairStream(start_step, cfg.train.steps, batch_size, distributed.rank(), distributed.world_size())
    workers = cfg.data.workers
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=workers,
        persistent_workers=workers > 0,
        pin_memory=device.type == "cuda",
        # Its own generator: starting the loader must not draw from the global
        # RNG, or a resumed run would drift from the uninterrupted one.
        generator=torch.Generator().manual_seed(cfg.train.seed),
    )


def log_line(meter: Meter, step: int, lr: float, bad_frames: int, batch_size: int, last_checkpoint=None) -> int:
    """One line of metrics.jsonl: the loss and its terms averaged since the last line, lr, pairs per
    second and the unreadable frames skipped so far (returned). TrainingError if the loss is not finite."""
    sums, count, seconds = meter.collect()
    check_finite(sums, step, last_checkpoint)
    bad_frames += int(round(sums.pop("bad_frames")))
    means = {name: value / count for name, value in sums.items()}
    pairs_per_s = count * batch_size / seconds
    meter.log({"step": step, **means, "lr": lr, "pairs_per_s": pairs_per_s, "bad_frames": bad_frames},
              loss=f"{means['loss']:.4f}", lr=f"{lr:.2e}", pairs_s=f"{pairs_per_s:.1f}")
    return bad_frames


def resumable_state(path: Path, cfg: Config) -> dict:
    """The checkpoint to resume from, checked against ``cfg`` before anything is built."""
    state = read_training_state(path, needs=("bad_frames",))
    changed = differences(saved_config(state["config"]).get("model", {}), to_dict(cfg.model), "model.")
    if changed:
        raise CheckpointError(f"{path} was trained with another model config ({', '.join(changed)})")
    return state


def initial_weights(cfg: Config) -> dict:
    """The weights named by ``train.init``, checked to fit ``cfg.model``: fine-tuning, not resuming."""
    model, saved, _ = load_model(cfg.train.init)
    changed = differences(to_dict(saved.model), to_dict(cfg.model), "model.")
    if changed:
        raise CheckpointError(f"train.init {cfg.train.init} was trained with another model config "
                              f"({', '.join(changed)})")
    return model.state_dict()


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


