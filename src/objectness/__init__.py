"""objectness: AMD, zero-shot object segmentation learned from unlabeled video (NeurIPS 2021).

The Python API, as the command line uses it:

    import objectness

    segmenter = objectness.load_segmenter()                   # the shipped model; or a run folder, a weights file
    maps = objectness.segment_images(segmenter, images)       # uint8 (H, W, 3) -> float32 (H, W) in 0..1
    maps = objectness.segment_video(segmenter, frames)        # per image
    adapted = objectness.adapt(segmenter, frames, steps=100)  # per video: test-time adaptation first
    maps = objectness.segment_video(adapted, frames)
    summary = objectness.evaluate(segmenter, "saliency", "data/sod", "eval/sod")
    run = objectness.train(objectness.load_config("cpu-small", ["data.source=videos/"]), "runs/mine")

The layers below, lowest first: ``config``, ``data``, ``model`` (the paper's
networks), ``objectives`` (the losses), ``inference``, ``training``,
``evaluation``, ``semantic``, ``tools`` and ``cli``. They are imported when
first used, so ``objectness --help`` does not wait for PyTorch.
"""
from importlib import import_module

from ._version import __version__

_API = {  # name -> the module that defines it
    "Config": "config",
    "load_config": "config",
    "load_model": "model.checkpoint",
    "Segmenter": "inference.segmenter",
    "load_segmenter": "inference.segmenter",
    "segment_images": "inference.segmenter",
    "segment_video": "inference.segmenter",
    "adapt": "training.adapt",
    "train": "training.train",
    "evaluate": "evaluation.evaluate",
}

__all__ = ["__version__", *_API]


def __getattr__(name: str):
    if name not in _API:
        raise AttributeError(f"module 'objectness' has no attribute '{name}'")
    value = getattr(import_module(f".{_API[name]}", __name__), name)
    globals()[name] = value  # looked up once
    return value


def __dir__():
    return sorted(__all__)
