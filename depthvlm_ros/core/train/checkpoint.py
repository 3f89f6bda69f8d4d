"""Self-describing training checkpoints: writing them, finding them and resuming from them.

A checkpoint is a standard model folder (:func:`write_model_folder`, safetensors) that loads
with ``model_path``, plus the trainer state next to the weights: ``trainer_state.json`` (step,
stage, RNG of Python / NumPy, config), ``optimizer.safetensors`` (AdamW moments keyed by
parameter name, with ``optimizer_groups.json``) and ``rng_rank{r}.safetensors`` (torch CPU /
CUDA generator states per rank). No pickle is written or read. ``checkpoints/latest`` names
the newest checkpoint of a run folder (``--resume auto``).
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..folders import write_model_folder
from .distributed import DistEnv

__all__ = ["TRAINER_STATE", "resolve_resume", "read_trainer_state", "write_trainer_state",
           "write_folder_atomically", "mark_latest", "prune_checkpoints", "rng_state",
           "seed_rngs", "restore_rngs", "save_torch_rngs", "gather_optimizer_state",
           "save_optimizer", "load_optimizer", "write_param_digest"]

#: The file that makes a model folder a training checkpoint.
TRAINER_STATE = "trainer_state.json"


# ----------------------------------------------------------------------------------------------
# Finding and writing checkpoints
# ----------------------------------------------------------------------------------------------

def resolve_resume(resume: str, ckpt_dir: Path) -> Path | None:
    """The checkpoint folder ``resume`` names: ``""`` none, ``"auto"`` the latest, or a path.

    ``"auto"`` without a ``latest`` file is a fresh start (None); a named folder without a
    trainer state is an error.
    """
    if not resume:
        return None
    if resume == "auto":
        latest = ckpt_dir / "latest"
        if not latest.is_file():
            return None
        path = ckpt_dir / latest.read_text().strip()
    else:
        path = Path(resume)
    if not (path / TRAINER_STATE).is_file():
        raise FileNotFoundError(f"{path} is not a training checkpoint (no trainer_state.json)")
    return path


def read_trainer_state(path: Path) -> dict[str, Any]:
    """The trainer state of checkpoint folder ``path``."""
    return json.loads((path / TRAINER_STATE).read_text())


def write_trainer_state(path: Path, state: dict[str, Any]) -> None:
    """Write ``state`` as the trainer state of checkpoint folder ``path``."""
    (path / TRAINER_STATE).write_text(json.dumps(state, default=str) + "\n")


def write_folder_atomically(model: nn.Module, tokenizer, path: Path,
                            meta: dict[str, Any]) -> None:
    """Write a model folder next to ``path`` and only then put it in place.

    A crash while writing leaves the previous folder (or none) behind, never a half-written
    one that a resume or ``model_path`` would trip over.
    """
    tmp = path.with_name(path.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    write_model_folder(model, tokenizer, tmp, meta)
    if path.exists():
        shutil.rmtree(path)
    tmp.rename(path)


def mark_latest(ckpt_dir: Path, name: str) -> None:
    """Record checkpoint ``name`` as the latest of ``ckpt_dir`` (atomically)."""
    (ckpt_dir / "latest.tmp").write_text(name + "\n")
    os.replace(ckpt_dir / "latest.tmp", ckpt_dir / "latest")


def prune_checkpoints(ckpt_dir: Path, keep: int) -> None:
    """Delete all but the newest ``keep`` (at least one) ``step-*`` checkpoints."""
    ckpts = sorted(p for p in ckpt_dir.glob("step-*") if p.is_dir()
                   and not p.name.endswith(".tmp"))
    for old in ckpts[:-max(1, keep)]:
        shutil.rmtree(old, ignore_errors=True)


# ----------------------------------------------------------------------------------------------
# Random number generators
# ----------------------------------------------------------------------------------------------

def rng_state() -> dict[str, Any]:
    """Python's and NumPy's global generator states, JSON-serialisable."""
    np_state = np.random.get_state()
    return {"python": repr(random.getstate()),
            "numpy": [np_state[0], np_state[1].tolist(), *np_state[2:]]}


def _set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(_to_tuple(ast.literal_eval(state["python"])))
    n = state["numpy"]
    np.random.set_state((n[0], np.array(n[1], dtype=np.uint32), *n[2:]))


def _to_tuple(x):
    return tuple(_to_tuple(v) for v in x) if isinstance(x, (list, tuple)) else x


def seed_rngs(seed: int, env: DistEnv) -> None:
    """Seed a fresh run: Python and NumPy per rank, torch alike on all ranks."""
    random.seed(seed + env.rank)
    np.random.seed(seed + env.rank)
    torch.manual_seed(seed)  # same init on all ranks (DDP also broadcasts it)


def restore_rngs(path: Path, state: dict[str, Any], env: DistEnv) -> None:
    """Restore the generators saved in checkpoint ``path`` (``state``: its ``rng`` entry)."""
    _set_rng_state(state)
    rng_file = path / f"rng_rank{env.rank}.safetensors"
    if rng_file.is_file():
        from safetensors.torch import load_file

        st = load_file(str(rng_file))
        torch.set_rng_state(st["torch_cpu"])
        if "torch_cuda" in st and torch.cuda.is_available():
            torch.cuda.set_rng_state(st["torch_cuda"], env.device)


def save_torch_rngs(path: Path, env: DistEnv) -> None:
    """Write this rank's torch generator states into checkpoint ``path``."""
    from safetensors.torch import save_file

    rng = {"torch_cpu": torch.get_rng_state()}
    if env.device.type == "cuda":
        rng["torch_cuda"] = torch.cuda.get_rng_state(env.device)
    save_file(rng, str(path / f"rng_rank{env.rank}.safetensors"))


