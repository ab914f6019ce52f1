"""Typed configuration with the paper's defaults (docs/method.md#training).

A config is a tree of dataclasses. Presets are YAML files in ``configs/``
that set some of the fields; anything else keeps the default written here.
Overrides from the command line are ``section.field=value`` strings whose
value is parsed as YAML (``train.steps=100``, ``loss.level_weights=[1,1,0,0]``).

Every config is checked here, and only here, when it is loaded (``load_config``,
a checkpoint's config, ``train`` and ``finetune`` given a Config in Python):
``from_dict`` checks keys and types, ``validate`` every value's range and the
options that must agree. The networks and losses call the check of their own
section when they are built directly.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union, get_args, get_origin, get_type_hints

import yaml

PRESET_DIR = Path(__file__).parent / "configs"


class ConfigError(ValueError):
    """A config file or override that cannot be applied."""


IMAGE_PRIORS = ("rbd", "rbd-contrast")  # the classical priors of loss.image_prior (data/saliency_prior.py)


@dataclass
class AppearanceConfig:
    """f_A: ResNet backbone (from scratch) and FCN head (docs/method.md#the-appearance-network)."""

    depth: int = 50  # 18, 34 or 50
    width: int = 64  # channels of the first residual stage (64 = standard ResNet)
    output_stride: int = 8  # 8, 16 or 32
    head_channels: int = 256
    head_dilation: int = 6
    dropout: float = 0.1
    zero_init_residual: bool = True


@dataclass
class MotionConfig:
    """f_M: PWC-Lite pyramid with segment flow at every level (docs/method.md#the-motion-network, #segment-flow)."""

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
    """View synthesis objective (docs/method.md#the-objective)."""

    l1_weight: float = 0.15
    ssim_weight: float = 0.85
    occlusion_threshold: float = 0.2  # range map below this = occluded
    level_weights: tuple = (1.0, 1.0, 1.0, 1.0)  # full resolution first
    smooth_weight: float = 0.0
    # Not the paper's (0 there): a per-segment fit of a classical flow
    # (objectives/flow_fit.py), weighted against view synthesis; needs OpenCV.
    flow_fit_weight: float = 0.0
    flow_fit_model: str = "affine"  # each segment's motion model: "affine" or "constant" (as eq. 5)
    # Not the paper's (0 there): binary cross-entropy of the objectness channel
    # against motion masks of the classical flow (objectives/motion_masks.py); needs OpenCV.
    motion_mask_weight: float = 0.0
    motion_mask_channel: int = 0  # the channel that learns the motion masks: the objectness channel
    # Not the paper's (0 there): binary cross-entropy of the objectness channel
    # against the mean objectness map of trained models (objectives/distillation.py).
    distill_weight: float = 0.0
    distill_from: tuple = ()  # the teachers: run folders or weight files, each with its objectness channel
    distill_channel: int = 0  # the channel that learns the teachers' map: the objectness channel
    # The targets of the distillation and of the still images sharpened around 0.5 before they are
    # learned: 0.5 + gain x (target - 0.5), clipped to 0..1; 1 leaves them as they are. Soft targets
    # teach soft maps, and a map binarised at 0.5 needs to be confident on either side of it.
    distill_gain: float = 1.0
    # Not the paper's (0 there): with the distillation, each frame's object (the
    # teachers' map as its alpha) pasted, moved and rescaled, onto another frame
    # of the batch; the channel learns the composite's map (objectives/distillation.py).
    paste_weight: float = 0.0
    paste_scale_range: tuple = (0.7, 1.3)  # the pasted object's scale, U(low, high)
    # Not the paper's (0 there): binary cross-entropy of the objectness channel (loss.distill_channel)
    # against each still image's target map (data.images; training/image_targets.py).
    image_weight: float = 0.0
    # The image target's share from the classical background-connectivity prior (data/saliency_prior.py);
    # the rest is the teachers' (loss.distill_from) objectness map. 1 = the prior alone.
    image_prior_weight: float = 0.5
    # Which classical prior (data/saliency_prior.py): "rbd", robust background detection, or
    # "rbd-contrast", RBD at three superpixel scales averaged with a centre-weighted region contrast.
    image_prior: str = "rbd"
    # Each pixel of a still image counted by its target's confidence |2 t - 1| (t before
    # loss.distill_gain): where the teachers and the prior disagree, or both are unsure, the
    # target is near 0.5 and teaches little; false counts every pixel the same.
    image_confidence: bool = False
    # Not the paper's (0 there): the still images' objects (their target map as the alpha) pasted onto
    # each other as loss.paste_weight pastes the video's (loss.paste_scale_range); the objectness channel
    # learns each composite's map by a binary cross-entropy of this weight (training/step.py).
    image_paste_weight: float = 0.0
    # Not the paper's (0 there): on the same composites, the pasted object moves by one random affine
    # motion and its new background by another; the masks fit that known flow as they fit a video's
    # classical flow (loss.flow_fit_model), with this weight (objectives/pasted_motion.py).
    image_motion_weight: float = 0.0
    # Not the paper's (0 there): during test-time adaptation, the objectness channel also learns the
    # unadapted model's own objectness maps (binary cross-entropy): an anchor, so that fitting the
    # video's motion does not move objectness to another channel (training/adapt.py).
    adapt_self_weight: float = 0.0
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
    """Unlabeled video and the paper's augmentation (docs/method.md#training)."""

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
    # with the image as guide (inference/refine.py), in windows whose radius is this fraction of the
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
    # Not the paper's (null there): a folder of unlabeled still images (searched recursively), each a
    # crop per step taught its cached target map (loss.image_weight; data/images.py).
    images: Optional[str] = None
    image_batch_size: int = 8  # still images per process and step, beside train.batch_size pairs
    # Brightness, contrast and saturation of each still image scaled by U(1 - j, 1 + j); its target is not.
    image_color_jitter: float = 0.4
    map_cache: Optional[str] = None  # folder of the still images' cached target maps; null = ~/.cache/objectness/maps
    # Processes that compute the still images' saliency prior (once; cached): null = one per CPU core
    # (shared among torchrun's processes on a machine).
    prior_workers: Optional[int] = None
    # Decode every frame once into the training device's memory (uint8) and crop, flip and
    # resize there (data/device_frames.py) instead of DataLoader workers; source may also be a frame pack (.npz).
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
    # bf16 autocast (the loss and its reductions in fp32), fp32, or auto: bf16 where the device computes
    # it natively (CUDA with bf16; a CPU with AVX512-BF16 or AMX), else fp32 (device.py). Saved configs
    # of before it hold train.amp instead: true reads as auto, false as fp32.
    precision: str = "auto"
    # The networks in the channels-last (NHWC) memory format: the same numbers, faster or slower by preset
    # and device (docs/benchmarks.md; with bf16 on an AMX CPU the paper's step 1.4x faster, cpu-small's slower).
    channels_last: bool = False
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
    data = _legacy_keys(data, names, prefix)
    kwargs = {}
    for key, value in data.items():
        path = f"{prefix}{key}"
        if key not in names:
            raise ConfigError(f"unknown config key '{path}' (known: {', '.join(sorted(names))})")
        kwargs[key] = _coerce(value, hints[key], path)
    return cls(**kwargs)


def _legacy_keys(data: dict, names: set, prefix: str) -> dict:
    """Keys of earlier versions, as what replaced them: ``train.amp`` (bf16 autocast on CUDA) is
    ``train.precision`` auto (true) or fp32 (false)."""
    if "amp" in data and "amp" not in names and "precision" in names:
        amp = data["amp"]
        if not isinstance(amp, bool):
            raise ConfigError(f"config key '{prefix}amp' expects true or false, got {amp!r} "
                              f"(it is {prefix}precision now: auto, bf16 or fp32)")
        data = {key: value for key, value in data.items() if key != "amp"}
        data.setdefault("precision", "auto" if amp else "fp32")
    return data


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
    return validate(from_dict(data, cls))


def save_config(cfg: Config, path: Path) -> None:
    Path(path).write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))


