"""``objectness bench``: how fast AMD trains, segments and adapts on this machine.

Random weights and random inputs. Every time is a median over repeated calls
after warm-up, with the device synchronised around each call. Training and f_A
are measured in fp32 and in bf16 autocast, side by side in one run, with their
ratio. FLOPs come from torch.utils.flop_counter and are set against the peak
measured in the same run, in the dtype of the measurement: the best rate of
several matmuls and convolutions and of every convolution the benched models
run, each timed alone (peak_kernels, model_kernels), so that no kernel of ours
outruns it.

    configs = load_configs(["cpu-small"], ["train.batch_size=4"])
    result = benchmark(configs, "cpu", BenchOptions(sections=("train",)))
    print(format_report(result))
"""
from __future__ import annotations

import dataclasses
import datetime
import functools
import json
import os
import platform
import statistics
import sys
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch
import torch.nn.functional as F
import torchvision
from torch.utils.flop_counter import FlopCounterMode
from tqdm import tqdm

from .._version import __version__
from ..config import (
    Config,
    ConfigError,
    check_guided_filter,
    check_test_scales,
    load_config,
    to_dict,
)
from ..data.device_frames import DeviceFrames, DevicePairLoader
from ..data.pairs import build_pair_dataset
from ..data.synthetic import panning_video
from ..device import autocast, memory_format, resolve_device, resolve_precision
from ..files import write_json
from ..inference.segmenter import BATCH_SIZE, Segmenter, segment_video
from ..inference.sizing import inference_short_edge, inference_size
from ..model.amd import AMD
from ..training.adapt import adapt
from ..training.step import make_optimizer, optimisation_step, training_step
from ..training.train import pair_loader

SECTIONS = ("train", "infer", "adapt", "loader")
PRECISIONS = ("fp32", "bf16")
DEFAULT_PRESETS = ("paper", "cpu-small")
FRAME_480P = (480, 854)  # (H, W) of a DAVIS 480p frame
PAPER_ADAPT_STEPS = 100  # test-time adaptation steps per video in the paper
LOADER_BATCHES = 20
TOP_OPS = 15


@dataclass
class BenchOptions:
    sections: tuple = SECTIONS
    repeats: int = 3  # timed calls; the median is reported
    warmup: int = 1  # untimed calls first
    adapt_steps: Optional[int] = None  # measured adaptation steps; None: 2 on CPU, 100 on CUDA
    video_frames: int = 8  # frames of the synthetic 480p video
    infer_batch: Optional[int] = None  # images per f_A call; None: 1 on CPU, segment's batch on CUDA
    matmul_size: Optional[int] = None  # side of the peak's largest square matmul; None: 2048 on CPU, 8192 on CUDA
    data: Optional[str] = None  # data.source of the loader section; None skips it
    profile: Optional[Path] = None  # profile training too; chrome traces beside this path (see trace_path)
    precisions: tuple = PRECISIONS  # training and f_A measured in each

    def __post_init__(self):
        unknown = set(self.sections) - set(SECTIONS)
        if unknown:
            raise ConfigError(f"bench: unknown section(s) {', '.join(sorted(unknown))} (sections: {', '.join(SECTIONS)})")
        if not self.precisions or set(self.precisions) - set(PRECISIONS):
            raise ConfigError(f"bench: precisions must be among {', '.join(PRECISIONS)}, got {list(self.precisions)}")
        minimum = {"repeats": 1, "warmup": 0, "adapt_steps": 1, "video_frames": 2, "infer_batch": 1, "matmul_size": 1}
        for name, least in minimum.items():
            value = getattr(self, name)
            if value is not None and value < least:
                raise ConfigError(f"bench: {name.replace('_', '-')} must be at least {least}, got {value}")


# ---------------------------------------------------------------- measurement helpers


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_seconds(fn, device: torch.device, repeats: int = 3, warmup: int = 1) -> float:
    """Median wall time of ``fn()`` over ``repeats`` calls after ``warmup`` untimed ones."""
    return statistics.median(wall_times(fn, device, repeats, warmup))


def best_seconds(fn, device: torch.device, repeats: int = 3, warmup: int = 1) -> float:
    """Shortest wall time of ``fn()`` over ``repeats`` calls after ``warmup``: a peak is the best seen."""
    return min(wall_times(fn, device, repeats, warmup))


