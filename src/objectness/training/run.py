"""What every training run shares, AMD's (training/train.py) and semantic fine-tuning's (semantic/finetune.py).

A run folder holds config.yaml, metrics.jsonl, panels/, last.pt (the training
state, written atomically) and model.safetensors. Here: the folder's checks,
the seeds and generators, the poly learning-rate schedule, the meter that
turns steps into log lines, and writing and resuming the training state. The
recipes themselves (data, model, objective, optimizer) stay in their own files.
"""
from __future__ import annotations

import logging
import math
import os
import random
import shutil
import signal
import socket
import threading
import time
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from tqdm import tqdm

from ..model.checkpoint import LAST, CheckpointError, load_checkpoint, save_checkpoint
from . import distributed
from .logger import MetricsLogger

try:
    import fcntl
except ImportError:  # not a POSIX system
    fcntl = None

log = logging.getLogger(__name__)

TRAINING_STATE = ("model", "optimizer", "scheduler", "step", "rng")  # the keys of a checkpoint that resumes
LOCK = ".lock"  # in the run folder: who trains in it (never deleted, so that two processes lock one file)


class RunFolderError(FileExistsError):
    """A run folder that is in use, or holds something that is not a run."""


class TrainingError(RuntimeError):
    """Training that cannot go on (a loss that is no longer finite); the last checkpoint is kept."""


class Interrupted(KeyboardInterrupt):
    """Training stopped by SIGINT or SIGTERM after a complete step, with a checkpoint."""

    def __init__(self, message: str, signal_number: int):
        super().__init__(message)
        self.exit_code = 128 + signal_number


class RunFolder:
    """The run folder, held by the process that trains in it from the check of what it holds to the end.

    Rank 0 (the only process without torchrun) makes the folder if it is missing
    and locks its ``.lock`` file (``flock``; the operating system releases it
    if the process dies) before it looks inside, so the check and the lock are
    one step: a second process, fresh or ``--resume``, stops with a line naming
    the holder. ``checkpoint`` is the last.pt to resume from, or None. A folder
    made here that the run leaves empty (it failed before it began) is removed.
    """

    def __init__(self, run_dir: Path, resume: bool, overwrite: bool):
        if resume and overwrite:
            raise ValueError("resume and overwrite exclude each other")
        self.path, self.made, self.lock = Path(run_dir), False, None
        if self.path.exists() and not self.path.is_dir():
            raise RunFolderError(f"run folder {self.path} is a file")
        if distributed.env_rank() == 0:
            self._lock()
        try:
            self.checkpoint = check_run_dir(self.path, resume, overwrite)
        except BaseException:
            self.release()
            raise

    def _lock(self) -> None:
        self.made = not self.path.exists()
        self.path.mkdir(parents=True, exist_ok=True)
        if fcntl is None:  # not a POSIX system: no lock
            return
        file = open(self.path / LOCK, "a+")
        try:
            fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            file.seek(0)
            holder = file.read().strip() or "another process"
            file.close()
            raise RunFolderError(f"run folder {self.path} is in use by {holder}; wait until it ends "
                                 "or choose another folder") from None
        file.seek(0)
        file.truncate()
        file.write(f"process {os.getpid()} on {socket.gethostname()} since "
                   f"{time.strftime('%Y-%m-%d %H:%M:%S')}\n")
        file.flush()
        self.lock = file

    def release(self) -> None:
        """Unlock; remove the folder if this run made it and left nothing in it but the lock."""
        if self.lock is not None:
            self.lock.close()
            self.lock = None
        if self.made and self.path.is_dir() and {p.name for p in self.path.iterdir()} <= {LOCK}:
            shutil.rmtree(self.path, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.release()
        return False


def _entries(run_dir: Path) -> list:
    return [p for p in run_dir.iterdir() if p.name != LOCK] if run_dir.is_dir() else []


def check_run_dir(run_dir: Path, resume: bool, overwrite: bool) -> Optional[Path]:
    """The checkpoint to resume from, or None to start afresh; refuse to clobber a run.

    Every process checks before any of them changes the folder, so they agree.
    """
    if run_dir.exists() and not run_dir.is_dir():
        raise RunFolderError(f"run folder {run_dir} is a file")
    if not _entries(run_dir):
        return None
    if not (run_dir / "config.yaml").is_file():
        raise RunFolderError(f"{run_dir} is not empty and holds no run (no config.yaml); choose another folder")
    if resume:
        if (run_dir / LAST).is_file():
            return run_dir / LAST
        log.warning("nothing to resume in %s (no %s yet): starting from step 0", run_dir, LAST)
        return None
    if not overwrite:
        raise RunFolderError(
            f"run folder {run_dir} exists and is not empty; pass --resume to continue it or --overwrite to start again"
        )
    return None


def prepare_run_dir(run_dir: Path, overwrite: bool) -> None:
    """Make the folder; with ``overwrite``, empty it first (its lock stays)."""
    if overwrite:
        for entry in _entries(run_dir):
            shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
    run_dir.mkdir(parents=True, exist_ok=True)


class StopSignals:
    """While training, SIGINT and SIGTERM ask the loop to stop after the step it is in, with a
    checkpoint; a second signal stops at once. Only in the main thread (elsewhere: Python's defaults)."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.received, self.previous = None, {}

    def _handle(self, number, frame):
        if self.received is not None:
            raise KeyboardInterrupt
        self.received = signal.Signals(number)
        log.warning("%s received: stopping after this step with a checkpoint (again to stop at once)",
                    self.received.name)

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self.previous = {s: signal.signal(s, self._handle) for s in self.SIGNALS}
        return self

    def __exit__(self, *exc_info):
        for number, handler in self.previous.items():
            signal.signal(number, handler)
        return False


def stop_requested(signals: StopSignals, deadline, device: torch.device, at_log_line: bool) -> bool:
    """Past the deadline or asked to stop, in any process; all processes agree, so they stop at the
    same step. Alone, every step; under torchrun only at log lines (the agreement costs a synchronisation)."""
    local = signals.received is not None or (deadline is not None and time.perf_counter() > deadline)
    if distributed.world_size() == 1:
        return local
    if not at_log_line and deadline is None:
        return False
    return distributed.any_process(local, device)


def check_finite(sums: dict, step: int, last_checkpoint) -> None:
    """TrainingError if a logged sum is NaN or infinite: the weights are no longer worth keeping."""
    bad = [name for name, value in sums.items() if not math.isfinite(value)]
    if bad:
        kept = (f"the checkpoint of step {last_checkpoint} is kept" if last_checkpoint
                else "no checkpoint had been written")
        value = "NaN" if any(math.isnan(sums[name]) for name in bad) else "infinite"
        raise TrainingError(f"{bad[0]} is {value} at step {step}; {kept} (a lower train.lr or a "
                            "train.grad_clip may keep training stable)")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # CPU and every GPU


def poly_lr(step: int, train_cfg) -> float:
    """lr(t) = (lr - min_lr) * (1 - t / steps)^power + min_lr."""
    progress = min(step / train_cfg.steps, 1.0)
    return (train_cfg.lr - train_cfg.min_lr) * (1 - progress) ** train_cfg.poly_power + train_cfg.min_lr


def poly_schedule(optimizer, train_cfg) -> torch.optim.lr_scheduler.LambdaLR:
    """Poly decay from train.lr to train.min_lr over train.steps (docs/method.md#training,
    #semantic-fine-tuning); parameter groups with an lr of their own keep their ratio to train.lr."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: poly_lr(step, train_cfg) / train_cfg.lr)


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