@dataclass
class SemanticModelConfig:
    """f_A's backbone and FCN head with a fresh classifier for the dataset's classes
    (docs/method.md#semantic-fine-tuning)."""

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
    """SGD with momentum and poly decay (docs/method.md#semantic-fine-tuning)."""

    init: Optional[str] = None  # AMD weights whose backbone starts the run (run folder, .pt, .safetensors); null = scratch
    steps: int = 40_000
    batch_size: int = 16
    lr: float = 0.01
    min_lr: float = 1e-4
    poly_power: float = 0.9
    momentum: float = 0.9
    weight_decay: float = 5e-4
    precision: str = "auto"  # bf16, fp32 or auto, as TrainConfig.precision
    seed: int = 0
    device: str = "auto"
    checkpoint_every: int = 2000
    log_every: int = 20
    panel_every: int = 2000


@dataclass
class FinetuneConfig:
    """``objectness finetune``: semantic segmentation from f_A (docs/method.md#semantic-fine-tuning)."""

    model: SemanticModelConfig = field(default_factory=SemanticModelConfig)
    data: SemanticDataConfig = field(default_factory=SemanticDataConfig)
    train: SemanticTrainConfig = field(default_factory=SemanticTrainConfig)


# ---------------------------------------------------------------- validation


def validate(cfg):
    """``cfg`` (a Config or a FinetuneConfig) if every value is in its range; else ConfigError naming the
    key, the range and the value. Returns ``cfg``."""
    if isinstance(cfg, FinetuneConfig):
        check_appearance(cfg.model.appearance, "model.appearance")
        _check_semantic_data(cfg.data)
        _check_schedule(cfg.train)
        _in_range("train.momentum", cfg.train.momentum, 0, 1, high_open=True)
        return cfg
    check_model(cfg.model)
    check_loss(cfg.loss, cfg.model)
    _check_data(cfg.data)
    _check_schedule(cfg.train)
    t = cfg.train
    if t.appearance_lr is not None:
        _positive("train.appearance_lr", t.appearance_lr)
    _non_negative("train.grad_clip", t.grad_clip)
    _non_negative("train.time_limit", t.time_limit)
    _at_least("train.stop_after", t.stop_after, 0)
    if cfg.data.on_device and cfg.loss.uses_classical_flow:
        raise ConfigError("loss.flow_fit_weight and loss.motion_mask_weight need classical flow, "
                          "which data.on_device does not load; set data.on_device=false")
    return cfg


