"""Process-group setup and model wrapping for ``torchrun`` (DDP, or FSDP for large models).

``torchrun`` starts one process per device and sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``MASTER_ADDR`` and ``MASTER_PORT``. Without them (a plain ``python`` run) everything here
degrades to a single process with no process group, so the same training code runs both ways.
The backend is NCCL on CUDA and Gloo on CPU (tests run two Gloo processes on CPU).
"""

from __future__ import annotations

import os
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from datetime import timedelta
from typing import Iterator

import torch
import torch.distributed as dist
from torch import nn

__all__ = ["STRATEGIES", "DistEnv", "init_distributed", "shutdown_distributed", "wrap_model",
           "unwrap_model", "all_reduce_mean", "barrier", "broadcast_object", "no_sync",
           "fsdp_full_state_dict"]

#: Data-parallel strategies :func:`wrap_model` knows.
STRATEGIES = ("ddp", "fsdp")


@dataclass(frozen=True)
class DistEnv:
    """Where this process stands: rank, world size, its device and the backend in use."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    backend: str | None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1 or self.backend is not None


def init_distributed(device: str = "auto", timeout_s: float = 600.0) -> DistEnv:
    """Join the ``torchrun`` process group when launched by it; otherwise run alone.

    Args:
        device: ``auto`` (this rank's GPU when CUDA is available, else CPU), ``cpu`` or
            ``cuda``. On CUDA each rank takes GPU ``LOCAL_RANK``.
        timeout_s: collective timeout; a rank that dies then fails the others instead of
            hanging them forever.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() if device == "auto" else device.startswith("cuda")
    if use_cuda and not torch.cuda.is_available():
        raise RuntimeError(f"device {device} requested but CUDA is not available")
    if use_cuda:
        torch.cuda.set_device(local)
        dev = torch.device("cuda", local)
    else:
        dev = torch.device("cpu")
    backend = None
    if "RANK" in os.environ and "MASTER_ADDR" in os.environ:
        backend = "nccl" if dev.type == "cuda" else "gloo"
        if not dist.is_initialized():
            dist.init_process_group(backend=backend, timeout=timedelta(seconds=timeout_s),
                                    **({"device_id": dev} if dev.type == "cuda" else {}))
    return DistEnv(rank, world, local, dev, backend)


def shutdown_distributed() -> None:
    """Leave the process group (if any) so the launcher sees a clean exit."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def wrap_model(module: nn.Module, env: DistEnv, strategy: str = "ddp",
               shard_classes: tuple[type, ...] = ()) -> nn.Module:
    """Wrap a training module for data-parallel training.

    Args:
        module: the module whose ``forward`` computes the losses (already on ``env.device``).
        env: from :func:`init_distributed`.
        strategy: ``ddp`` (replicate; right for models that fit one device) or ``fsdp``
            (shard parameters, gradients and optimizer state with FSDP2 ``fully_shard``; for
            models that do not fit). Ignored in a single process without a process group.
        shard_classes: submodule types sharded as their own FSDP units (decoder layers,
            vision blocks) so that only one unit's full parameters live at a time.

    Returns:
        The wrapped module (the input itself when not distributed).
    """
    if not env.distributed:
        return module
    if strategy == "ddp":
        from torch.nn.parallel import DistributedDataParallel as DDP

        # Frozen parameters are skipped by DDP's buckets; every trainable one takes part in
        # every step because each batch carries both a depth and a text target.
        return DDP(module, device_ids=[env.local_rank] if env.device.type == "cuda" else None)
    if strategy == "fsdp":
        from torch.distributed.fsdp import fully_shard

        for sub in module.modules():
            if shard_classes and isinstance(sub, shard_classes):
                fully_shard(sub)
        fully_shard(module)
        return module
    raise ValueError(f"unknown strategy {strategy!r} (ddp or fsdp)")


def unwrap_model(module: nn.Module) -> nn.Module:
    """The module inside a DDP wrapper (FSDP2 shards in place, so it is returned as is)."""
    return module.module if hasattr(module, "module") and isinstance(
        module, torch.nn.parallel.DistributedDataParallel) else module


def fsdp_full_state_dict(module: nn.Module) -> dict[str, torch.Tensor]:
    """Gather a sharded (FSDP2) module's full state dict on CPU, on every rank."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    return get_model_state_dict(module, options=StateDictOptions(full_state_dict=True,
                                                                 cpu_offload=True))


@contextmanager
def no_sync(module: nn.Module, active: bool) -> Iterator[None]:
    """Skip DDP's gradient all-reduce on accumulation micro-steps (all but the last)."""
    if active and hasattr(module, "no_sync") and isinstance(
            module, torch.nn.parallel.DistributedDataParallel):
        with module.no_sync():
            yield
    elif active and hasattr(module, "set_requires_gradient_sync"):  # FSDP2
        module.set_requires_gradient_sync(False)
        try:
            yield
        finally:
            module.set_requires_gradient_sync(True)
    else:
        with nullcontext():
            yield


def all_reduce_mean(values: dict[str, float], env: DistEnv) -> dict[str, float]:
    """Average scalar logs over ranks (identity in a single process)."""
    if not env.distributed or not values:
        return dict(values)
    keys = sorted(values)
    t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64,
                     device=env.device if env.backend == "nccl" else "cpu")
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    t /= env.world_size
    return {k: float(v) for k, v in zip(keys, t.tolist())}


def barrier(env: DistEnv) -> None:
    """Wait for every rank (no-op in a single process)."""
    if env.distributed and dist.is_initialized():
        if env.backend == "nccl":
            dist.barrier(device_ids=[env.local_rank])
        else:
            dist.barrier()


def broadcast_object(obj, env: DistEnv):
    """Send a picklable object from rank 0 to every rank (used for small control data only)."""
    if not env.distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]
