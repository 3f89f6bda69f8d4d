"""Model wrapping for ``torchrun`` (DDP, or FSDP for large models); the process group itself is
:mod:`depthvlm_ros.core.distributed`.

``torchrun`` starts one process per device and sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``MASTER_ADDR`` and ``MASTER_PORT``. Without them (a plain ``python`` run) everything here
degrades to a single process with no process group, so the same training code runs both ways.
The backend is NCCL on CUDA and Gloo on CPU (tests run two Gloo processes on CPU).
"""

from __future__ import annotations

from contextlib import contextmanager, nullcontext
from typing import Iterator

import torch
from torch import nn

from ..distributed import (DistEnv, all_reduce_mean, barrier, broadcast_object, init_distributed,
                           shutdown_distributed)

__all__ = ["STRATEGIES", "DistEnv", "init_distributed", "shutdown_distributed", "wrap_model",
           "unwrap_model", "all_reduce_mean", "barrier", "broadcast_object", "no_sync",
           "fsdp_full_state_dict"]

#: Data-parallel strategies :func:`wrap_model` knows.
STRATEGIES = ("ddp", "fsdp")


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


