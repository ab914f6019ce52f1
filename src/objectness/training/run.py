"""What every training run shares, AMD's (training/train.py) and semantic fine-tuning's (semantic/finetune.py).

A run folder holds config.yaml, metrics.jsonl, panels/, last.pt (the training
state, written atomically) and model.safetensors. Here: the folder's checks,
the seeds and generators, the poly learning-rate schedule, the meter that
turns steps into log lines, and writing and resuming the training state. The
recipes themselves (data, model, objective, optimizer) stay in their own files.
"""
from __future__ import annotations

import logging
import random
import shutil
import time
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from tqdm import tqdm

from ..model.checkpoint import LAST, CheckpointError, load_checkpoint, save_checkpoint
from . import distributed
from .logger import MetricsLogger

log = logging.getLogger(__name__)

TRAINING_STATE = ("model", "optimizer", "scheduler", "step", "rng")  # the keys of a checkpoint that resumes


def check_run_dir(run_dir: Path, resume: bool, overwrite: bool) -> Optional[Path]:
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


def poly_lr(step: int, train_cfg) -> float:
    """lr(t) = (lr - min_lr) * (1 - t / steps)^power + min_lr."""
    progress = min(step / train_cfg.steps, 1.0)
    return (train_cfg.lr - train_cfg.min_lr) * (1 - progress) ** train_cfg.poly_power + train_cfg.min_lr


def poly_schedule(optimizer, train_cfg) -> torch.optim.lr_scheduler.LambdaLR:
    """Poly decay from train.lr to train.min_lr over train.steps (docs/method.md#training, #semantic-fine-tuning); parameter groups
    with an lr of their own keep their ratio to train.lr."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: poly_lr(step, train_cfg) / train_cfg.lr)


def out_of_time(deadline, device: torch.device) -> bool:
    """Past the deadline in any process; all processes agree, so they stop at the same step."""
    if deadline is None:
        return False
    return distributed.any_process(time.perf_counter() > deadline, device)


# ---------------------------------------------------------------- training state


def rng_state() -> dict:
    """Every generator training draws from, as tensors and plain values."""
    name, keys, position, has_gauss, cached_gaussian = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": [name, keys.tolist(), position, has_gauss, cached_gaussian],
        "python": [version, list(internal), gauss_next],
    }


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, np.array(keys, dtype=np.uint32), *rest))
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))


def write_training_state(path: Path, model, optimizer, scheduler, step: int, config: dict, meta: dict,
                         **extra) -> None:
    """Everything needed to continue exactly, written atomically by rank 0: weights, optimizer,
    schedule, step, every process's generators, the config and metadata, and ``extra`` values."""
    rng = distributed.gather_objects(rng_state())
    if distributed.is_main():
        save_checkpoint(path, {
            "model": distributed.unwrap(model).state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "step": step,
            **extra,
            "rng": rng,
            "config": config,
            "metadata": meta,
        })


def read_training_state(path: Path, needs=()) -> dict:
    """A checkpoint that can be resumed: weights and the training state (and the ``needs`` keys)."""
    state = load_checkpoint(path, map_location="cpu")
    missing = [k for k in (*TRAINING_STATE, *needs) if k not in state]
    if missing:
        raise CheckpointError(f"{path} holds weights but no training state ({', '.join(missing)}); cannot resume")
    return state


def restore(state: dict, model, optimizer, scheduler) -> int:
    """Load a training state into model, optimizer and scheduler; the step to continue from."""
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    return state["step"]


def restore_rng(state: dict, seed: int) -> None:
    """Put back this process's generators as they were at the checkpoint (just before the loop)."""
    rng = state["rng"]
    if isinstance(rng, dict):  # fine-tuning checkpoints before the shared run skeleton: one process
        rng = [rng]
    rank, world = distributed.rank(), distributed.world_size()
    if len(rng) == world:
        set_rng_state(rng[rank])
    else:
        log.warning("checkpoint comes from %d processes, this run has %d: reseeding", len(rng), world)
        seed_everything(seed + rank + state["step"])


def differences(saved: dict, current: dict, prefix: str) -> list:
    """The keys of two nested config dicts whose values differ, as 'prefix.key: saved -> current'."""
    changed = []
    for key in sorted(set(saved) | set(current)):
        a, b = saved.get(key), current.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            changed += differences(a, b, f"{prefix}{key}.")
        elif a != b:
            changed.append(f"{prefix}{key}: {a} -> {b}")
    return changed


# ---------------------------------------------------------------- progress and metrics


class Meter:
    """Sums per-step values on the device between log lines (no synchronisation per step) and, on
    rank 0, writes each line to metrics.jsonl and the tqdm bar.

    ``update(values)`` adds a dict of scalars; ``collect()`` returns their sums over the steps since
    the last line and over every process, with the number of process-steps and the seconds they
    took; ``log(record, **postfix)`` writes a line.
    """

    def __init__(self, run_dir: Path, steps: int, start_step: int, device: torch.device, progress: bool = True):
        self.device, self.names, self.sums = device, [], None
        self.last = {}  # the last line written
        self.pending = self.total = 0  # steps since the last line, and in all
        self.started = self.last_flush = time.perf_counter()
        main = distributed.is_main()
        self.logger = MetricsLogger(run_dir, start_step) if main else None
        self.bar = tqdm(total=steps, initial=start_step, unit="step", disable=not (main and progress),
                        dynamic_ncols=True)

    def update(self, values: dict) -> None:
        self.names = list(values)
        stacked = torch.stack([torch.as_tensor(v).detach().to(self.device, torch.float32) for v in values.values()])
        self.sums = stacked if self.sums is None else self.sums + stacked
        self.pending += 1
        self.total += 1
        self.bar.update(1)

    def collect(self) -> tuple:
        """(sums by name, process-steps they cover, seconds since the last line), and a fresh start."""
        sums = dict(zip(self.names, distributed.all_reduce_sum(self.sums).tolist()))
        now = time.perf_counter()
        count, seconds = self.pending * distributed.world_size(), max(now - self.last_flush, 1e-9)
        self.sums, self.pending, self.last_flush = None, 0, now
        return sums, count, seconds

    def log(self, record: dict, **postfix) -> None:
        self.last = record
        if self.logger is not None:
            self.logger.log(record)
            self.bar.set_postfix(**postfix)

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.started

    def close(self) -> None:
        self.bar.close()
        if self.logger is not None:
            self.logger.close()
