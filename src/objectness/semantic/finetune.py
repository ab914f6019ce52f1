"""Semantic segmentation from AMD's appearance network (docs/method.md#semantic-fine-tuning): ``objectness finetune``.

The model is f_A itself (appearance.py): its ResNet backbone and its FCN head (two
dilated 3x3 conv blocks), with a fresh 1x1 classifier for the dataset's classes.
``train.init`` names AMD weights (or a fine-tuned model) whose *backbone* starts
the run; the head and classifier start from random weights, as they do from scratch (``init: null``),
so the two runs differ only in the backbone's start. Training is per-pixel
cross-entropy (void ignored) with SGD, momentum and poly decay. Scores come
from one confusion matrix over the set at each label's full resolution
(evaluate.py).
"""
from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader

from .._version import __version__
from ..config import (
    AppearanceConfig,
    FinetuneConfig,
    save_config,
    to_dict,
    validate,
)
from ..device import autocast, resolve_device, resolve_precision
from ..model.checkpoint import (
    LAST,
    WEIGHTS,
    CheckpointError,
    load_model,
    save_weights,
    weights_file,
)
from ..training.run import (
    Interrupted,
    Meter,
    RunFolder,
    StopSignals,
    check_finite,
    poly_schedule,
    prepare_run_dir,
    read_training_state,
    restore,
    restore_rng,
    seed_everything,
    stop_requested,
    write_training_state,
)
from ..visualize import panel_row, save_image_atomic
from .data import CropDataset, SemanticSet, load_semantic_set, train_split
from .metrics import VOID
from .model import build_model, class_logits, load_semantic_model
from .predict import colourise

log = logging.getLogger(__name__)

SCRATCH = "scratch"


def training_step(model, images: torch.Tensor, labels: torch.Tensor) -> tuple:
    """Per-pixel cross-entropy, void pixels ignored; images (B, 3, H, W), labels (B, H, W). (loss, logits)."""
    logits = class_logits(model, images)  # (B, classes, H, W)
    return F.cross_entropy(logits, labels, ignore_index=VOID), logits


def optimisation_step(model, optimizer, images, labels, precision: str) -> tuple:
    with autocast(images.device, precision):
        loss, logits = training_step(model, images, labels)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss, logits


def make_optimizer(model, train_cfg) -> tuple:
    """SGD with momentum and weight decay; lr from train.lr to train.min_lr by poly decay over train.steps."""
    optimizer = torch.optim.SGD(model.parameters(), lr=train_cfg.lr, momentum=train_cfg.momentum,
                                weight_decay=train_cfg.weight_decay)
    return optimizer, poly_schedule(optimizer, train_cfg)


def is_scratch(init) -> bool:
    return init in (None, "", SCRATCH)


def backbone_weights(init, cfg: AppearanceConfig) -> dict:
    """The state dict of f_A's backbone in ``init`` (AMD weights, or a fine-tuned semantic model);
    refused unless it is ``cfg``'s architecture."""
    try:
        model, saved, _ = load_semantic_model(init)
        backbone = model.backbone
    except CheckpointError:  # not a fine-tuned model: AMD weights (or a file load_model explains)
        amd, saved, _ = load_model(init)
        backbone = amd.appearance.backbone
    changed = [f"{key} {getattr(saved.model.appearance, key)} (here {getattr(cfg, key)})"
               for key in ("depth", "width", "output_stride")
               if getattr(saved.model.appearance, key) != getattr(cfg, key)]
    if changed:
        raise CheckpointError(f"--init {init}: its backbone is another architecture ({', '.join(changed)}); "
                              "choose a config of that architecture (model.appearance.*) or --init scratch")
    return backbone.state_dict()


def init_description(init) -> dict:
    """Which weights started the backbone: the file and the first 12 hex digits of its sha256."""
    if is_scratch(init):
        return {"init": SCRATCH}
    path = weights_file(Path(init))
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return {"init": str(init), "init_file": path.name, "init_sha256": digest[:12]}


