"""Which device a command runs on, and in what precision."""
import contextlib
import logging

import torch

from .config import ConfigError

log = logging.getLogger(__name__)
PRECISIONS = ("auto", "bf16", "fp32")


def resolve_device(name) -> torch.device:
    """auto (CUDA when there is a GPU), cpu, cuda, cuda:1, ... (or a torch.device) -> torch.device."""
    if isinstance(name, torch.device):
        return name
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"unknown device '{name}' (auto, cpu, cuda, cuda:1, ...)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device '{name}' asked for, but PyTorch sees no CUDA GPU")
    return device


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes bf16 natively: a CUDA GPU with bf16, or a CPU with AVX512-BF16 or AMX
    (elsewhere bf16 is emulated, and slower than fp32)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
        return any(getattr(torch.cpu, name, lambda: False)() for name in checks)
    return False


def resolve_precision(precision: str, device: torch.device, quiet: bool = False) -> str:
    """``bf16`` or ``fp32``: ``auto`` is bf16 where the device computes it natively, else fp32 (said in the log)."""
    if precision not in PRECISIONS:
        raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision != "auto":
        return precision
    chosen = "bf16" if native_bf16(device) else "fp32"
    if not quiet:
        why = "it computes bf16 natively" if chosen == "bf16" else "it has no native bf16"
        log.info("precision auto: %s on %s (%s; --set train.precision=fp32|bf16 to choose)", chosen, device, why)
    return chosen


def memory_format(model: torch.nn.Module, channels_last: bool) -> torch.nn.Module:
    """``model`` in the channels-last memory format where asked (train.channels_last), else as it is."""
    return model.to(memory_format=torch.channels_last) if channels_last else model


def autocast(device: torch.device, precision: str):
    """bf16 autocast for ``precision`` bf16, nothing for fp32; the losses turn it off for their reductions."""
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()