# ----------------------------------------------------------------------------------------------
# Optimizer state
# ----------------------------------------------------------------------------------------------

def _flatten_optimizer(osd: dict[str, Any]) -> tuple[dict[str, torch.Tensor], list[dict]]:
    tensors = {}
    for name, st in osd["state"].items():
        for k, v in st.items():
            t = v if torch.is_tensor(v) else torch.tensor(v)
            tensors[f"{name}::{k}"] = t.detach().to("cpu").contiguous()
    return tensors, osd["param_groups"]


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], groups: list[dict]) -> dict[str, Any]:
    state: dict[str, dict[str, torch.Tensor]] = {}
    for key, t in tensors.items():
        name, k = key.rsplit("::", 1)
        state.setdefault(name, {})[k] = t
    return {"state": state, "param_groups": groups}


def gather_optimizer_state(wrapped: nn.Module, opt: torch.optim.Optimizer) -> dict[str, Any]:
    """The full optimizer state keyed by parameter name, on CPU (a collective under FSDP)."""
    from torch.distributed.checkpoint.state_dict import (StateDictOptions,
                                                         get_optimizer_state_dict)

    return get_optimizer_state_dict(wrapped, opt, options=StateDictOptions(
        full_state_dict=True, cpu_offload=True))


def save_optimizer(path: Path, osd: dict[str, Any]) -> None:
    """Write a :func:`gather_optimizer_state` result into checkpoint ``path``."""
    from safetensors.torch import save_file

    tensors, groups = _flatten_optimizer(osd)
    save_file(tensors, str(path / "optimizer.safetensors"))
    (path / "optimizer_groups.json").write_text(json.dumps(groups, default=str))


def load_optimizer(path: Path, wrapped: nn.Module, opt: torch.optim.Optimizer) -> None:
    """Load checkpoint ``path``'s optimizer state into ``opt`` (nothing when it has none)."""
    from safetensors.torch import load_file
    from torch.distributed.checkpoint.state_dict import (StateDictOptions,
                                                         set_optimizer_state_dict)

    if not (path / "optimizer.safetensors").is_file():
        return
    groups = json.loads((path / "optimizer_groups.json").read_text())
    osd = _unflatten_optimizer(load_file(str(path / "optimizer.safetensors")), groups)
    set_optimizer_state_dict(wrapped, opt, osd, options=StateDictOptions(full_state_dict=True))


# ----------------------------------------------------------------------------------------------
def write_param_digest(model: nn.Module, out: Path, env: DistEnv, step: int) -> None:
    """Write an exact digest of this rank's parameters (tests compare ranks and resumes)."""
    digest = {}
    for name, p in model.state_dict().items():
        t = p.full_tensor() if hasattr(p, "full_tensor") else p
        digest[name] = hashlib.sha256(t.detach().cpu().contiguous().numpy().tobytes()
                                      ).hexdigest()[:16]
    (out / f"params_rank{env.rank}.json").write_text(json.dumps(
        {"rank": env.rank, "world_size": env.world_size, "step": step, "params": digest},
        indent=0))