def finetune(cfg: FinetuneConfig, run_dir, resume: bool = False, overwrite: bool = False,
             progress: bool = True) -> dict:
    """Fine-tune as ``cfg`` says; config, metrics, panels, last.pt and model.safetensors go to ``run_dir``.

    A non-empty ``run_dir`` is refused unless ``resume`` (continue from its last.pt exactly)
    or ``overwrite``. Returns a summary: steps, final loss, seconds, file paths.
    """
    validate(cfg)
    run_dir = Path(run_dir)
    with RunFolder(run_dir, resume, overwrite) as run, StopSignals() as signals:
        resumed = resumable_state(run.checkpoint, cfg) if run.checkpoint else None
        initial = None
        if resumed is None and not is_scratch(cfg.train.init):
            initial = backbone_weights(cfg.train.init, cfg.model.appearance)
        train_set = load_semantic_set(cfg.data, train_split(cfg))
        train_set.check(progress)  # bad data fails before the folder is filled
        meta = resumed["metadata"] if resumed else {**run_metadata(train_set), **init_description(cfg.train.init)}
        device = resolve_device(cfg.train.device)
        seed_everything(cfg.train.seed)
        prepare_run_dir(run_dir, overwrite)
        save_config(cfg, run_dir / "config.yaml")

        model = build_model(cfg.model, len(train_set.classes)).to(device)
        if initial is not None:
            model.backbone.load_state_dict(initial)
            log.info("backbone from %s (sha256 %s...); head and classifier random", cfg.train.init, meta["init_sha256"])
        optimizer, scheduler = make_optimizer(model, cfg.train)
        start_step, last_checkpoint = 0, None
        if resumed is not None:
            start_step = last_checkpoint = restore(resumed, model, optimizer, scheduler)
            restore_rng(resumed, cfg.train.seed)
            log.info("resuming %s at step %d", run_dir, start_step)
        loader = crop_loader(train_set, cfg, start_step, device)
        precision = resolve_precision(cfg.train.precision, device)
        meter = Meter(run_dir, cfg.train.steps, start_step, device, progress)

        model.train()
        try:
            for step, batch in enumerate(loader, start=start_step):
                images = batch["image"].to(device, non_blocking=True)  # (B, 3, H, W)
                labels = batch["label"].to(device, non_blocking=True)  # (B, H, W)
                lr = optimizer.param_groups[0]["lr"]
                loss, logits = optimisation_step(model, optimizer, images, labels, precision)
                scheduler.step()

                done = step + 1
                labelled = labels != VOID
                correct = ((logits.detach().argmax(1) == labels) & labelled).sum()  # no boolean indexing: no sync
                meter.update({"loss": loss, "correct": correct, "labelled": labelled.sum()})
                at_log_line = done % cfg.train.log_every == 0
                stop = stop_requested(signals, None, device, at_log_line)
                at_checkpoint = done % cfg.train.checkpoint_every == 0 or done == cfg.train.steps or stop
                if at_log_line or at_checkpoint:  # a loss that is no longer finite stops the run here
                    log_line(meter, done, lr, cfg.train.batch_size, last_checkpoint)
                if at_checkpoint:
                    write_training_state(run_dir / LAST, model, optimizer, scheduler, done, to_dict(cfg), meta)
                    last_checkpoint = done
                if done % cfg.train.panel_every == 0:
                    save_image_atomic(semantic_panel(images[0], logits[0].argmax(0), labels[0], train_set.palette),
                                      run_dir / "panels" / f"step-{done:07d}.png")
                if stop:
                    break
            save_weights(run_dir / WEIGHTS, model, cfg, meta)
        finally:
            meter.close()
        if signals.received is not None:
            raise Interrupted(f"{signals.received.name}: stopped at step {last_checkpoint}, its checkpoint written "
                              f"to {run_dir / LAST}; --resume continues the run", signals.received.value)
    return {"run_dir": str(run_dir), "start_step": start_step, "step": meter.last.get("step", start_step),
            "loss": meter.last.get("loss"), "seconds": meter.seconds,
            "images_per_s": meter.total * cfg.train.batch_size / max(meter.seconds, 1e-9),
            "checkpoint": str(run_dir / LAST), "weights": str(run_dir / WEIGHTS)}


def log_line(meter: Meter, step: int, lr: float, batch_size: int, last_checkpoint=None) -> None:
    """One line of metrics.jsonl: the mean loss and the pixel accuracy of the crops since the last line;
    TrainingError if the loss is not finite."""
    sums, count, seconds = meter.collect()
    check_finite(sums, step, last_checkpoint)
    record = {"step": step, "loss": sums["loss"] / count,
              "pixel_accuracy": sums["correct"] / max(sums["labelled"], 1.0), "lr": lr,
              "images_per_s": count * batch_size / seconds}
    meter.log(record, loss=f"{record['loss']:.4f}", acc=f"{record['pixel_accuracy']:.3f}", lr=f"{lr:.2e}")


def resumable_state(path: Path, cfg: FinetuneConfig) -> dict:
    """The checkpoint to resume from, checked against ``cfg`` before anything is built."""
    state = read_training_state(path, needs=("metadata",))
    saved = state["config"]
    if saved.get("model") != to_dict(cfg.model) or saved.get("data", {}).get("dataset") != cfg.data.dataset:
        raise CheckpointError(f"{path} was trained with another model config or dataset; cannot resume it with this one")
    return state


def run_metadata(semantic_set: SemanticSet) -> dict:
    """What a fine-tuned model needs to be used without its data: classes and their colours."""
    return {"version": __version__, "task": "semantic", "dataset": semantic_set.dataset,
            "classes": semantic_set.classes,
            "palette": semantic_set.palette[: len(semantic_set.classes)].tolist()}


def crop_loader(train_set: SemanticSet, cfg: FinetuneConfig, start_step: int, device: torch.device) -> DataLoader:
    """Crops k = step * B + i for steps start_step..steps-1: a resumed run reads what the whole run would."""
    batch = cfg.train.batch_size
    return DataLoader(CropDataset(train_set, cfg.data, cfg.train.seed), batch_size=batch,
                      sampler=range(start_step * batch, cfg.train.steps * batch), num_workers=cfg.data.workers,
                      persistent_workers=cfg.data.workers > 0, pin_memory=device.type == "cuda",
                      # Its own generator: starting the loader must not draw from the global RNG,
                      # or a resumed run would drift from the uninterrupted one.
                      generator=torch.Generator().manual_seed(cfg.train.seed))


def semantic_panel(image: torch.Tensor, prediction: torch.Tensor, label: torch.Tensor, palette) -> Image.Image:
    """Image, prediction and ground truth (void white) side by side; image (3, H, W) in 0..1."""
    def tile(classes):
        return torch.from_numpy(colourise(classes.cpu().numpy(), np.asarray(palette))).permute(2, 0, 1).float() / 255

    return panel_row([("image", image.detach().float().cpu().clamp(0, 1)), ("prediction", tile(prediction)),
                 ("ground truth", tile(label))])
