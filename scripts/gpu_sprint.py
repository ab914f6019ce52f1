"""The GPU sprint (issue 12): prove CUDA, measure it and train a model, in one call of at most 9 minutes.

Run by scripts/gpu-sprint.sh from the repository root. Each step is a command
of its own, so one that fails or runs long costs only its own time:

  1. tests/test_cuda.py (CUDA against the CPU, bf16 against fp32);
  2. with two GPUs or more, two processes training with NCCL and SyncBN;
  3. ``objectness bench`` at the paper and gpu-sprint presets: step time, pairs/s,
     FLOP/s against the peak measured in the same run, f_A images/s, adaptation,
     loader pairs/s beside step pairs/s, peak memory, profile top operators;
  4. training the gpu-sprint preset on the DAVIS frame pack (frames on the GPU)
     for whatever time is left, train.steps set from step 3's step time so the
     lr decay ends with the time;
  5. ``objectness channels`` on the trained model.

What comes back (at most 8 files, 16 MiB each, in --out): sprint.log (every
command's output), summary.json (each step's status and time, the key figures),
bench.json, the weights (model.safetensors, or model-fp16.safetensors when fp32
is too large), run.tar.gz (config, metrics.jsonl, panels, channels.png, the
bench table). ``--tiny`` rehearses all of it on a CPU in seconds (CI).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACK = REPO / "carry" / "davis2016-240p-train.npz"
BUDGET_S = 510  # the whole sprint; the device call's limit is 600 s
TRAIN_MINUTES = 6.0  # at most
AFTER_TRAINING_S = 75  # the run's start and end, channels, packing the results
FILE_LIMIT = 15 * 2**20  # bytes per file back (the tool takes 16 MiB)
TINY = [  # a model and data a CPU runs in seconds (as tests/conftest.py's)
    "model.appearance.depth=18", "model.appearance.width=8", "model.appearance.head_channels=16",
    "model.motion.pyramid_channels=[8,16,16,24,24]", "model.motion.input_size=null", "data.crop_size=[64,64]", "data.short_edge=64",
    "data.scale_range=[1.0,1.0]", "data.workers=0", "data.gap=1", "train.batch_size=2", "train.log_every=1",
    "train.checkpoint_every=1000", "train.panel_every=2",
]


class Sprint:
    """Runs the steps as subprocesses, logs their output to sprint.log and keeps the summary."""

    def __init__(self, out: Path, work: Path, budget_s: float):
        self.out, self.work, self.budget_s = out, work, budget_s
        self.started = time.monotonic()
        self.log = open(out / "sprint.log", "a", buffering=1)
        self.steps = {}

    def left(self) -> float:
        return self.budget_s - (time.monotonic() - self.started)

    def run(self, name: str, command: list, timeout: float, env: dict | None = None) -> bool:
        """Run ``command`` from the repository root within ``timeout`` seconds; True if it exited 0."""
        timeout = max(1.0, min(timeout, self.left()))
        self.log.write(f"\n===== {name}: {' '.join(map(str, command))} (timeout {timeout:.0f} s)\n")
        start = time.monotonic()
        try:
            rc = subprocess.run([str(c) for c in command], cwd=REPO, stdout=self.log, stderr=subprocess.STDOUT,
                                timeout=timeout, env={**os.environ, **(env or {})}).returncode
        except subprocess.TimeoutExpired:
            rc = "timeout"
        seconds = time.monotonic() - start
        self.steps[name] = {"rc": rc, "seconds": round(seconds, 1)}
        print(f"[{time.monotonic() - self.started:6.0f} s] {name}: {'ok' if rc == 0 else f'FAILED ({rc})'} "
              f"in {seconds:.0f} s", flush=True)
        return rc == 0

    def skip(self, name: str, why: str) -> None:
        self.steps[name] = {"rc": None, "skipped": why}
        self.log.write(f"\n===== {name}: skipped ({why})\n")
        print(f"[{time.monotonic() - self.started:6.0f} s] {name}: skipped ({why})", flush=True)


def objectness(*args) -> list:
    return [sys.executable, "-m", "objectness.cli", *args]


def sets(overrides) -> list:
    return [arg for override in overrides for arg in ("--set", override)]


def gpu_count() -> int:
    try:
        result = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return 0
    return sum(line.startswith("GPU ") for line in result.stdout.splitlines())


def merged_bench(main: Path, adapt: Path) -> dict | None:
    """The main bench call's JSON with the adaptation call's section added (either may be missing)."""
    calls = [json.loads(path.read_text()) for path in (main, adapt) if path.is_file()]
    if not calls:
        return None
    bench = calls[0]
    for extra in calls[1:]:
        for name, entry in extra["presets"].items():
            bench["presets"].setdefault(name, entry)["adapt"] = entry["adapt"]
        bench["environment"]["sections"].append("adapt")
    return bench


def training_steps(bench: dict, seconds: float, max_steps: int) -> int:
    """Steps of the gpu-sprint preset that fit in ``seconds`` at bench's step time (10% spare)."""
    train = bench["presets"]["gpu-sprint"]["train"]
    step_s = train[train["precision"]]["step_s"]  # the precision the preset trains in
    return max(1, min(max_steps, math.floor(seconds / (1.1 * step_s))))


