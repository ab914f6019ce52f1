"""Semantic segmentation from AMD's appearance network (SPEC 2.4): ``objectness finetune``.

The model is f_A itself (appearance.py): its ResNet backbone and its FCN head (two
dilated 3x3 conv blocks), with a fresh 1x1 classifier for the dataset's classes.
``train.init`` names AMD weights (or a fine-tuned model) whose *backbone* starts
the run; the head and classifier start from random weights, as they do from scratch (``init: null``),
so the two runs differ only in the backbone's start. Training is per-pixel
cross-entropy (void ignored) with SGD, momentum and poly decay. Scores come
from one confusion matrix over the set at each label's full resolution
(semantic_metrics.py).
"""
from __future__ import annotations

import csv
import hashlib
import io
import logging
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader
from tqdm import tqdm

from .. import __version__
from ..config import (
    AppearanceConfig,
    ConfigError,
    FinetuneConfig,
    SemanticModelConfig,
    from_dict,
    save_config,
    to_dict,
)
from ..data.video import DataError, natural_key
from ..device import resolve_device
from ..files import write_json, write_text
from ..model.appearance import AppearanceNet
from ..model.checkpoint import (
    LAST,
    WEIGHTS,
    CheckpointError,
    load_checkpoint,
    load_model,
    read_weights,
    rng_state,
    save_checkpoint,
    save_weights,
    set_rng_state,
    weights_file,
)
from ..training.logger import MetricsLogger
from ..training.train import check_run_dir, poly_lr, prepare_run_dir, seed_everything
from ..visualize import panel_row, save_image_atomic
from .data import (
    DEFAULT_SPLITS,
    IMAGE_SUFFIXES,
    CropDataset,
    SemanticSet,
    load_semantic_set,
)
from .metrics import VOID, ConfusionMatrix

log = logging.getLogger(__name__)

SCRATCH = "scratch"
# SPEC 3: VOC 2012 val mIoU of the paper, from AMD's weights and from scratch.
PAPER_VOC_MIOU = {"AMD": 0.620, "scratch": 0.480}


def build_model(cfg: SemanticModelConfig, num_classes: int) -> AppearanceNet:
    """f_A's backbone and FCN head with a classifier of ``num_classes`` outputs."""
    return AppearanceNet(cfg.appearance, num_classes)


def class_logits(model: AppearanceNet, images: torch.Tensor, size=None) -> torch.Tensor:
    """(B, 3, H, W) in 0..1 -> (B, classes, H, W) logits, upsampled bilinearly to ``size`` (default H, W)."""
    logits = model.logits(images)  # (B, classes, H/8, W/8)
    return F.interpolate(logits.float(), size=size or images.shape[-2:], mode="bilinear", align_corners=False)


def training_step(model, images: torch.Tensor, labels: torch.Tensor) -> tuple:
    """Per-pixel cross-entropy, void pixels ignored; images (B, 3, H, W), labels (B, H, W). (loss, logits)."""
    logits = class_logits(model, images)  # (B, classes, H, W)
    return F.cross_entropy(logits, labels, ignore_index=VOID), logits


def optimisation_step(model, optimizer, images, labels, amp: bool) -> tuple:
    with torch.autocast(images.device.type, dtype=torch.bfloat16, enabled=amp):
        loss, logits = training_step(model, images, labels)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss, logits


def make_optimizer(model, train_cfg) -> tuple:
    """SGD with momentum and weight decay; lr from train.lr to train.min_lr by poly decay over train.steps."""
    if train_cfg.lr <= 0 or train_cfg.steps <= 0 or train_cfg.batch_size <= 0:
        raise ConfigError("train.lr, train.steps and train.batch_size must be positive")
    optimizer = torch.optim.SGD(model.parameters(), lr=train_cfg.lr, momentum=train_cfg.momentum,
                                weight_decay=train_cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: poly_lr(step, train_cfg) / train_cfg.lr)
    return optimizer, scheduler


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
    run_dir = Path(run_dir)
    checkpoint_path = check_run_dir(run_dir, resume, overwrite)
    resumed = _training_state(checkpoint_path, cfg) if checkpoint_path else None
    initial = None
    if resumed is None and not is_scratch(cfg.train.init):
        initial = backbone_weights(cfg.train.init, cfg.model.appearance)
    train_set = load_semantic_set(cfg.data, train_split(cfg))
    train_set.check(progress)  # bad data fails before the folder is made
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
    start_step = 0
    if resumed is not None:
        model.load_state_dict(resumed["model"])
        optimizer.load_state_dict(resumed["optimizer"])
        scheduler.load_state_dict(resumed["scheduler"])
        start_step = resumed["step"]
        set_rng_state(resumed["rng"])
        log.info("resuming %s at step %d", run_dir, start_step)
    loader = crop_loader(train_set, cfg, start_step, device)
    amp = cfg.train.amp and device.type == "cuda"
    meter = Meter(run_dir, cfg, start_step, progress)

    model.train()
    try:
        for step, batch in enumerate(loader, start=start_step):
            images = batch["image"].to(device, non_blocking=True)  # (B, 3, H, W)
            labels = batch["label"].to(device, non_blocking=True)  # (B, H, W)
            lr = optimizer.param_groups[0]["lr"]
            loss, logits = optimisation_step(model, optimizer, images, labels, amp)
            scheduler.step()

            done = step + 1
            meter.update(loss, logits, labels)
            if done % cfg.train.log_every == 0 or done == cfg.train.steps:
                meter.flush(done, lr)
            if done % cfg.train.checkpoint_every == 0 or done == cfg.train.steps:
                write_checkpoint(run_dir / LAST, model, optimizer, scheduler, cfg, done, meta)
            if done % cfg.train.panel_every == 0:
                save_image_atomic(semantic_panel(images[0], logits[0].argmax(0), labels[0], train_set.palette),
                                  run_dir / "panels" / f"step-{done:07d}.png")
        save_weights(run_dir / WEIGHTS, model, cfg, meta)
    finally:
        meter.close()
    return meter.summary(run_dir, start_step)