def check_appearance(cfg: AppearanceConfig, prefix: str = "model.appearance") -> None:
    _one_of(f"{prefix}.depth", cfg.depth, (18, 34, 50))
    _one_of(f"{prefix}.output_stride", cfg.output_stride, (8, 16, 32))
    _at_least(f"{prefix}.width", cfg.width, 1)
    _at_least(f"{prefix}.head_channels", cfg.head_channels, 1)
    _at_least(f"{prefix}.head_dilation", cfg.head_dilation, 1)
    _in_range(f"{prefix}.dropout", cfg.dropout, 0, 1, high_open=True)


def check_model(cfg: ModelConfig) -> None:
    """f_A, f_M and the number of segments (docs/method.md#the-model)."""
    _at_least("model.num_segments", cfg.num_segments, 1)
    check_appearance(cfg.appearance)
    m = cfg.motion
    if len(m.pyramid_channels) < 3:
        raise ConfigError(f"model.motion.pyramid_channels: the motion pyramid needs at least 3 levels, "
                          f"got {len(m.pyramid_channels)}")
    for i, channels in enumerate(m.pyramid_channels):
        _at_least(f"model.motion.pyramid_channels[{i}]", channels, 1)
    _at_least("model.motion.search_range", m.search_range, 1)
    if m.input_size is not None:
        _pair("model.motion.input_size", m.input_size, least=2 ** len(m.pyramid_channels), integer=True)
    _one_of("model.motion.mask_source", m.mask_source, ("sampled", "target"))
    _one_of("model.motion.init", m.init, ("default", "kaiming"))
    _one_of("model.motion.mask_resize", m.mask_resize, ("bilinear", "area"))
    _one_of("model.motion.warp_flow", m.warp_flow, ("upsampled", "recomposed"))


