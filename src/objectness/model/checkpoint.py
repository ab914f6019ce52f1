"""Checkpoints: written atomically, read with ``torch.load(weights_only=True)`` only.

A training checkpoint is a dict of tensors and plain Python values:
``model``, ``optimizer``, ``scheduler`` (state dicts), ``step``, ``bad_frames``,
``rng`` (one entry per process), ``config`` (the resolved config as a dict) and
``metadata`` (``version``, ``objectness_channel``). Shipped weights are
``model.safetensors`` with the config and metadata as JSON in its header.
"""
import errno
import json
import os
import pickle
from pathlib import Path

import torch

from .._version import __version__
from ..config import Config, ConfigError, from_dict, merge, to_dict, validate
from ..files import atomic_write

LAST = "last.pt"
WEIGHTS = "model.safetensors"
NOT_CHECKPOINTS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".mp4", ".avi", ".mov", ".webm", ".mkv")


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, unreadable or does not fit."""


def metadata(objectness_channel=None) -> dict:
    return {"version": __version__, "objectness_channel": objectness_channel}


def save_checkpoint(path, state: dict) -> None:
    """Write ``state`` so that a crash leaves either the old file or the new one, never half."""

    def write(tmp):
        with open(tmp, "wb") as f:
            try:
                torch.save(state, f)
            except RuntimeError as err:  # torch's writer reports a failed write (a full disk) so
                raise OSError(errno.EIO, f"the checkpoint could not be written, is the disk full? "
                                         f"({str(err).strip().splitlines()[-1]})") from None
            f.flush()
            os.fsync(f.fileno())

    atomic_write(path, write)


def load_checkpoint(path, map_location="cpu") -> dict:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError:
        raise CheckpointError(f"{path}: holds objects other than tensors and plain values; "
                              "refusing to unpickle it") from None
    except Exception as err:  # torch raises many types for a truncated or foreign file
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(err).__name__})") from None
    if not isinstance(state, dict) or "model" not in state or "config" not in state:
        raise CheckpointError(f"{path}: not an objectness checkpoint (no model weights and config)")
    return state


# Options added after a config was saved take the value that reproduces how it
# was trained, not today's default: the release-objective options (issue 13)
# default to the release's choice, but earlier runs used the other one.
BEFORE_RELEASE_OBJECTIVE = {
    "loss": {"grid": "image", "occlusion": "per_level", "ssim": "padded"},
    "model": {"motion": {"align_corners": False, "mask_resize": "area", "warp_flow": "recomposed"}},
}


def saved_config(config: dict) -> dict:
    """A saved config dict with the options it predates set to the behaviour it was trained with."""
    if "grid" in config.get("loss", {}):
        return config
    return merge(BEFORE_RELEASE_OBJECTIVE, config)


def config_of(state: dict, path) -> Config:
    try:
        return validate(from_dict(saved_config(state["config"])))
    except ConfigError as err:
        raise CheckpointError(f"{path}: its config does not fit this version ({err})") from None


def save_weights(path, model: torch.nn.Module, cfg: Config, meta: dict) -> None:
    """model.safetensors: the weights, with the config and metadata as JSON strings."""
    from safetensors.torch import save_file

    tensors = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    header = {"config": json.dumps(to_dict(cfg)), "metadata": json.dumps(meta)}
    atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata=header))


def read_weights(path: Path):
    """A .safetensors file's tensors, config dict and metadata (no pickle), or CheckpointError."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
            weights = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError) as err:
        raise CheckpointError(f"{path}: not a readable safetensors file ({err})") from None
    if "config" not in header:
        raise CheckpointError(f"{path}: no objectness config in its header")
    return weights, json.loads(header["config"]), json.loads(header.get("metadata", "{}"))


def weights_file(path: Path) -> Path:
    """A run folder means its model.safetensors, or its last.pt while training."""
    if path.is_dir():
        for name in (WEIGHTS, LAST):
            if (path / name).is_file():
                return path / name
        raise CheckpointError(f"{path}: no {WEIGHTS} or {LAST} in this folder")
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    if path.suffix.lower() in NOT_CHECKPOINTS:
        raise CheckpointError(f"{path}: an image or video, not a checkpoint (a run folder, last.pt or "
                              "model.safetensors)")
    return path


def load_model(path, map_location="cpu"):
    """(AMD in eval mode, Config, metadata) from a run folder, a .safetensors or a .pt file."""
    from .amd import AMD

    path = weights_file(Path(path))
    if path.suffix == ".safetensors":
        weights, config_dict, meta = read_weights(path)
        state = {"config": config_dict}
    else:
        state = load_checkpoint(path, map_location="cpu")
        weights, meta = state["model"], state.get("metadata", {})
    check_finite_weights(weights, path)
    cfg = config_of(state, path)
    model = AMD(cfg.model)
    try:
        model.load_state_dict(weights)
    except RuntimeError as err:
        first_line = str(err).strip().splitlines()[0]
        raise CheckpointError(f"{path}: weights do not fit the model of its config ({first_line})") from None
    return model.to(map_location).eval(), cfg, {**metadata(), **meta}


def check_finite_weights(weights: dict, path) -> None:
    """CheckpointError if a weight is NaN or infinite: such a model segments nothing, silently."""
    bad = [name for name, tensor in weights.items() if tensor.is_floating_point() and not torch.isfinite(tensor).all()]
    if bad:
        raise CheckpointError(f"{path}: {len(bad)} weight tensor(s) hold NaN or infinite values ({bad[0]}, ...); "
                              "the run that wrote them diverged")


def store_objectness_channel(path, channel: int, statistics=None) -> list:
    """Record the objectness channel (and the statistics it was chosen from) with a checkpoint.

    ``path`` is a .pt, a .safetensors or a run folder (both files there are
    updated). Each file is rewritten atomically; returns the files written.
    """
    path = Path(path)
    files = [path / name for name in (LAST, WEIGHTS) if (path / name).is_file()] if path.is_dir() else [path]
    if not files or not all(f.is_file() for f in files):
        raise CheckpointError(f"checkpoint not found: {path}")
    update = {"objectness_channel": int(channel)}
    if statistics is not None:
        update["channel_statistics"] = statistics
    for file in files:
        if file.suffix == ".safetensors":
            weights, config_dict, meta = read_weights(file)
            header = {"config": json.dumps(config_dict), "metadata": json.dumps({**meta, **update})}
            from safetensors.torch import save_file

            atomic_write(file, lambda tmp: save_file(weights, str(tmp), metadata=header))
        else:
            state = load_checkpoint(file)
            state["metadata"] = {**state.get("metadata", {}), **update}
            save_checkpoint(file, state)
    return files