def weights_back(run: Path, out: Path) -> list:
    """The run's weights as files the device tool brings back: fp32 if small enough, else fp16,
    split into shards only if still too large. Returns the files written."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    weights = run / "model.safetensors"
    if not weights.is_file():
        return []
    if weights.stat().st_size <= FILE_LIMIT:
        shutil.copy(weights, out / weights.name)
        return [out / weights.name]
    with safe_open(str(weights), framework="pt") as f:
        header = {**f.metadata(), "dtype": "float16"}
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    tensors = {k: v.half() if v.is_floating_point() else v for k, v in tensors.items()}
    shards, current, size = [], {}, 0
    for name, tensor in tensors.items():
        nbytes = tensor.numel() * tensor.element_size()
        if current and size + nbytes > FILE_LIMIT - 2**20:  # a MiB for the header
            shards.append(current)
            current, size = {}, 0
        current[name] = tensor
        size += nbytes
    shards.append(current)
    names = (["model-fp16.safetensors"] if len(shards) == 1 else
             [f"model-fp16-{i + 1:02d}-of-{len(shards):02d}.safetensors" for i in range(len(shards))])
    for name, shard in zip(names, shards):
        save_file(shard, str(out / name), metadata=header)
    return [out / name for name in names]


def key_figures(bench: dict | None, run: Path) -> dict:
    """The numbers the final table shows, from bench.json and the run's metrics."""
    figures = {}
    for preset, entry in (bench or {}).get("presets", {}).items():
        for precision in ("fp32", "bf16"):
            if precision in entry.get("train", {}):
                train = entry["train"][precision]
                figures[f"{preset} step {precision}"] = (
                    f"{train['batch_size']} pairs in {train['step_s'] * 1e3:.1f} ms, {train['pairs_per_s']:.1f} "
                    f"pairs/s, {_percent(train['peak_fraction'])} of peak")
        if "bf16_speedup" in entry.get("train", {}):
            figures[f"{preset} step bf16 speed-up"] = f"{entry['train']['bf16_speedup']:.2f}x"
        if "loader" in entry:
            figures[f"{preset} loader"] = f"{entry['loader']['pairs_per_s']:.1f} pairs/s"
        if "adapt" in entry:
            figures[f"{preset} adaptation"] = (f"{entry['adapt']['s_per_step'] * 1e3:.1f} ms/step, "
                                               f"{entry['adapt']['s_per_frame'] * 1e3:.1f} ms/frame segmenting")
        infer = entry.get("infer", {}).get("384x384", {})
        for precision in ("fp32", "bf16"):
            if precision in infer:
                figures[f"{preset} f_A 384x384 {precision}"] = f"{infer[precision]['images_per_s']:.1f} images/s"
    for peak in (bench or {}).get("peaks", {}).values():
        figures[f"peak {peak['dtype']}"] = f"{peak['flops_per_s'] / 1e12:.1f} TFLOP/s by {peak['best']}"
    metrics = run / "metrics.jsonl"
    if metrics.is_file():
        lines = metrics.read_text().splitlines()
        if lines:
            last = json.loads(lines[-1])
            figures["training"] = (f"step {last.get('step')}, loss {last.get('loss', float('nan')):.4f}, "
                                   f"{last.get('pairs_per_s', 0):.1f} pairs/s")
    return figures


def _percent(fraction) -> str:
    return "?" if fraction is None else f"{fraction:.1%}"


