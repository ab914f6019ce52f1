"""The GPU sprint (issue 12) rehearsed on the CPU, and the limits of the device tool it must fit."""
import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from objectness.config import DataConfig, SyntheticConfig, load_config
from objectness.data.device_frames import pack_frames
from objectness.model.checkpoint import load_model

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "gpu-sprint.sh"
PACK = REPO / "carry" / "davis2016-240p-train.npz"
MiB = 2**20
FILES_BACK, FILE_BACK_BYTES, TREE_BYTES = 8, 16 * MiB, 64 * MiB  # the device tool's limits


def _sprint_module():
    spec = importlib.util.spec_from_file_location("gpu_sprint", REPO / "scripts" / "gpu_sprint.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def rehearsal(tmp_path_factory):
    """scripts/gpu-sprint.sh with SPRINT_TINY=1 on a pack of two tiny synthetic videos: (exit code, output, $OUT)."""
    tmp = tmp_path_factory.mktemp("sprint")
    synthetic = SyntheticConfig(num_videos=2, num_frames=5, height=64, width=96)
    pack_frames(DataConfig(source="synthetic", synthetic=synthetic), tmp / "pack.npz")
    env = {**os.environ, "SPRINT_TINY": "1", "OUT": str(tmp / "out"), "OMP_NUM_THREADS": "1", "PYTHON": sys.executable}
    result = subprocess.run(["bash", str(SCRIPT), "--pack", str(tmp / "pack.npz")], env=env, cwd=tmp,
                            capture_output=True, text=True, timeout=600)
    return result.returncode, result.stdout + result.stderr, tmp / "out"


def test_the_rehearsal_runs_every_step_of_the_sprint(rehearsal):
    code, output, out = rehearsal
    assert code == 0, output[-3000:]
    steps = json.loads((out / "summary.json").read_text())["steps"]
    assert set(steps) == {"unpack", "test_cuda", "ddp_syncbn", "bench", "bench_adapt", "train", "channels"}
    assert all(step["rc"] == 0 for step in steps.values()), steps
    assert steps["ddp_syncbn"]["processes"] == 2


def test_what_comes_back_fits_the_device_tool(rehearsal):
    _, _, out = rehearsal
    files = [p for p in out.rglob("*") if p.is_file()]
    assert 0 < len(files) <= FILES_BACK
    for path in files:
        assert path.stat().st_size <= FILE_BACK_BYTES, path.name
        assert len(path.relative_to(out).parts) <= 3 and re.fullmatch(r"[A-Za-z0-9._-]+", path.name)


def test_the_rehearsal_brings_back_bench_figures_and_weights_with_their_channel(rehearsal):
    _, _, out = rehearsal
    bench = json.loads((out / "bench.json").read_text())
    assert set(bench["presets"]) == {"paper", "gpu-sprint"}
    assert bench["presets"]["gpu-sprint"]["loader"]["on_device"]
    assert bench["presets"]["paper"]["profile"]["top_ops"] and bench["presets"]["paper"]["adapt"]["s_per_step"] > 0
    _, cfg, meta = load_model(out / "model.safetensors")
    assert cfg.data.on_device and meta["objectness_channel"] in range(cfg.model.num_segments)


def _run_with_the_rehearsals_weights(out, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "model.safetensors").write_bytes((out / "model.safetensors").read_bytes())
    return run


def test_weights_too_large_for_one_file_come_back_in_fp16_shards(rehearsal, tmp_path, monkeypatch):
    _, _, out = rehearsal
    sprint = _sprint_module()
    run = _run_with_the_rehearsals_weights(out, tmp_path)
    size = (run / "model.safetensors").stat().st_size
    monkeypatch.setattr(sprint, "FILE_LIMIT", size // 6 + MiB)  # fp32 and fp16 both too large for one file
    shards = sprint.weights_back(run, tmp_path)
    assert len(shards) >= 2 and all(p.stat().st_size <= sprint.FILE_LIMIT for p in shards)
    from safetensors import safe_open

    names = set()
    for shard in shards:
        with safe_open(str(shard), framework="pt") as f:
            assert f.metadata()["dtype"] == "float16" and "config" in f.metadata()
            names |= set(f.keys())
    model, _, _ = load_model(out / "model.safetensors")
    assert names == set(model.state_dict())


def test_fp16_weights_load_as_the_same_model(rehearsal, tmp_path, monkeypatch):
    _, _, out = rehearsal
    sprint = _sprint_module()
    run = _run_with_the_rehearsals_weights(out, tmp_path)
    monkeypatch.setattr(sprint, "FILE_LIMIT", (run / "model.safetensors").stat().st_size - 1)
    [fp16] = sprint.weights_back(run, tmp_path)
    model, _, meta = load_model(fp16)
    reference, _, reference_meta = load_model(out / "model.safetensors")
    assert meta["objectness_channel"] == reference_meta["objectness_channel"]
    for name, tensor in reference.state_dict().items():
        assert torch.allclose(model.state_dict()[name].float(), tensor.float(), rtol=1e-3, atol=1e-4), name


def test_the_gpu_sprint_model_comes_back_in_one_fp16_file():
    from objectness.model.amd import AMD

    cfg = load_config("gpu-sprint")
    parameters = sum(p.numel() for p in AMD(cfg.model).state_dict().values())
    assert parameters * 2 < _sprint_module().FILE_LIMIT - MiB


def test_the_davis_pack_and_the_repository_fit_in_one_device_call():
    if not PACK.is_file():
        pytest.skip(f"{PACK} not built (python scripts/pack_frames.py pack ../shared/data/davis2016 {PACK} "
                    "--resolution 240p)")
    with np.load(PACK, allow_pickle=False) as pack:
        assert (len(pack["names"]), int(pack["lengths"].sum())) == (30, 2079)
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                            capture_output=True, check=True).stdout.split(b"\0")
    tree = sum((REPO / name.decode()).stat().st_size for name in listed if name and (REPO / name.decode()).is_file())
    assert tree + PACK.stat().st_size < TREE_BYTES - 8 * MiB  # some room for the repository to grow