def wall_times(fn, device: torch.device, repeats: int, warmup: int) -> list:
    """Seconds of each of ``repeats`` calls of ``fn()``, synchronised, after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    synchronize(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return times


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return
    try:  # Linux: restart the process's RSS high-water mark, which getrusage reports
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def peak_memory(device: torch.device) -> int:
    """Bytes: CUDA memory allocated by tensors, or the process's RSS high-water mark on CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device)
    import resource  # Unix only

    max_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return max_rss if sys.platform == "darwin" else max_rss * 1024  # bytes on macOS, KiB on Linux


def count_flops(fn) -> int:
    """FLOPs of the matmuls and convolutions that ``fn()`` runs, backward included (a multiply-add is 2)."""
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def peak_kernels(size: int) -> dict:
    """The kernels whose best rate is the peak, sized from ``size`` (the side of the largest
    square matmul; 2048 on CPU): name -> (operation, shapes of its random inputs).

    One square matmul alone under-measures: oneDNN's convolutions outran a 2048^3 fp32
    matmul by 10% on an AVX-512 CPU (issue 12). So: square matmuls of two sizes, a wide
    one with a short inner dimension (a 1x1 convolution's shape), and 3x3 and 1x1
    convolutions at ResNet's channel counts, all in the dtype of the run.
    """
    s = max(size, 32)
    c, hw = s // 8, max(s // 32, 4)  # 256 channels at 64 x 64 for s = 2048
    return {
        f"matmul {s}x{s}x{s}": (torch.mm, [(s, s), (s, s)]),
        f"matmul {s // 2}x{s // 2}x{s // 2}": (torch.mm, [(s // 2, s // 2), (s // 2, s // 2)]),
        f"matmul {4 * s}x{s // 4}x{s}": (torch.mm, [(4 * s, s // 4), (s // 4, s)]),
        f"conv 3x3 {c}->{c} at 4x{hw}x{hw}": (_conv, [(4, c, hw, hw), (c, c, 3, 3)]),
        f"conv 3x3 {c // 4}->{c // 4} at 4x{2 * hw}x{2 * hw}": (_conv, [(4, c // 4, 2 * hw, 2 * hw), (c // 4, c // 4, 3, 3)]),
        f"conv 1x1 {2 * c}->{2 * c} at 4x{hw}x{hw}": (_conv, [(4, 2 * c, hw, hw), (2 * c, 2 * c, 1, 1)]),
    }


def _conv(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.conv2d(x, weight, padding=weight.shape[-1] // 2)


def model_kernels(model: torch.nn.Module, *inputs) -> dict:
    """Every distinct convolution ``model(*inputs)`` runs, as peak_kernels gives kernels: name ->
    (operation, shapes). Timed alone, the model's own layers bound what the model can reach
    (oneDNN runs some shapes faster than any generic kernel: f_A measured 112% of them on an
    AVX-512 CPU)."""
    found = {}

    def record(module, args, output):
        x = args[0]
        channels_last = x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
        key = (tuple(x.shape), tuple(module.weight.shape), module.stride, module.padding, module.dilation,
               module.groups, channels_last)
        if key not in found:
            found[key] = (functools.partial(F.conv2d, stride=module.stride, padding=module.padding,
                                            dilation=module.dilation, groups=module.groups),
                          [tuple(x.shape), tuple(module.weight.shape)],
                          torch.channels_last if channels_last else torch.contiguous_format)

    hooks = [m.register_forward_hook(record) for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    try:
        with torch.no_grad():
            model(*inputs)
    finally:
        for hook in hooks:
            hook.remove()
    return {f"{type(model).__name__} conv {k[1][1] * k[5]}->{k[1][0]} {k[1][2]}x{k[1][3]} stride {k[2][0]} "
            f"dilation {k[4][0]} at {'x'.join(map(str, k[0]))}{', channels last' if k[6] else ''}": value
            for k, value in found.items()}


def measure_peak(device: torch.device, dtype: torch.dtype, size: int, repeats: int = 3, warmup: int = 1,
                 extra_kernels: Optional[dict] = None) -> dict:
    """The best FLOP/s of peak_kernels and ``extra_kernels`` (the benched models' own convolutions,
    model_kernels) in ``dtype``: each kernel's FLOPs counted as the model's are (FlopCounterMode),
    its fastest of ``repeats`` timed calls after ``warmup``."""
    calls = 10 if device.type == "cuda" else 1  # a CUDA kernel is too short to time alone
    kernels = {}
    extra_kernels = extra_kernels or {}
    for name, (operation, shapes, *layout) in {**peak_kernels(size), **extra_kernels}.items():
        layout = layout[0] if layout else torch.contiguous_format  # model_kernels' give their memory format
        inputs = [torch.randn(shape, device=device, dtype=dtype) for shape in shapes]
        inputs = [x.contiguous(memory_format=layout) if x.dim() == 4 else x for x in inputs]
        flops = count_flops(lambda: operation(*inputs))  # also the first warm-up call

        def run():
            for _ in range(calls):
                operation(*inputs)

        seconds = best_seconds(run, device, repeats, max(warmup - 1, 0)) / calls
        kernels[name] = {"flops": flops, "seconds": seconds, "flops_per_s": flops / seconds}
        del inputs
    best = max(kernels, key=lambda name: kernels[name]["flops_per_s"])
    own = f" ({len(extra_kernels)} of them the benched models' own layers)" if extra_kernels else ""
    return {"dtype": str(dtype).removeprefix("torch."), "size": size, "flops_per_s": kernels[best]["flops_per_s"],
            "best": best, "kernels": kernels,
            "method": f"best of {len(kernels)} matmuls and convolutions{own} in {str(dtype).removeprefix('torch.')}, "
                      f"each timed alone, the fastest of {repeats} calls"}


def run_dtype(precision: str) -> torch.dtype:
    """The dtype a measurement computes in: bf16 under autocast, else float32."""
    return torch.bfloat16 if precision == "bf16" else torch.float32


def achieved(flops: int, seconds: float, peak: Optional[dict]) -> dict:
    """FLOP/s and its fraction of ``peak`` (the peak of the measurement's dtype)."""
    rate = flops / seconds
    return {"flops_per_s": rate, "peak_fraction": rate / peak["flops_per_s"] if peak else None}


def peak_of(peaks: dict, dtype: torch.dtype) -> Optional[dict]:
    return peaks.get(str(dtype).removeprefix("torch."))


# ---------------------------------------------------------------- the sections


def build_model(cfg: Config, device: torch.device) -> AMD:
    torch.manual_seed(0)
    return memory_format(AMD(cfg.model).to(device), cfg.train.channels_last)


def preset_precision(cfg: Config, device: torch.device) -> str:
    """The precision ``cfg`` trains and segments in on ``device`` (train.precision, auto resolved)."""
    return resolve_precision(cfg.train.precision, device, quiet=True)


def train_step_fn(model: AMD, cfg: Config, device: torch.device, precision: str):
    """One step as train.train runs it, on a fixed batch of random pairs (B, 2, 3, H, W) and, for an
    objective that reads classical flow, random flows (B, 2, 2, H, W), in ``precision``.
    Returns (step, optimizer, frames, flows)."""
    optimizer, _ = make_optimizer(model, cfg.train)
    frames = torch.rand(cfg.train.batch_size, 2, 3, *cfg.data.crop_size, device=device)
    flows = None
    if cfg.loss.uses_classical_flow:
        flows = 3 * torch.randn(cfg.train.batch_size, 2, 2, *cfg.data.crop_size, device=device)
    def step():
        return optimisation_step(model, optimizer, frames, cfg, precision, flows)[0]

    return step, optimizer, frames, flows


def bench_train(cfg: Config, device: torch.device, options: BenchOptions, peaks: dict) -> dict:
    """A training step in each precision, from the same weights and batch; their ratio."""
    result = {"precision": preset_precision(cfg, device)}
    for precision in options.precisions:
        step = train_step_fn(build_model(cfg, device).train(), cfg, device, precision)[0]
        reset_peak_memory(device)
        flops = count_flops(step)  # also the first warm-up step
        seconds = median_seconds(step, device, options.repeats, max(options.warmup - 1, 0))
        result[precision] = {"batch_size": cfg.train.batch_size, "crop_size": list(cfg.data.crop_size),
                             "step_s": seconds, "pairs_per_s": cfg.train.batch_size / seconds, "flops_per_step": flops,
                             **achieved(flops, seconds, peak_of(peaks, run_dtype(precision))),
                             "peak_memory_bytes": peak_memory(device)}
    return _with_speedup(result, "step_s")


def _with_speedup(result: dict, key: str) -> dict:
    """``bf16_speedup``: fp32's time over bf16's, where both were measured."""
    if "fp32" in result and "bf16" in result:
        result["bf16_speedup"] = result["fp32"][key] / result["bf16"][key]
    return result


def infer_batch(options: BenchOptions, device: torch.device) -> int:
    return options.infer_batch or (BATCH_SIZE if device.type == "cuda" else 1)


def bench_infer(cfg: Config, device: torch.device, options: BenchOptions, peaks: dict) -> dict:
    """f_A alone, eval, no grad: at 384 x 384, and at a 480p frame resized as ``objectness segment`` does."""
    appearance = build_model(cfg, device).appearance.eval()
    batch = infer_batch(options, device)
    sizes = {"384x384": (384, 384), "480p": inference_size(*FRAME_480P, inference_short_edge(cfg))}
    results = {}
    for name, size in sizes.items():
        images = torch.rand(batch, 3, *size, device=device)
        results[name] = {"precision": preset_precision(cfg, device)}
        for precision in options.precisions:
            @torch.no_grad()
            def forward():
                with autocast(device, precision):
                    return appearance(images)

            reset_peak_memory(device)
            flops = count_flops(forward) // batch  # also the first warm-up call
            seconds = median_seconds(forward, device, options.repeats, max(options.warmup - 1, 0)) / batch
            results[name][precision] = {
                "input_size": list(size), "batch": batch, "s_per_image": seconds, "images_per_s": 1 / seconds,
                "flops_per_image": flops, **achieved(flops, seconds, peak_of(peaks, run_dtype(precision))),
                "peak_memory_bytes": peak_memory(device)}
        _with_speedup(results[name], "s_per_image")
    results["480p"]["frame_size"] = list(FRAME_480P)
    return results


def bench_adapt(cfg: Config, device: torch.device, options: BenchOptions, peaks: dict) -> dict:
    """segment.adapt on a synthetic 480p video, then segmenting its frames with the adapted copy."""
    steps = options.adapt_steps or (PAPER_ADAPT_STEPS if device.type == "cuda" else 2)
    video = panning_video(options.video_frames, FRAME_480P)
    # Segmenting at every test scale, with the guided filter where the preset has one, as segment does.
    precision = preset_precision(cfg, device)
    segmenter = Segmenter(build_model(cfg, device).eval(), cfg, 0, device, inference_short_edge(cfg),
                          check_test_scales(cfg.data.test_scales),
                          *check_guided_filter(cfg.data.test_guided_radius, cfg.data.test_guided_eps), precision)
    if options.warmup:
        adapt(segmenter, video, options.warmup, progress=False)
    reset_peak_memory(device)
    start = time.perf_counter()
    adapted = adapt(segmenter, video, steps, progress=False)
    synchronize(device)
    per_step = (time.perf_counter() - start) / steps  # the copy of the model is spread over the steps
    memory = peak_memory(device)
    start = time.perf_counter()
    segment_video(adapted, video, progress=False)
    segment_s = time.perf_counter() - start
    return {"frame_size": list(FRAME_480P), "frames": len(video), "precision": precision,
            "steps_measured": steps, "s_per_step": per_step,
            f"s_for_{PAPER_ADAPT_STEPS}_steps": per_step * PAPER_ADAPT_STEPS,
            "projected": steps < PAPER_ADAPT_STEPS, "segment_s": segment_s, "s_per_frame": segment_s / len(video),
            "peak_memory_bytes": memory}


def bench_loader(cfg: Config, device: torch.device, options: BenchOptions, peaks: dict) -> dict:
    """Pairs per second that the training loader delivers from ``options.data``, onto the device:
    the DataLoader's workers, or with data.on_device the pairs made on the device (data/device_frames.py)."""
    batches = LOADER_BATCHES
    warmup = max(options.warmup, 1)  # the first batch waits for the workers to start
    cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, source=options.data),
                              train=dataclasses.replace(cfg.train, steps=warmup + batches))
    if cfg.data.on_device:
        loader = iter(DevicePairLoader(DeviceFrames.load(cfg.data, device), cfg, 0))
    else:
        loader = iter(pair_loader(build_pair_dataset(cfg.data, seed=cfg.train.seed), cfg, 0, device))
    for _ in range(warmup):
        next(loader)
    start = time.perf_counter()
    for _ in range(batches):
        next(loader)["frames"].to(device, non_blocking=True)
    synchronize(device)
    seconds = time.perf_counter() - start
    return {"source": options.data, "workers": 0 if cfg.data.on_device else cfg.data.workers,
            "on_device": cfg.data.on_device, "batches": batches,
            "pairs_per_s": batches * cfg.train.batch_size / seconds}


SECTION_FUNCTIONS = {"train": bench_train, "infer": bench_infer, "adapt": bench_adapt, "loader": bench_loader}


# ---------------------------------------------------------------- profile


def profile_training(cfg: Config, device: torch.device, options: BenchOptions, trace: Path, steps: int = 2) -> dict:
    """torch.profiler over ``steps`` training steps (chrome trace to ``trace``), and the step's parts
    timed with synchronised timers: f_A forward, f_M forward, the rest of the forward, loss,
    backward, optimizer."""
    model = build_model(cfg, device).train()
    step = train_step_fn(model, cfg, device, preset_precision(cfg, device))[0]
    step()
    activities = [torch.profiler.ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    with torch.profiler.profile(activities=activities) as profiler:
        for _ in range(steps):
            step()
        synchronize(device)
    trace.parent.mkdir(parents=True, exist_ok=True)
    profiler.export_chrome_trace(str(trace))
    timed_steps = max(options.repeats, steps)
    return {"trace": str(trace), "steps": steps, "top_ops": top_ops(profiler, device),
            "breakdown_steps": timed_steps, "breakdown_s": step_breakdown(model, cfg, device, timed_steps)}


def top_ops(profiler, device: torch.device, count: int = TOP_OPS) -> list:
    """The ops with the most self time (CUDA time on CUDA, else CPU time), per profiled step summed."""
    key = "self_device_time_total" if device.type == "cuda" else "self_cpu_time_total"
    events = sorted(profiler.key_averages(), key=lambda e: getattr(e, key, 0), reverse=True)[:count]
    return [{"name": e.key, "calls": e.count, "self_cpu_s": e.self_cpu_time_total / 1e6,
             "self_device_s": getattr(e, "self_device_time_total", 0) / 1e6} for e in events]


def step_breakdown(model: AMD, cfg: Config, device: torch.device, steps: int) -> dict:
    """Median seconds of each part of a training step, from hooks on f_A, f_M and AMD."""
    marks = {}

    def mark(name):
        synchronize(device)
        marks[name] = time.perf_counter()

    hooks = [
        model.appearance.register_forward_pre_hook(lambda *_: mark("appearance_start")),
        model.appearance.register_forward_hook(lambda *_: mark("appearance_end")),
        model.motion.register_forward_pre_hook(lambda *_: mark("motion_start")),
        model.motion.register_forward_hook(lambda *_: mark("motion_end")),
        model.register_forward_hook(lambda *_: mark("model_end")),
    ]
    precision = preset_precision(cfg, device)
    step, optimizer, frames, flows = train_step_fn(model, cfg, device, precision)
    parts = defaultdict(list)
    try:
        for _ in range(steps):
            mark("start")
            with autocast(device, precision):
                loss, _, _ = training_step(model, frames, cfg.loss, flows)
            mark("loss_end")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            mark("backward_end")
            if cfg.train.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.train.grad_clip)
            optimizer.step()
            mark("optimizer_end")
            m = marks
            forward_appearance = m["appearance_end"] - m["appearance_start"]
            # An objective without view synthesis runs f_A alone: no f_M, no AMD forward.
            forward_motion = m["motion_end"] - m["motion_start"] if "motion_start" in m else 0.0
            model_end = m.get("model_end", m["appearance_end"])
            parts["forward_appearance"].append(forward_appearance)
            parts["forward_motion"].append(forward_motion)
            # frames resized for f_M, and the segment flow laid out at every level (flow_pyramid)
            parts["forward_other"].append(model_end - m["start"] - forward_appearance - forward_motion)
            parts["loss"].append(m["loss_end"] - model_end)
            parts["backward"].append(m["backward_end"] - m["loss_end"])
            parts["optimizer"].append(m["optimizer_end"] - m["backward_end"])
            parts["step"].append(m["optimizer_end"] - m["start"])
    finally:
        for hook in hooks:
            hook.remove()
    return {name: statistics.median(times) for name, times in parts.items()}


def benched_kernels(cfg: Config, device: torch.device, sections, batch: int = 1) -> dict:
    """The convolutions of what the train and infer sections run: AMD on a training batch, f_A at
    384 x 384 and at a 480p frame's test size."""
    model = build_model(cfg, device).eval()
    kernels = {}
    if "train" in sections:
        frames = torch.rand(cfg.train.batch_size, 3, *cfg.data.crop_size, device=device)
        kernels.update(model_kernels(model, frames, frames) if cfg.loss.view_synthesis_weight
                       else model_kernels(model.appearance, torch.cat([frames, frames])))
    if "infer" in sections:
        for size in ((384, 384), inference_size(*FRAME_480P, inference_short_edge(cfg))):
            kernels.update(model_kernels(model.appearance, torch.rand(batch, 3, *size, device=device)))
    return kernels


# ---------------------------------------------------------------- the run


def load_configs(presets, overrides=()) -> dict:
    """Preset name or YAML path -> Config with the ``key=value`` overrides applied to each."""
    return {name: load_config(name, list(overrides)) for name in presets}


def environment(device: torch.device, options: BenchOptions) -> dict:
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "device": str(device),
        "device_name": device_name(device),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "objectness": __version__,
        "python": platform.python_version(),
        "sections": list(options.sections),
        "repeats": options.repeats,
        "warmup": options.warmup,
    }


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()}, {os.cpu_count()} logical CPUs"
    except OSError:
        pass
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} logical CPUs"


def benchmark(configs: dict, device="auto", options: Optional[BenchOptions] = None, progress: bool = True) -> dict:
    """Run the chosen sections for each config; returns the JSON-ready result.

    {"environment": {date, device, device_name, threads, torch, torchvision, objectness, python,
                     sections, repeats, warmup},
     "peaks": {dtype: {dtype, size, flops_per_s, best, kernels: {name: {flops, seconds, flops_per_s}},
               method}} for each dtype that train or infer computes in (none if neither runs),
     "presets": {name: {"precision", "config": full config,
         "train": {batch_size, crop_size, step_s, pairs_per_s, flops_per_step, flops_per_s,
                   peak_fraction, peak_memory_bytes},
         "infer": {"384x384" | "480p": {input_size, batch, s_per_image, images_per_s, flops_per_image,
                   flops_per_s, peak_fraction, peak_memory_bytes} (480p also frame_size)},
         "adapt": {frame_size, frames, steps_measured, s_per_step, s_for_100_steps, projected,
                   segment_s, s_per_frame, peak_memory_bytes},
         "loader": {source, workers, on_device, batches, pairs_per_s},
         "profile": {trace, steps, top_ops: [{name, calls, self_cpu_s, self_device_s}], breakdown_steps,
                     breakdown_s: {forward_appearance, forward_motion, forward_other, loss,
                                   backward, optimizer, step}}}}}
    A section not asked for, or the loader without options.data, is absent.
    """
    options = options or BenchOptions()
    device = resolve_device(str(device))
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # as train.train: fixed sizes
    sections = [s for s in options.sections if s != "loader" or options.data is not None]
    tasks = [(name, section) for name in configs for section in sections]
    if options.profile is not None:
        tasks += [(name, "profile") for name in configs]
    measures = any(s in ("train", "infer") for s in sections)
    dtypes = sorted({run_dtype(precision) for precision in options.precisions} if measures else set(), key=str)
    result = {"environment": environment(device, options), "peaks": {},
              "presets": {name: {"precision": preset_precision(cfg, device), "config": to_dict(cfg)}
                          for name, cfg in configs.items()}}
    with tqdm(total=len(tasks) + len(dtypes), desc="bench", unit="section", disable=not progress) as bar:
        own = {}
        for cfg in configs.values() if dtypes else ():  # the convolutions the measured networks run
            own.update(benched_kernels(cfg, device, sections, infer_batch(options, device)))
        for dtype in dtypes:
            bar.set_postfix_str(f"peak {dtype}")
            size = options.matmul_size or (8192 if device.type == "cuda" else 2048)
            peak = measure_peak(device, dtype, size, options.repeats, options.warmup, own)
            result["peaks"][peak["dtype"]] = peak
            bar.update()
        for name, section in tasks:
            bar.set_postfix_str(f"{name}: {section}")
            cfg = configs[name]
            if section == "profile":
                entry = profile_training(cfg, device, options, trace_path(options.profile, name))
            else:
                entry = SECTION_FUNCTIONS[section](cfg, device, options, result["peaks"])
            result["presets"][name][section] = entry
            bar.update()
    return result


# ---------------------------------------------------------------- report


def format_report(result: dict) -> str:
    env = result["environment"]
    lines = [f"objectness bench {env['date']}: {env['device']} ({env['device_name']}), {env['threads']} thread(s), "
             f"torch {env['torch']}, torchvision {env['torchvision']}, objectness {env['objectness']}"]
    for peak in result["peaks"].values():
        lines.append(f"peak {peak['dtype']}: {_rate(peak['flops_per_s'])} by {peak['best']} ({peak['method']})")
    lines.append(f"medians of {env['repeats']} timed calls after {env['warmup']} warm-up call(s)")
    rows = [("preset", "measurement", "time", "throughput", "FLOPs", "of peak", "peak memory")]
    for name, entry in result["presets"].items():
        rows += [(name, *row) for row in _rows(entry)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines.append("")
    lines += ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows]
    if "loader" in env["sections"] and not any("loader" in e for e in result["presets"].values()):
        lines.append("loader: skipped (no --data)")
    for name, entry in result["presets"].items():
        if "profile" in entry:
            lines += ["", *_profile_lines(name, entry["profile"])]
    return "\n".join(lines)


def _rows(entry: dict) -> list:
    rows = []
    if "train" in entry:
        train = entry["train"]
        for precision in PRECISIONS:
            if precision in train:
                t = train[precision]
                crop = "x".join(map(str, t["crop_size"]))
                rows.append((f"training step: {t['batch_size']} pairs {crop}, {precision}{_chosen(train, precision)}",
                             _seconds(t["step_s"]) + "/step", f"{t['pairs_per_s']:.3g} pairs/s",
                             _flops(t["flops_per_step"]), _percent(t["peak_fraction"]), _bytes(t["peak_memory_bytes"])))
        if "bf16_speedup" in train:
            rows.append(("training step: bf16 speed-up", "", f"{train['bf16_speedup']:.2f}x fp32's", "", "", ""))
    for name, infer in entry.get("infer", {}).items():
        for precision in PRECISIONS:
            if precision in infer:
                i = infer[precision]
                size = "x".join(map(str, i["input_size"]))
                what = f"f_A: 480p frame at {size}" if name == "480p" else f"f_A: {size}"
                rows.append((f"{what}, batch {i['batch']}, {precision}{_chosen(infer, precision)}",
                             _seconds(i["s_per_image"]) + "/image", f"{i['images_per_s']:.3g} images/s",
                             _flops(i["flops_per_image"]), _percent(i["peak_fraction"]), _bytes(i["peak_memory_bytes"])))
        if "bf16_speedup" in infer:
            rows.append((f"f_A {name}: bf16 speed-up", "", f"{infer['bf16_speedup']:.2f}x fp32's", "", "", ""))
    if "adapt" in entry:
        a = entry["adapt"]
        total = a[f"s_for_{PAPER_ADAPT_STEPS}_steps"]
        n = a["steps_measured"]
        how = f"projected from {n} measured step{'s' * (n != 1)}" if a["projected"] else f"{n} steps measured"
        rows.append((f"adaptation on a 480p video ({how}), {a.get('precision', 'fp32')}", _seconds(a["s_per_step"]) + "/step",
                     f"{PAPER_ADAPT_STEPS} steps: {_seconds(total)}", "", "", _bytes(a["peak_memory_bytes"])))
        rows.append((f"segmenting its {a['frames']} frames", _seconds(a["s_per_frame"]) + "/frame",
                     f"{1 / a['s_per_frame']:.3g} frames/s", "", "", ""))
    if "loader" in entry:
        loader = entry["loader"]
        versus = ""
        if "train" in entry and entry["train"]["precision"] in entry["train"]:
            step = entry["train"][entry["train"]["precision"]]
            versus = f" = {loader['pairs_per_s'] / step['pairs_per_s']:.3g}x the step's"
        how = "made on the device" if loader.get("on_device") else f"{loader['workers']} workers"
        rows.append((f"loader: {loader['source']}, {how}", "",
                     f"{loader['pairs_per_s']:.3g} pairs/s{versus}", "", "", ""))
    return rows


def comparable_times(result: dict) -> dict:
    """(preset, measurement) -> seconds, for every time two runs can share."""
    times = {}
    for name, entry in result["presets"].items():
        train = entry.get("train", {})
        for precision in PRECISIONS:
            if precision in train:
                times[(name, f"training step, {precision}")] = train[precision]["step_s"]
        for size, infer in entry.get("infer", {}).items():
            for precision in PRECISIONS:
                if precision in infer:
                    times[(name, f"f_A {size}, {precision} (per image)")] = infer[precision]["s_per_image"]
        if "adapt" in entry:
            adapt = entry["adapt"]
            times[(name, f"adaptation step, {adapt.get('precision', 'fp32')}")] = adapt["s_per_step"]
            times[(name, "segmenting a 480p frame")] = adapt["s_per_frame"]
        if "loader" in entry:
            times[(name, "loader (per pair)")] = 1 / entry["loader"]["pairs_per_s"]
    return times


def format_comparison(first: dict, second: dict, names=("first", "second")) -> str:
    """Two runs side by side: the time of each measurement both hold, and how many times faster the
    second is (first's time over second's). Only a ratio of one run on one machine is a speed-up."""
    a, b = comparable_times(first), comparable_times(second)
    lines = [f"{names[0]}: {_environment_line(first)}", f"{names[1]}: {_environment_line(second)}", ""]
    rows = [("preset", "measurement", names[0], names[1], f"{names[1]} faster by")]
    rows += [(preset, what, _seconds(a[key]), _seconds(b[key]), f"{a[key] / b[key]:.2f}x")
             for key in a if key in b for preset, what in [key]]
    if len(rows) == 1:
        return "\n".join(lines + ["the two runs share no measurement"])
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines += ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows]
    return "\n".join(lines)


def _environment_line(result: dict) -> str:
    env = result["environment"]
    return (f"{env['date']}, {env['device']} ({env['device_name']}), {env['threads']} thread(s), "
            f"torch {env['torch']}, objectness {env['objectness']}")


def read_report(path) -> dict:
    """A JSON file of ``objectness bench --out``, or ConfigError naming it."""
    path = Path(path)
    try:
        result = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise ConfigError(f"{path}: not a readable bench result ({err})") from None
    if not isinstance(result, dict) or "presets" not in result or "environment" not in result:
        raise ConfigError(f"{path}: not a result of objectness bench --out")
    return result


def _chosen(entry: dict, precision: str) -> str:
    return " (the preset's)" if entry.get("precision") == precision else ""


def _profile_lines(name: str, profile: dict) -> list:
    breakdown = profile["breakdown_s"]
    lines = [f"{name}: a training step in parts (medians of {profile['breakdown_steps']} steps, synchronised timers)"]
    lines += [f"  {part:<20}{_seconds(seconds):>10}  {seconds / breakdown['step']:6.1%}"
              for part, seconds in breakdown.items() if part != "step"]
    lines.append(f"  {'step':<20}{_seconds(breakdown['step']):>10}")
    lines.append(f"{name}: top ops by self time over {profile['steps']} profiled steps (trace: {profile['trace']})")
    lines.append(f"  {'op':<40}{'calls':>8}{'self CPU':>12}{'self device':>14}")
    lines += [f"  {op['name'][:40]:<40}{op['calls']:>8}{_seconds(op['self_cpu_s']):>12}{_seconds(op['self_device_s']):>14}"
              for op in profile["top_ops"]]
    return lines


def _seconds(seconds: float) -> str:
    if seconds >= 1:
        return f"{seconds:.3g} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.3g} ms"
    return f"{seconds * 1e6:.3g} us"


def _scaled(value: float, unit: str) -> str:
    for prefix, scale in (("P", 1e15), ("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if value >= scale:
            return f"{value / scale:.3g} {prefix}{unit}"
    return f"{value:.3g} {unit}"


def _flops(flops: int) -> str:
    return _scaled(flops, "FLOP")


def _rate(flops_per_s: float) -> str:
    return _scaled(flops_per_s, "FLOP/s")


def _percent(fraction) -> str:
    return "" if fraction is None else f"{fraction:.1%}"


def _bytes(count: int) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if count >= scale:
            return f"{count / scale:.3g} {unit}"
    return f"{count} B"


def trace_path(out: Path, preset: str) -> Path:
    """A preset's chrome trace, next to the JSON: bench.json -> bench.paper.trace.json."""
    return Path(out).with_name(f"{Path(out).stem}.{Path(preset).stem}.trace.json")


def check_out(out: Optional[Path], presets, profile: bool, overwrite: bool) -> None:
    """Refuse, before any work, to replace the JSON or a trace unless ``overwrite``."""
    if out is None:
        if profile:
            raise ConfigError("bench: --profile writes its chrome traces next to --out; give --out")
        return
    paths = [out] + ([trace_path(out, name) for name in presets] if profile else [])
    for path in paths:
        if path.exists() and not overwrite:
            raise FileExistsError(f"{path} exists; pass --overwrite to replace it")


def write_report(result: dict, out: Path, overwrite: bool = False) -> None:
    """The result as JSON, written atomically; an existing file is refused unless ``overwrite``."""
    out = Path(out)
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} exists; pass --overwrite to replace it")
    write_json(out, result)