def bundle(out: Path, run: Path, work: Path) -> Path:
    """run.tar.gz: the run's config, metrics, panels and channel figure, the bench table, the versions."""
    path = out / "run.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        for name in ("config.yaml", "metrics.jsonl", "channels.png", "panels"):
            if (run / name).exists():
                tar.add(run / name, arcname=f"run/{name}")
        for extra in sorted(work.glob("*.txt")):
            tar.add(extra, arcname=extra.name)
    return path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="where the results go ($OUT on the device)")
    parser.add_argument("--pack", type=Path, default=PACK, help="the frame pack to train on")
    parser.add_argument("--budget", type=float, default=BUDGET_S, help="seconds for the whole sprint")
    parser.add_argument("--tiny", action="store_true", help="a tiny model and run: rehearse on a CPU in seconds")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="gpu-sprint-"))
    sprint = Sprint(args.out, work, args.budget)
    gpus = gpu_count()
    device = "cpu" if args.tiny else "cuda"
    tiny = TINY + [f"train.device={device}"] if args.tiny else []
    print(f"gpu sprint: {gpus} GPU(s), device {device}, budget {args.budget:.0f} s, work in {work}", flush=True)
    if gpus:
        sprint.run("nvidia-smi", ["nvidia-smi"], 30)

    frames = work / "frames"  # the pack as frame folders, for --data of bench's loader and channels
    unpacked = sprint.run("unpack", [sys.executable, "scripts/pack_frames.py", "unpack", args.pack, frames], 120)
    data = ["--data", frames] if unpacked else []  # without frames, bench skips its loader section

    sprint.run("test_cuda", [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_cuda.py"], 150)

    if gpus >= 2 or args.tiny:  # one process per GPU: NCCL refuses two ranks on one GPU
        nproc = 2
        ddp = tiny + ["train.steps=2"] if args.tiny else TINY + ["train.steps=20", "train.device=cuda"]
        if sprint.run("ddp_syncbn", [sys.executable, "-m", "torch.distributed.run", "--standalone",
                                     f"--nproc_per_node={nproc}", "-m", "objectness.cli", "train", "--config",
                                     "gpu-sprint", "--data", args.pack, "--out", work / "ddp", *sets(ddp)], 120) \
                and (work / "ddp" / "last.pt").is_file():
            import torch

            processes = len(torch.load(work / "ddp" / "last.pt", weights_only=True)["rng"])  # one RNG state each
            sprint.steps["ddp_syncbn"]["processes"] = processes
    else:
        sprint.skip("ddp_syncbn", "one GPU: NCCL needs a GPU per process")

    # The step, f_A, loader and profile first; adaptation (100 steps on a 480p video) in a call of its
    # own, so that a slow one costs only itself. bench writes its JSON at the end of a call.
    quick = ["--repeats", "1", "--warmup", "0"] if args.tiny else []
    sprint.run("bench", objectness("bench", "--config", "paper", "gpu-sprint", *sets(tiny), "--device", device,
                                   "--only", "train", "infer", "loader", *data, "--profile",
                                   "--out", work / "bench.json", *quick,
                                   *(["--matmul-size", "128", "--batch", "1"] if args.tiny else [])), 200)
    sprint.run("bench_adapt", objectness("bench", "--config", "paper", *sets(tiny), "--device", device,
                                         "--only", "adapt", "--out", work / "adapt.json", *quick,
                                         *(["--adapt-steps", "1", "--frames", "2"] if args.tiny else [])), 90)
    bench = merged_bench(work / "bench.json", work / "adapt.json")
    if bench is not None:
        (args.out / "bench.json").write_text(json.dumps(bench, indent=2))
        table = subprocess.run([sys.executable, "-c", "import json, sys; from objectness.tools.bench import format_report; "
                                "print(format_report(json.load(open(sys.argv[1]))))", args.out / "bench.json"],
                               capture_output=True, text=True, cwd=REPO)
        (work / "bench-table.txt").write_text(table.stdout + table.stderr)

    run = work / "run"
    seconds = min(60 * TRAIN_MINUTES, sprint.left() - AFTER_TRAINING_S)
    if seconds < 30:
        sprint.skip("train", f"{sprint.left():.0f} s left")
    else:
        schedule = []
        if bench is not None and "train" in bench["presets"].get("gpu-sprint", {}):
            schedule = [f"train.steps={training_steps(bench, seconds, 4 if args.tiny else 10**6)}"]
        overrides = tiny + schedule + [f"train.time_limit={seconds / 60:.3f}"]
        sprint.run("train", objectness("train", "--config", "gpu-sprint", "--data", args.pack, "--out", run,
                                       *sets(overrides)), seconds + AFTER_TRAINING_S - 15)

    if (run / "model.safetensors").is_file() and unpacked:
        sprint.run("channels", objectness("channels", "--checkpoint", run, "--data", frames, "--device", device,
                                          "--pairs", "8" if args.tiny else "256"), 60)
    else:
        sprint.skip("channels", "no trained weights or no frames")

    weights = weights_back(run, args.out)
    bundle(args.out, run, work)
    figures = key_figures(bench, run)
    summary = {"gpus": gpus, "device": device, "tiny": args.tiny, "budget_s": args.budget,
               "seconds": round(time.monotonic() - sprint.started, 1), "steps": sprint.steps, "figures": figures,
               "weights": [p.name for p in weights]}
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2))
    files = sorted(p for p in args.out.rglob("*") if p.is_file())
    too_large = [p.name for p in files if p.stat().st_size > FILE_LIMIT]
    print("\n".join(f"  {name}: {value}" for name, value in figures.items()))
    print(f"{len(files)} files in {args.out} ({sum(p.stat().st_size for p in files) / 2**20:.1f} MiB)"
          + (f"; TOO LARGE to come back: {', '.join(too_large)}" if too_large else ""))
    print(f"gpu sprint done in {summary['seconds']:.0f} s: "
          + ", ".join(f"{name} {'ok' if s['rc'] == 0 else 'skipped' if s['rc'] is None else 'FAILED'}"
                      for name, s in sprint.steps.items()))
    shutil.rmtree(work, ignore_errors=True)
    return 0 if all(s["rc"] in (0, None) for s in sprint.steps.values()) and not too_large else 1


if __name__ == "__main__":
    sys.exit(main())
