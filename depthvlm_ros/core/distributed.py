"""Process groups for ``torchrun``: join one when launched by it, else run as one process.

``torchrun`` starts one process per device and sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``MASTER_ADDR`` and ``MASTER_PORT``. Without them (a plain ``python`` run) everything here
degrades to a single process with no process group, so training, ``depthvlm bench`` and
``depthvlm replay`` run both ways. The backend is NCCL on CUDA and Gloo on CPU.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

__all__ = ["DistEnv", "init_distributed", "shutdown_distributed", "all_reduce_mean", "barrier",
           "broadcast_object", "gather_to_main", "shard_indices", "rank_device"]


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


def shutdown_distributed(wait: bool = False) -> None:
    """Leave the process group (if any) so the launcher sees a clean exit.

    Args:
        wait: meet every rank at a barrier first. Ranks that finish early (the workers of a
            sharded replay, while rank 0 still writes the bag) must not tear their Gloo
            connections down under a peer: exiting with a live process group can abort the
            process, and torchrun then kills the ranks still working.
    """
    if dist.is_available() and dist.is_initialized():
        if wait:
            dist.barrier()
        dist.destroy_process_group()


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


def gather_to_main(obj: Any, env: DistEnv) -> list[Any] | None:
    """Every rank's picklable ``obj``, in rank order, on rank 0 (None on the other ranks).

    In a single process: ``[obj]``.
    """
    if not env.distributed:
        return [obj]
    box: list[Any] | None = [None] * env.world_size if env.is_main else None
    dist.gather_object(obj, box, dst=0)
    return box


def shard_indices(n: int, env: DistEnv) -> range:
    """The items ``0 .. n-1`` this rank takes: every ``world_size``-th, from its rank.

    Interleaved rather than in blocks, so ranks get similar mixes of a sorted list.
    """
    return range(env.rank, n, env.world_size)


def rank_device(device: str | None) -> str | None:
    """The torch device a rank's model goes on: under ``torchrun`` with CUDA, ``cuda`` and
    ``auto`` mean this rank's GPU (``cuda:LOCAL_RANK``), so that ranks do not share GPU 0.

    Anything else (an explicit ``cuda:N``, ``cpu``, a single process) is returned unchanged.
    """
    if device in (None, "auto", "cuda") and int(os.environ.get("WORLD_SIZE", "1")) > 1 \
            and torch.cuda.is_available():
        return f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
    return device
