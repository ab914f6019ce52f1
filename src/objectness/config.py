"""Typed configuration with the paper's defaults (SPEC section 1).

A config is a tree of dataclasses. Presets are YAML files in ``configs/``
that set some of the fields; anything else keeps the default written here.
Overrides from the command line are ``section.field=value`` strings whose
value is parsed as YAML (``train.steps=100``, ``loss.level_weights=[1,1,0,0]``).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union, get_args, get_origin, get_type_hints

import yaml

PRESET_DIR = Path(__file__).parent / "configs"


class ConfigError(ValueError):
    """A config file or override that cannot be applied."""


@dataclass
class AppearanceConfig:
    """f_A: ResNet backbone (from scratch) and FCN head (SPEC 1.1)."""

    depth: int = 50  # 18, 34 or 50
    width: int = 64  # channels of the first residual stage (64 = standard ResNet)
    output_stride: int = 8  # 8, 16 or 32
    head_channels: int = 256
    head_dilation: int = 6
    dropout: float = 0.1
    zero_init_residual: bool = True


@dataclass
class MotionConfig:
    """f_M: PWC-Lite pyramid with segment flow at every level (SPEC 1.2, 1.3)."""

    pyramid_channels: tuple = (16, 32, 64, 96, 128, 192)  # 1/2 ... 1/64
    search_range: int = 4
    # Frames are resized to this (H, W) before the flow network; null = crop size.
    input_size: Optional[tuple] = (384, 640)
    # Whose masks build the segment flow that samples a frame: "sampled"
    # (released code and eq. 7: the frame being sampled) or "target".
    mask_source: str = "sampled"
    # "default": PyTorch's initialisation (released code); "kaiming": He-normal
    # for LeakyReLU with zero biases, which keeps the cost volume informative
    # from the first step and speeds up short CPU runs.
    init: str = "default"


@dataclass
class ModelConfig:
    num_segments: int = 5  # c
    appearance: AppearanceConfig = field(default_factory=AppearanceConfig)
    motion: MotionConfig = field(default_factory=MotionConfig)


@dataclass
class LossConfig:
    """View synthesis objective (SPEC 1.4)."""

    l1_weight: float = 0.15
    ssim_weight: float = 0.85
    occlusion_threshold: float = 0.2  # range map below this = occluded
    level_weights: tuple = (1.0, 1.0, 1.0, 1.0)  # full resolution first
    smooth_weight: float = 0.0


@dataclass
class SyntheticConfig:
    """Procedural videos with ground-truth masks (the demo's data, the tests' fixture)."""

    num_videos: int = 64
    num_frames: int = 12
    height: int = 128
    width: int = 128
    min_objects: int = 1
    max_objects: int = 3
    max_speed: float = 4.0  # pixels per frame, objects
    camera_speed: float = 1.5  # pixels per frame, background
    camera_zoom: float = 0.01  # largest relative zoom per frame
    object_size: tuple = (0.1, 0.25)  # object radius as a fraction of the shorter side
    seed: int = 0


@dataclass
class DataConfig:
    """Unlabeled video and the paper's augmentation (SPEC 1.5)."""

    # A folder of frame folders, a DAVIS root, a folder of video files,
    # one video file, or "synthetic".
    source: str = "synthetic"
    davis_resolution: Optional[str] = None  # null = the only / largest one present
    davis_split: Optional[str] = "train"  # an ImageSets list; null = every sequence
    gap: int = 1  # temporal distance between the two frames of a pair
    short_edge: int = 400
    test_short_edge: Optional[int] = None  # segmenting: shorter edge in pixels; null = 0.98 x short_edge (released code)
    scale_range: tuple = (0.96, 1.0)
    crop_size: tuple = (384, 384)
    hflip: bool = True
    portrait_to_landscape: bool = True
    workers: int = 4
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)


