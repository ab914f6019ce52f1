"""Which device a command runs on."""
import torch

from .config import ConfigError


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
