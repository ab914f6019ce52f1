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
    # Bilinear resize of the frames to input_size with align_corners=True
    # (released code) or False.
    align_corners: bool = True
    # Masks resized to each motion level: "bilinear" (align_corners=True,
    # released code) or "area" (area average when shrinking, else bilinear).
    mask_resize: str = "bilinear"
    # The flow that warps the second frame's features at level l (and enters
    # the estimator): "upsampled", the previous level's composed flow x2
    # (released code), or "recomposed" from the segment vectors and level-l masks.
    warp_flow: str = "upsampled"


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
    # Not the paper's (0 there): a per-segment fit of a classical flow
    # (flow_fit.py), weighted against view synthesis; needs OpenCV.
    flow_fit_weight: float = 0.0
    flow_fit_model: str = "affine"  # each segment's motion model: "affine" or "constant" (as eq. 5)
    # Not the paper's (0 there): binary cross-entropy of the objectness channel
    # against motion masks of the classical flow (motion_masks.py); needs OpenCV.
    motion_mask_weight: float = 0.0
    motion_mask_channel: int = 0  # the channel that learns the motion masks: the objectness channel
    # Not the paper's (0 there): binary cross-entropy of the objectness channel
    # against the mean objectness map of trained models (distill.py).
    distill_weight: float = 0.0
    distill_from: tuple = ()  # the teachers: run folders or weight files, each with its objectness channel
    distill_channel: int = 0  # the channel that learns the teachers' map: the objectness channel
    # Not the paper's (0 there): with the distillation, each frame's object (the
    # teachers' map as its alpha) pasted, moved and rescaled, onto another frame
    # of the batch; the channel learns the composite's map (distill.py).
    paste_weight: float = 0.0
    paste_scale_range: tuple = (0.7, 1.3)  # the pasted object's scale, U(low, high)
    # Weight of view synthesis (eq. 8), 1 in the paper; 0 trains f_A on the
    # flow fit alone, without running f_M (one process only).
    view_synthesis_weight: float = 1.0
    # Where the loss compares images: "motion", each motion level's composed
    # flow upsampled x4 onto the motion input's grid, loss at 1, 1/2, 1/4, ...
    # of the frames resized for f_M (released code); "image", the segment flow
    # composed on the frame grid at 1, 1/8, 1/16, ...
    grid: str = "motion"
    # "shared": occlusion found once at full resolution, nearest-resized to the
    # other levels (released code); "per_level": found again at every level.
    occlusion: str = "shared"
    # "masked": SSIM of the occlusion-masked images over valid 3x3 windows (no
    # padding), each term's mean divided by the mask's (released code);
    # "padded": reflect-padded SSIM of the images, then masked.
    ssim: str = "masked"

    @property
    def uses_classical_flow(self) -> bool:
        """Whether the objective reads each pair's classical flow (the flow fit or the motion masks)."""
        return bool(self.flow_fit_weight or self.motion_mask_weight)


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
    # Segmenting: the objectness map is the mean of f_A's maps at these multiples of the
    # test shorter edge, each upsampled to the image (multi-scale testing; [1.0] in the paper).
    test_scales: tuple = (1.0,)
    # Segmenting, not the paper's (0 there): the objectness map refined by the guided filter
    # with the image as guide (refine.py), in windows whose radius is this fraction of the
    # image's shorter edge, regularised by test_guided_eps (colours in 0..1).
    test_guided_radius: float = 0.0
    test_guided_eps: float = 0.001
    flow_cache: Optional[str] = None  # folder of cached classical flow (loss.flow_fit_weight, loss.motion_mask_weight); null = ~/.cache/objectness/flow
    scale_range: tuple = (0.96, 1.0)
    crop_size: tuple = (384, 384)
    hflip: bool = True
    portrait_to_landscape: bool = True
    # Not the paper's (0 there): brightness, contrast and saturation each scaled
    # by U(1 - j, 1 + j), the same for both frames of a pair.
    color_jitter: float = 0.0
    workers: int = 4
    # Decode every frame once into the training device's memory (uint8) and crop, flip and
    # resize there (gpu_data.py) instead of DataLoader workers; source may also be a frame pack (.npz).
    on_device: bool = False
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