def check_loss(cfg: LossConfig, model: Optional[ModelConfig] = None) -> None:
    """The objective's weights and options (docs/method.md#the-objective); with ``model``, the
    channels and levels it names are checked against the model's."""
    _one_of("loss.grid", cfg.grid, ("motion", "image"))
    _one_of("loss.occlusion", cfg.occlusion, ("shared", "per_level"))
    _one_of("loss.ssim", cfg.ssim, ("masked", "padded"))
    _one_of("loss.flow_fit_model", cfg.flow_fit_model, ("affine", "constant"))
    for key in ("l1_weight", "ssim_weight", "occlusion_threshold", "smooth_weight", "flow_fit_weight",
                "motion_mask_weight", "distill_weight", "paste_weight", "view_synthesis_weight", "image_weight",
                "image_paste_weight", "image_motion_weight", "adapt_self_weight"):
        _non_negative(f"loss.{key}", getattr(cfg, key))
    if not cfg.level_weights:
        raise ConfigError("loss.level_weights must hold at least one weight, got []")
    for i, weight in enumerate(cfg.level_weights):
        _non_negative(f"loss.level_weights[{i}]", weight)
    if cfg.view_synthesis_weight and not (cfg.l1_weight or cfg.ssim_weight):
        raise ConfigError("loss.l1_weight and loss.ssim_weight are both 0: view synthesis would compare nothing")
    if cfg.paste_weight and not cfg.distill_weight:
        raise ConfigError("loss.paste_weight pastes the objects of the teachers' maps: it needs loss.distill_weight > 0")
    _in_range("loss.image_prior_weight", cfg.image_prior_weight, 0, 1)
    if cfg.image_prior not in IMAGE_PRIORS:
        raise ConfigError(f"loss.image_prior must be one of {', '.join(IMAGE_PRIORS)}, got {cfg.image_prior!r}")
    if cfg.image_confidence and not cfg.image_weight:
        raise ConfigError("loss.image_confidence weighs the still images' pixels: it needs loss.image_weight > 0")
    for key in ("image_paste_weight", "image_motion_weight"):
        if getattr(cfg, key) and not cfg.image_weight:
            raise ConfigError(f"loss.{key} pastes the still images' objects: it needs loss.image_weight > 0")
    _in_range("loss.distill_gain", cfg.distill_gain, 1, 100)
    if not (cfg.view_synthesis_weight or cfg.flow_fit_weight or cfg.motion_mask_weight or cfg.distill_weight
            or cfg.image_weight):
        raise ConfigError("every term of the objective has weight 0 (loss.view_synthesis_weight, "
                          "loss.flow_fit_weight, loss.motion_mask_weight, loss.distill_weight, "
                          "loss.image_weight): nothing to learn")
    scales, pasting = cfg.paste_scale_range, cfg.paste_weight or cfg.image_paste_weight or cfg.image_motion_weight
    if pasting and not (len(scales) == 2 and all(_is_number(v) for v in scales)
                        and 0 < scales[0] <= scales[1] < math.inf):
        raise ConfigError(f"loss.paste_scale_range must be [low, high] with 0 < low <= high, got {list(scales)}")
    if cfg.distill_weight and cfg.motion_mask_weight and cfg.distill_channel != cfg.motion_mask_channel:
        raise ConfigError("loss.distill_channel and loss.motion_mask_channel teach two channels to be the "
                          "objectness channel; make them equal")
    if model is None:
        return
    for key, weight in (("motion_mask_channel", cfg.motion_mask_weight),
                        ("distill_channel", cfg.distill_weight or cfg.image_weight)):
        channel = getattr(cfg, key)
        if weight and not 0 <= channel < model.num_segments:
            raise ConfigError(f"loss.{key} {channel} is not one of the {model.num_segments} mask channels "
                              "(model.num_segments)")
    levels = len(model.motion.pyramid_channels) - 1
    if cfg.view_synthesis_weight and len(cfg.level_weights) > levels:
        raise ConfigError(f"loss.level_weights has {len(cfg.level_weights)} entries but the motion pyramid "
                          f"gives {levels} flow levels (model.motion.pyramid_channels)")