@dataclass
class TrainConfig:
    steps: int = 400_000
    batch_size: int = 2  # pairs per process and step
    lr: float = 1e-4
    appearance_lr: Optional[float] = None  # peak lr of f_A if it should differ from train.lr (not the paper's)
    min_lr: float = 1e-6
    weight_decay: float = 1e-6
    poly_power: float = 0.9
    grad_clip: float = 0.0  # max gradient norm; 0 = off
    amp: bool = True  # bf16 autocast on CUDA; CPU always runs fp32
    seed: int = 0
    device: str = "auto"  # auto, cpu, cuda, cuda:1, ...
    checkpoint_every: int = 5000
    log_every: int = 20
    panel_every: int = 1000
    time_limit: float = 0.0  # minutes; stop (with a checkpoint) once exceeded; 0 = no limit
    stop_after: int = 0  # stop (with a checkpoint) after this many steps, lr still on the train.steps schedule; 0 = off
    init: Optional[str] = None  # start from these weights (run folder, last.pt, .safetensors); optimizer and lr start afresh


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


def to_dict(cfg) -> dict:
    """Plain nested dict (tuples as lists) for YAML, JSON and checkpoints."""
    return _plain(dataclasses.asdict(cfg))


def _plain(value):
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def from_dict(data: dict, cls=Config, prefix: str = ""):
    """Build ``cls`` from a nested dict; unknown keys and wrong types raise ConfigError."""
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix or 'config'}: expected a mapping, got {data!r}")
    hints = get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        path = f"{prefix}{key}"
        if key not in names:
            raise ConfigError(f"unknown config key '{path}' (known: {', '.join(sorted(names))})")
        kwargs[key] = _coerce(value, hints[key], path)
    return cls(**kwargs)


def _coerce(value, hint, path: str):
    if dataclasses.is_dataclass(hint):
        return from_dict(value, hint, prefix=path + ".")
    origin, args = get_origin(hint), get_args(hint)
    if origin is Union:  # Optional[X]
        if value is None:
            return None
        return _coerce(value, next(a for a in args if a is not type(None)), path)
    if hint is tuple or origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"config key '{path}' expects a list, got {value!r}")
        return tuple(value)
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"config key '{path}' expects true or false, got {value!r}")
        return value
    if hint is float:
        try:  # YAML reads 1e-3 (no dot) as a string
            if not isinstance(value, bool):
                return float(value)
        except (TypeError, ValueError):
            pass
        raise ConfigError(f"config key '{path}' expects a number, got {value!r}")
    if hint in (int, str) and not (isinstance(value, hint) and not isinstance(value, bool)):
        raise ConfigError(f"config key '{path}' expects {hint.__name__}, got {value!r}")
    return value


def merge(base: dict, update: dict) -> dict:
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def parse_override(text: str) -> dict:
    """``a.b.c=value`` -> ``{"a": {"b": {"c": value}}}`` with the value parsed as YAML."""
    if "=" not in text:
        raise ConfigError(f"override '{text}' must look like section.key=value")
    key, raw = text.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as err:
        raise ConfigError(f"override '{text}': value is not valid YAML ({err})") from None
    nested: Any = value
    for part in reversed(key.strip().split(".")):
        nested = {part: nested}
    return nested


def resolve_preset(name_or_path: str) -> Path:
    """A preset name (``paper``) or a path to a YAML file."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        return path
    preset = PRESET_DIR / f"{name_or_path}.yaml"
    if not preset.is_file():
        known = ", ".join(sorted(p.stem for p in PRESET_DIR.glob("*.yaml")))
        raise ConfigError(f"no preset named '{name_or_path}' (presets: {known})")
    return preset


def load_config(preset: Optional[str] = None, overrides: Optional[list] = None) -> Config:
    """Defaults, then the preset (name or YAML path), then ``key=value`` overrides."""
    data = to_dict(Config())
    if preset is not None:
        path = resolve_preset(preset)
        try:
            loaded = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as err:
            raise ConfigError(f"{path}: not valid YAML ({err})") from None
        from_dict(loaded)  # report unknown keys against the file, not the merge
        data = merge(data, loaded)
    for text in overrides or []:
        update = parse_override(text)
        from_dict(update)
        data = merge(data, update)
    return from_dict(data)


def save_config(cfg: Config, path: Path) -> None:
    Path(path).write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