def _preset_of_another_command(loaded: dict, cls, preset: str) -> str:
    """A hint for a preset of ``objectness finetune`` given to ``train`` (or the reverse), else ''."""
    other, command = (FinetuneConfig, "finetune") if cls is Config else (Config, "train")
    try:
        from_dict(loaded, other)
    except ConfigError:
        return ""
    return f"; '{preset}' is a preset of `objectness {command}`"


def load_config(preset: Optional[str] = None, overrides: Optional[list] = None, cls=Config):
    """Defaults, then the preset (name or YAML path), then ``key=value`` overrides; a ``cls`` (Config,
    FinetuneConfig)."""
    data = to_dict(cls())
    if preset is not None:
        path = resolve_preset(preset)
        try:
            loaded = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as err:
            raise ConfigError(f"{path}: not valid YAML ({err})") from None
        try:
            from_dict(loaded, cls)  # report unknown keys against the file, not the merge
        except ConfigError as err:
            raise ConfigError(f"{err}{_preset_of_another_command(loaded, cls, preset)}") from None
        data = merge(data, loaded)
    for text in overrides or []:
        update = parse_override(text)
        from_dict(update, cls)
        data = merge(data, update)
    return from_dict(data, cls)


def save_config(cfg: Config, path: Path) -> None:
    Path(path).write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))


@dataclass
class SemanticModelConfig:
    """f_A's backbone and FCN head (SPEC 1.1) with a fresh classifier for the dataset's classes (SPEC 2.4)."""

    appearance: AppearanceConfig = field(default_factory=AppearanceConfig)


@dataclass
class SemanticDataConfig:
    """A labelled semantic-segmentation set and its augmentation (mmsegmentation's VOC recipe)."""

    dataset: str = "voc"  # voc, camvid or folders
    root: Optional[str] = None
    # A split name, or several joined by '+' (camvid: train+val); null = the dataset's usual one
    # (training: voc train_aug, i.e. with SBD; camvid and folders train. evaluation: voc and folders val, camvid test).
    train_split: Optional[str] = None
    eval_split: Optional[str] = None
    classes_file: Optional[str] = None  # folders: the class names, one a line (null = ROOT/classes.txt)
    short_edge: int = 512  # training: shorter edge to short_edge x U(scale_range), then a random crop
    scale_range: tuple = (0.5, 2.0)
    crop_size: tuple = (512, 512)  # smaller images are padded (label: void)
    hflip: bool = True
    test_short_edge: Optional[int] = 512  # evaluation: shorter edge the network sees; null = the image's own
    workers: int = 4


@dataclass
class SemanticTrainConfig:
    """SGD with momentum and poly decay (SPEC 2.4)."""

    init: Optional[str] = None  # AMD weights whose backbone starts the run (run folder, .pt, .safetensors); null = scratch
    steps: int = 40_000
    batch_size: int = 16
    lr: float = 0.01
    min_lr: float = 1e-4
    poly_power: float = 0.9
    momentum: float = 0.9
    weight_decay: float = 5e-4
    amp: bool = True  # bf16 autocast on CUDA; CPU always runs fp32
    seed: int = 0
    device: str = "auto"
    checkpoint_every: int = 2000
    log_every: int = 20
    panel_every: int = 2000


@dataclass
class FinetuneConfig:
    """``objectness finetune``: semantic segmentation from AMD's appearance network (SPEC 2.4)."""

    model: SemanticModelConfig = field(default_factory=SemanticModelConfig)
    data: SemanticDataConfig = field(default_factory=SemanticDataConfig)
    train: SemanticTrainConfig = field(default_factory=SemanticTrainConfig)