def check_test_scales(scales) -> tuple:
    """The test scales (``data.test_scales``, ``--scales``) as a tuple of positive floats, or a clear error."""
    scales = tuple(scales) if isinstance(scales, (list, tuple)) else (scales,)
    if not scales or not all(_is_number(s) and 0 < s < math.inf for s in scales):
        raise ConfigError(f"test scales (data.test_scales) must be positive numbers, got {list(scales)}")
    return tuple(float(s) for s in scales)


def check_guided_filter(radius, eps) -> tuple:
    """(radius, eps) of the guided filter as floats, or a clear error: radius a fraction of the shorter
    edge in [0, 0.5] (0 = off), eps > 0."""
    for name, value in (("radius", radius), ("eps", eps)):
        if not _is_number(value):
            raise ConfigError(f"guided filter {name} must be a number, got {value!r}")
    if not 0 <= radius <= 0.5:
        raise ConfigError(f"guided filter radius (data.test_guided_radius) must be a fraction of the shorter "
                          f"edge in 0..0.5 (0 = off), got {radius}")
    if not 0 < eps < math.inf:
        raise ConfigError(f"guided filter eps (data.test_guided_eps) must be positive, got {eps}")
    return float(radius), float(eps)


def check_synthetic(cfg: SyntheticConfig, prefix: str = "data.synthetic") -> None:
    _at_least(f"{prefix}.num_videos", cfg.num_videos, 1)
    _at_least(f"{prefix}.num_frames", cfg.num_frames, 1)
    _at_least(f"{prefix}.height", cfg.height, 8)
    _at_least(f"{prefix}.width", cfg.width, 8)
    if not 0 <= cfg.min_objects <= cfg.max_objects:
        raise ConfigError(f"{prefix}: need 0 <= min_objects <= max_objects, got {cfg.min_objects}, {cfg.max_objects}")
    for key in ("max_speed", "camera_speed", "camera_zoom"):
        _non_negative(f"{prefix}.{key}", getattr(cfg, key))
    _pair(f"{prefix}.object_size", cfg.object_size, least=0, high=0.5, ordered=True, low_open=True)


def _check_data(d: DataConfig) -> None:
    if not isinstance(d.source, str) or not d.source.strip():
        raise ConfigError(f"config key 'data.source' must name the training data, got {d.source!r}")
    _at_least("data.gap", d.gap, 1)
    _at_least("data.short_edge", d.short_edge, 8)
    if d.test_short_edge is not None:
        _at_least("data.test_short_edge", d.test_short_edge, 8)
    check_test_scales(d.test_scales)
    check_guided_filter(d.test_guided_radius, d.test_guided_eps)
    _pair("data.scale_range", d.scale_range, least=0, ordered=True, low_open=True)
    _pair("data.crop_size", d.crop_size, least=8, integer=True)
    _in_range("data.color_jitter", d.color_jitter, 0, 1, high_open=True)
    _at_least("data.workers", d.workers, 0)
    _at_least("data.image_batch_size", d.image_batch_size, 1)
    if d.prior_workers is not None:
        _at_least("data.prior_workers", d.prior_workers, 1)
    _in_range("data.image_color_jitter", d.image_color_jitter, 0, 1, high_open=True)
    if d.images is not None and (not isinstance(d.images, str) or not d.images.strip()):
        raise ConfigError(f"config key 'data.images' must name a folder of images or be null, got {d.images!r}")
    check_synthetic(d.synthetic)