def train_split(cfg: FinetuneConfig) -> str:
    return cfg.data.train_split or DEFAULT_SPLITS.get(cfg.data.dataset, ("train", "val"))[0]


def eval_split(cfg: FinetuneConfig) -> str:
    return cfg.data.eval_split or DEFAULT_SPLITS.get(cfg.data.dataset, ("train", "val"))[1]


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


def write_checkpoint(path: Path, model, optimizer, scheduler, cfg: FinetuneConfig, step: int, meta: dict) -> None:
    save_checkpoint(path, {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                           "scheduler": scheduler.state_dict(), "step": step, "rng": rng_state(),
                           "config": to_dict(cfg), "metadata": meta})


def _training_state(path: Path, cfg: FinetuneConfig) -> dict:
    """The checkpoint to resume from, checked against ``cfg`` before anything is built."""
    state = load_checkpoint(path)
    missing = [k for k in ("optimizer", "scheduler", "step", "rng", "metadata") if k not in state]
    if missing:
        raise CheckpointError(f"{path} holds weights but no training state ({', '.join(missing)}); cannot resume")
    saved = state["config"]
    if saved.get("model") != to_dict(cfg.model) or saved.get("data", {}).get("dataset") != cfg.data.dataset:
        raise CheckpointError(f"{path} was trained with another model config or dataset; cannot resume it with this one")
    return state


class Meter:
    """Mean loss and pixel accuracy of the training crops between log lines: tqdm bar and metrics.jsonl."""

    def __init__(self, run_dir: Path, cfg: FinetuneConfig, start_step: int, progress: bool):
        self.images_per_step = cfg.train.batch_size
        self.logger = MetricsLogger(run_dir, start_step)
        self.bar = tqdm(total=cfg.train.steps, initial=start_step, unit="step", disable=not progress,
                        dynamic_ncols=True)
        self.loss, self.correct, self.labelled, self.pending, self.total = 0.0, 0, 0, 0, 0
        self.record = {}
        self.started = self.last_flush = time.perf_counter()

    def update(self, loss, logits, labels) -> None:
        labelled = labels != VOID
        self.loss += loss.detach().float()
        self.correct += (logits.detach().argmax(1) == labels)[labelled].sum()
        self.labelled += labelled.sum()
        self.pending += 1
        self.total += 1
        self.bar.update(1)

    def flush(self, step: int, lr: float) -> None:
        now = time.perf_counter()
        self.record = {"step": step, "loss": float(self.loss) / self.pending,
                       "pixel_accuracy": float(self.correct) / max(float(self.labelled), 1.0), "lr": lr,
                       "images_per_s": self.pending * self.images_per_step / max(now - self.last_flush, 1e-9)}
        self.logger.log(self.record)
        self.bar.set_postfix(loss=f"{self.record['loss']:.4f}", acc=f"{self.record['pixel_accuracy']:.3f}",
                             lr=f"{lr:.2e}")
        self.loss, self.correct, self.labelled, self.pending, self.last_flush = 0.0, 0, 0, 0, now

    def summary(self, run_dir: Path, start_step: int) -> dict:
        seconds = time.perf_counter() - self.started
        return {"run_dir": str(run_dir), "start_step": start_step, "step": self.record.get("step", start_step),
                "loss": self.record.get("loss"), "seconds": seconds,
                "images_per_s": self.total * self.images_per_step / max(seconds, 1e-9),
                "checkpoint": str(run_dir / LAST), "weights": str(run_dir / WEIGHTS)}

    def close(self) -> None:
        self.bar.close()
        self.logger.close()


