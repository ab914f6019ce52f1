"""Shared fixtures: the real data folder (or a skip) and a tiny, fast configuration."""
import os
from pathlib import Path

import pytest
import torch

from objectness.config import load_config

# The tests' tensors are small: one thread loses little, and it spares the
# OpenMP spin-waits that make two threads up to 40x slower on shared cores.
torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[1]

TINY = (
    "model.appearance.depth=18",
    "model.appearance.width=8",
    "model.appearance.head_channels=16",
    "model.motion.input_size=null",
    "model.motion.pyramid_channels=[8,16,16,24,24]",
    "data.source=synthetic",
    "data.crop_size=[64,64]",
    "data.short_edge=64",
    "data.scale_range=[1.0,1.0]",
    "data.workers=0",
    "data.synthetic.num_videos=4",
    "data.synthetic.num_frames=6",
    "data.synthetic.height=64",
    "data.synthetic.width=64",
    "train.batch_size=2",
    "train.steps=4",
    "train.checkpoint_every=1000",
    "train.log_every=1",
    "train.panel_every=1000",
    "train.device=cpu",
    "train.precision=fp32",  # the same on every machine; tests of bf16 ask for it
    "data.test_short_edge=null",
)


@pytest.fixture
def shared_data() -> Path:
    """The shared data folder: $OBJECTNESS_DATA, else <repo>/../shared/data; skips when absent."""
    path = Path(os.environ.get("OBJECTNESS_DATA", REPO.parent / "shared" / "data"))
    if not path.is_dir():
        pytest.skip(f"shared data folder {path} not found (set OBJECTNESS_DATA to run this test)")
    return path


@pytest.fixture(scope="session")
def tiny_overrides() -> tuple:
    """``key=value`` overrides of a model and data small enough for a CPU test."""
    return tuple(TINY)


@pytest.fixture
def tiny_config(tiny_overrides):
    """A Config of a ResNet-18 of width 8 trained on 4 synthetic 64 x 64 videos, 4 steps."""
    return load_config(None, list(tiny_overrides))