def _check_semantic_data(d: SemanticDataConfig) -> None:
    _one_of("data.dataset", d.dataset, ("voc", "camvid", "folders"))
    _at_least("data.short_edge", d.short_edge, 8)
    _pair("data.scale_range", d.scale_range, least=0, ordered=True, low_open=True)
    _pair("data.crop_size", d.crop_size, least=8, integer=True)
    if d.test_short_edge is not None:
        _at_least("data.test_short_edge", d.test_short_edge, 8)
    _at_least("data.workers", d.workers, 0)


def _check_schedule(t) -> None:
    """What TrainConfig and SemanticTrainConfig share: steps, batch, lr schedule, seed, intervals."""
    _at_least("train.steps", t.steps, 1)
    _at_least("train.batch_size", t.batch_size, 1)
    _positive("train.lr", t.lr)
    _non_negative("train.min_lr", t.min_lr)
    _non_negative("train.poly_power", t.poly_power)
    _non_negative("train.weight_decay", t.weight_decay)
    _one_of("train.precision", t.precision, ("auto", "bf16", "fp32"))
    _in_range("train.seed", t.seed, 0, 2**32 - 1)
    for key in ("checkpoint_every", "log_every", "panel_every"):
        _at_least(f"train.{key}", getattr(t, key), 1)
    if not isinstance(t.device, str) or not t.device:
        raise ConfigError(f"config key 'train.device' must be auto, cpu, cuda, cuda:1, ..., got {t.device!r}")


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and not math.isnan(value)


def _at_least(key: str, value, low: int) -> None:
    if not (isinstance(value, int) and not isinstance(value, bool) and value >= low):
        raise ConfigError(f"config key '{key}' must be an integer of at least {low}, got {value!r}")


def _positive(key: str, value) -> None:
    if not (_is_number(value) and 0 < value < math.inf):
        raise ConfigError(f"config key '{key}' must be a positive finite number, got {value!r}")


def _non_negative(key: str, value) -> None:
    if not (_is_number(value) and 0 <= value < math.inf):
        raise ConfigError(f"config key '{key}' must be a finite number of at least 0, got {value!r}")


def _in_range(key: str, value, low, high, high_open: bool = False) -> None:
    inside = _is_number(value) and low <= value and (value < high if high_open else value <= high)
    if not inside:
        raise ConfigError(f"config key '{key}' must be in [{low}, {high}{')' if high_open else ']'}, got {value!r}")


def _one_of(key: str, value, allowed: tuple) -> None:
    if value not in allowed or isinstance(value, bool):
        raise ConfigError(f"config key '{key}' must be one of {', '.join(map(str, allowed))}; got {value!r}")


def _pair(key: str, value, least, high=math.inf, integer: bool = False, ordered: bool = False,
          low_open: bool = False) -> None:
    """A [first, second] pair of numbers in range: integers of at least ``least`` with ``integer``,
    else numbers above (``low_open``) or at least ``least`` and at most ``high``; ``ordered``: first <= second."""
    def fits(v):
        if integer:
            return isinstance(v, int) and not isinstance(v, bool) and v >= least
        return _is_number(v) and (v > least if low_open else v >= least) and v <= high

    ok = isinstance(value, (list, tuple)) and len(value) == 2 and all(fits(v) for v in value)
    if ok and ordered:
        ok = value[0] <= value[1]
    if not ok:
        kind = f"integers of at least {least}" if integer else (
            f"numbers {'above' if low_open else 'of at least'} {least}" + (f" and at most {high}" if high < math.inf else ""))
        order = ", the first at most the second" if ordered else ""
        raise ConfigError(f"config key '{key}' must be a pair of {kind}{order}, got {value!r}")
