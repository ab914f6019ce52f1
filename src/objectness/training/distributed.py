"""Data-parallel training through torchrun, out of the recipe's way.

torchrun sets RANK, WORLD_SIZE and LOCAL_RANK; without them everything here
is a no-op and the process is rank 0 of a world of one.
"""
import os

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel


def env_world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def env_rank() -> int:
    """This process's rank as torchrun gives it, known before the process group is joined."""
    return int(os.environ.get("RANK", "0"))


def init(device: torch.device) -> None:
    """Join the torchrun process group: NCCL on CUDA, gloo on CPU."""
    if env_world_size() > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")


def local_device(device: torch.device) -> torch.device:
    """One GPU per process: a bare ``cuda`` becomes ``cuda:LOCAL_RANK``."""
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    if device.type == "cuda":
        torch.cuda.set_device(device)
    return device


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def world_size() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def is_main() -> bool:
    return rank() == 0


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def cleanup() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def wrap(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """DDP across processes, with SyncBatchNorm when there are several GPUs (docs/method.md#the-appearance-network)."""
    if not dist.is_initialized():
        return model
    if device.type == "cuda":
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        return DistributedDataParallel(model, device_ids=[device.index])
    return DistributedDataParallel(model)


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return model.module if isinstance(model, DistributedDataParallel) else model


def all_reduce_mean(values: torch.Tensor) -> torch.Tensor:
    """Mean over processes, for logging; the input is left untouched."""
    values = values.detach().clone()
    if dist.is_initialized():
        dist.all_reduce(values)
        values /= world_size()
    return values


def all_reduce_sum(values: torch.Tensor) -> torch.Tensor:
    values = values.detach().clone()
    if dist.is_initialized():
        dist.all_reduce(values)
    return values


def any_process(flag: bool, device: torch.device) -> bool:
    """True in every process when ``flag`` is true in at least one."""
    if not dist.is_initialized():
        return flag
    flag = torch.tensor([float(flag)], device=device)
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    return bool(flag.item())


def gather_objects(obj) -> list:
    """Every process's ``obj``, in rank order (a one-item list without torchrun)."""
    if not dist.is_initialized():
        return [obj]
    gathered = [None] * world_size()
    dist.all_gather_object(gathered, obj)
    return gathered