def colourise(classes: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """(H, W) class indices (VOID allowed) -> (H, W, 3) uint8 colours."""
    full = np.zeros((256, 3), dtype=np.uint8)
    full[: len(palette)] = palette
    if len(palette) <= VOID:
        full[VOID] = (255, 255, 255)
    return full[np.asarray(classes, dtype=np.uint8)]


def semantic_panel(image: torch.Tensor, prediction: torch.Tensor, label: torch.Tensor, palette) -> Image.Image:
    """Image, prediction and ground truth (void white) side by side; image (3, H, W) in 0..1."""
    def tile(classes):
        return torch.from_numpy(colourise(classes.cpu().numpy(), np.asarray(palette))).permute(2, 0, 1).float() / 255

    return panel_row([("image", image.detach().float().cpu().clamp(0, 1)), ("prediction", tile(prediction)),
                 ("ground truth", tile(label))])


def load_semantic_model(path, device="cpu") -> tuple:
    """(model in eval mode, FinetuneConfig, metadata) of a fine-tuned run folder, last.pt or .safetensors."""
    path = weights_file(Path(path))
    if path.suffix == ".safetensors":
        weights, config_dict, meta = read_weights(path)
    else:
        state = load_checkpoint(path)
        weights, config_dict, meta = state["model"], state["config"], state.get("metadata", {})
    if meta.get("task") != "semantic":
        raise CheckpointError(f"{path}: not a fine-tuned semantic-segmentation model (fine-tune AMD weights "
                              "first: objectness finetune --init ...)")
    try:
        cfg = from_dict(config_dict, FinetuneConfig)
    except ConfigError as err:
        raise CheckpointError(f"{path}: its config does not fit this version ({err})") from None
    model = build_model(cfg.model, len(meta["classes"]))
    try:
        model.load_state_dict(weights)
    except RuntimeError as err:
        first_line = str(err).strip().splitlines()[0]
        raise CheckpointError(f"{path}: weights do not fit the model of its config ({first_line})") from None
    return model.to(resolve_device(device)).eval(), cfg, meta


def network_size(height: int, width: int, short_edge) -> tuple:
    """(H, W) the network sees at test time: shorter edge ``short_edge`` (None: the image's own)."""
    if not short_edge:
        return height, width
    scale = short_edge / min(height, width)
    return max(8, round(height * scale)), max(8, round(width * scale))


@torch.no_grad()
def predict_classes(model, image: np.ndarray, short_edge, device) -> np.ndarray:
    """uint8 (H, W, 3) image -> uint8 (H, W) class indices at the image's full resolution."""
    height, width = image.shape[:2]
    batch = torch.from_numpy(np.array(image)).permute(2, 0, 1)[None].float().to(device) / 255  # (1, 3, H, W)
    size = network_size(height, width, short_edge)
    if size != (height, width):
        batch = F.interpolate(batch, size=size, mode="bilinear", align_corners=False, antialias=True)
    return class_logits(model, batch, size=(height, width))[0].argmax(0).to(torch.uint8).cpu().numpy()


def evaluate_semantic(model, semantic_set: SemanticSet, short_edge, device, progress: bool = True) -> dict:
    """Scores of ``model`` on every image of ``semantic_set``: one confusion matrix, full label resolution."""
    device = next(model.parameters()).device if device is None else resolve_device(device)
    matrix = ConfusionMatrix(len(semantic_set.classes))
    for i in tqdm(range(len(semantic_set)), desc=f"{semantic_set.dataset} {semantic_set.split}", unit="image",
                  disable=not progress):
        image, label = semantic_set.read(i)
        matrix.add(predict_classes(model, image, short_edge, device), label)
    return matrix.summary(semantic_set.classes)


def evaluate_run(run, data_root=None, split=None, out_dir=None, device="auto", progress: bool = True) -> dict:
    """Score a fine-tuned run (or its weights) on ``split`` of its dataset; write the report to ``out_dir``
    (default: <run>/eval-<split>/). ``data_root`` replaces the data folder the run was trained on."""
    model, cfg, meta = load_semantic_model(run, device)
    if data_root is not None:
        cfg.data.root = str(data_root)
    split = split or eval_split(cfg)
    semantic_set = load_semantic_set(cfg.data, split)
    if semantic_set.classes != meta["classes"]:
        raise DataError(f"{cfg.data.root}: its classes differ from those the model was trained on")
    scores = evaluate_semantic(model, semantic_set, cfg.data.test_short_edge, None, progress)
    run_path = Path(run)
    out_dir = Path(out_dir) if out_dir else (run_path if run_path.is_dir() else run_path.parent) / f"eval-{split}"
    summary = {"model": str(run), "init": meta.get("init"), "init_sha256": meta.get("init_sha256"),
               "dataset": cfg.data.dataset, "root": cfg.data.root, "split": split, "images": len(semantic_set),
               "test_short_edge": cfg.data.test_short_edge, **scores,
               "paper": {"data": "PASCAL VOC 2012 val", "mIoU_from_AMD": PAPER_VOC_MIOU["AMD"],
                         "mIoU_from_scratch": PAPER_VOC_MIOU["scratch"]}}
    write_report(out_dir, summary)
    return {**summary, "out_dir": str(out_dir)}


def write_report(out_dir: Path, summary: dict) -> None:
    """per_class.csv, summary.json and summary.md (the paper's VOC numbers beside ours)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=["class", "IoU", "accuracy", "pixels"])
    writer.writeheader()
    writer.writerows(summary["per_class"])
    write_text(out_dir / "per_class.csv", buffer.getvalue())
    write_json(out_dir / "summary.json", summary)
    write_text(out_dir / "summary.md", format_markdown(summary))


def format_markdown(summary: dict) -> str:
    init = summary.get("init") or "?"
    if summary.get("init_sha256"):
        init += f" (sha256 {summary['init_sha256']}...)"
    lines = [f"# {summary['dataset']} {summary['split']}: semantic segmentation", "",
             f"- model: {summary['model']}", f"- backbone initialised from: {init}",
             f"- images: {summary['images']}; network input shorter edge: {summary['test_short_edge'] or 'full size'}; "
             "scored at the labels' full resolution, void pixels left out", "",
             "| metric | ours |", "| --- | --- |"]
    lines += [f"| {key} | {_number(summary[key])} |" for key in ("mIoU", "pixel_accuracy", "mean_class_accuracy")]
    lines += ["", "| class | IoU | accuracy | labelled pixels |", "| --- | --- | --- | --- |"]
    lines += [f"| {row['class']} | {_number(row['IoU'])} | {_number(row['accuracy'])} | {row['pixels']} |"
              for row in summary["per_class"]]
    paper = summary["paper"]
    lines += ["", f"The paper ({paper['data']}): mIoU {paper['mIoU_from_AMD']:.3f} from AMD's weights, "
              f"{paper['mIoU_from_scratch']:.3f} from scratch."]
    if summary["dataset"] != "voc":
        lines.append(f"Those numbers are on another dataset than {summary['dataset']}; only the difference between "
                     "an AMD start and a scratch start compares.")
    return "\n".join(lines) + "\n"


def _number(value) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def predict(model, meta: dict, inputs: list, out_dir, short_edge, device=None, progress: bool = True) -> list:
    """Colour-coded class maps (<stem>_classes.png: palette PNG, pixel value = class index) and overlays
    (<stem>_overlay.jpg) of image files and folders of images, and legend.png, in ``out_dir``."""
    device = next(model.parameters()).device if device is None else resolve_device(device)
    out_dir = Path(out_dir)
    palette = np.asarray(meta["palette"], dtype=np.uint8)
    written = []
    for path in tqdm(_image_files(inputs), desc="images", unit="image", disable=not progress):
        try:
            image = np.asarray(Image.open(path).convert("RGB"))
        except OSError as err:
            raise DataError(f"{path}: cannot be read ({err})") from None
        classes = predict_classes(model, image, short_edge, device)
        class_map = Image.fromarray(classes, mode="P")
        class_map.putpalette(colourise(np.arange(256), palette).reshape(-1).tolist())
        overlay = Image.fromarray((0.5 * image + 0.5 * colourise(classes, palette)).round().astype(np.uint8))
        save_image_atomic(class_map, out_dir / f"{path.stem}_classes.png")
        save_image_atomic(overlay, out_dir / f"{path.stem}_overlay.jpg")
        written.append(out_dir / f"{path.stem}_classes.png")
    save_image_atomic(legend(meta["classes"], palette), out_dir / "legend.png")
    return written


def _image_files(inputs: list) -> list:
    files = []
    for path in map(Path, inputs):
        if path.is_dir():
            files += sorted((p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES), key=natural_key)
        elif path.is_file():
            files.append(path)
        else:
            raise DataError(f"input not found: {path}")
    if not files:
        raise DataError("no images among the inputs (.jpg, .jpeg, .png)")
    return files


def legend(classes: list, palette: np.ndarray) -> Image.Image:
    """One row per class: its colour and its name."""
    from PIL import ImageDraw

    image = Image.new("RGB", (200, 18 * len(classes) + 4), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    for k, name in enumerate(classes):
        draw.rectangle((4, 4 + 18 * k, 30, 18 + 18 * k), fill=tuple(int(c) for c in palette[k]))
        draw.text((36, 5 + 18 * k), f"{k} {name}", fill=(0, 0, 0))
    return image
