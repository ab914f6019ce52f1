"""The semantic model: f_A's backbone and FCN head with a classifier of a dataset's classes
(docs/method.md#semantic-fine-tuning)."""
from __future__ import annotations

import logging
from pathlib import Path

import torch
import torch.nn.functional as F

from ..config import (
    ConfigError,
    FinetuneConfig,
    SemanticModelConfig,
    from_dict,
    validate,
)
from ..device import resolve_device
from ..model.appearance import AppearanceNet
from ..model.checkpoint import (
    CheckpointError,
    check_finite_weights,
    load_checkpoint,
    read_weights,
    weights_file,
)

log = logging.getLogger(__name__)


def build_model(cfg: SemanticModelConfig, num_classes: int) -> AppearanceNet:
    """f_A's backbone and FCN head with a classifier of ``num_classes`` outputs."""
    return AppearanceNet(cfg.appearance, num_classes)


def class_logits(model: AppearanceNet, images: torch.Tensor, size=None) -> torch.Tensor:
    """(B, 3, H, W) in 0..1 -> (B, classes, H, W) logits, upsampled bilinearly to ``size`` (default H, W)."""
    logits = model.logits(images)  # (B, classes, H/8, W/8)
    return F.interpolate(logits.float(), size=size or images.shape[-2:], mode="bilinear", align_corners=False)


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
    check_finite_weights(weights, path)
    try:
        cfg = validate(from_dict(config_dict, FinetuneConfig))
    except ConfigError as err:
        raise CheckpointError(f"{path}: its config does not fit this version ({err})") from None
    model = build_model(cfg.model, len(meta["classes"]))
    try:
        model.load_state_dict(weights)
    except RuntimeError as err:
        first_line = str(err).strip().splitlines()[0]
        raise CheckpointError(f"{path}: weights do not fit the model of its config ({first_line})") from None
    return model.to(resolve_device(device)).eval(), cfg, meta
