"""The engine cache: its folder, atomic writes, file hashes, and TensorRT engine keys and files.

An engine is stored as ``trt-<key digest[:20]>.engine`` with a ``.json`` record of its full
key and its size and sha256; :func:`check_engine_file` hands it out only when both match.
Nothing here needs TensorRT except :func:`current_engine_key`, which reads its version.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ..errors import ExportError

if TYPE_CHECKING:  # the profile's module imports this one
    from .tensorrt import TrtProfile

__all__ = [
    "ENGINE_FORMAT",
    "EngineKey",
    "default_cache_dir",
    "atomic_write",
    "file_sha256",
    "current_engine_key",
    "engine_paths",
    "write_engine",
    "check_engine_file",
]

ENGINE_FORMAT = "depthvlm-trt-engine/1"


def default_cache_dir(config=None) -> Path:
    """``config.engine_cache_dir`` when set, else ``~/.cache/depthvlm_ros`` (created)."""
    raw = getattr(config, "engine_cache_dir", "") if config is not None else ""
    path = Path(os.path.expanduser(raw)) if raw else Path.home() / ".cache" / "depthvlm_ros"
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ExportError(f"cannot create the engine cache folder {path}: {exc}") from None
    return path


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` next to ``path`` and rename it into place (never a half-written file)."""
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=str(path.parent))
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


@dataclass(frozen=True)
class EngineKey:
    """Everything a serialized engine depends on; engines are reused only on an exact match."""

    gpu_name: str
    compute_capability: str
    tensorrt_version: str
    onnx_sha256: str
    precision: str
    profile: dict

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def digest(self) -> str:
        """sha256 of the key's canonical JSON (sorted keys, no whitespace)."""
        text = json.dumps({"format": ENGINE_FORMAT, **self.as_dict()}, sort_keys=True,
                          separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()


def current_engine_key(onnx_sha256: str, precision: str, profile: TrtProfile,
                       device: torch.device | None = None) -> EngineKey:
    """The engine key for this machine's GPU and TensorRT (both must be present).

    Args:
        onnx_sha256: sha256 of the ONNX file the engine is built from.
        precision: ``"fp32"`` or ``"fp16"``.
        profile: the engine's optimization profile.
        device: the CUDA device (default: torch's current one).
    """
    import tensorrt as trt

    dev = device if device is not None else torch.device("cuda", torch.cuda.current_device())
    major, minor = torch.cuda.get_device_capability(dev)
    return EngineKey(torch.cuda.get_device_name(dev), f"{major}.{minor}", trt.__version__,
                     onnx_sha256, precision, profile.as_dict())


def engine_paths(cache_dir: str | os.PathLike, key: EngineKey) -> tuple[Path, Path]:
    """(engine file, key file) for ``key`` in ``cache_dir``."""
    stem = f"trt-{key.digest()[:20]}"
    return Path(cache_dir) / f"{stem}.engine", Path(cache_dir) / f"{stem}.json"


def write_engine(cache_dir: str | os.PathLike, key: EngineKey, blob: bytes) -> Path:
    """Store a serialized engine with its key file (engine first, record last, both atomic)."""
    engine, record = engine_paths(cache_dir, key)
    engine.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(engine, bytes(blob))
    info = {"format": ENGINE_FORMAT, "key": key.as_dict(), "key_digest": key.digest(),
            "engine_file": engine.name, "engine_bytes": len(blob),
            "engine_sha256": hashlib.sha256(bytes(blob)).hexdigest(),
            "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    atomic_write(record, (json.dumps(info, indent=2) + "\n").encode())
    return engine


def check_engine_file(cache_dir: str | os.PathLike, key: EngineKey) -> tuple[bytes | None, str]:
    """Read a cached engine if, and only if, it is the engine for ``key`` and intact.

    Returns:
        ``(engine bytes, "ok")``, or ``(None, reason)`` when the engine is missing, has no or
        an unreadable key file, was built for another key (stale), or its size or sha256
        differ from the record (corrupt or truncated).
    """
    engine, record = engine_paths(cache_dir, key)
    if not engine.is_file():
        return None, "no cached engine"
    if not record.is_file():
        return None, f"key file {record.name} is missing"
    try:
        info = json.loads(record.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        return None, f"key file {record.name} is unreadable ({exc})"
    if info.get("format") != ENGINE_FORMAT:
        return None, f"key file format {info.get('format')!r} is not {ENGINE_FORMAT!r}"
    if info.get("key") != key.as_dict() or info.get("key_digest") != key.digest():
        stored = info.get("key") or {}
        changed = sorted(k for k in key.as_dict() if stored.get(k) != key.as_dict()[k])
        return None, f"stale engine: key differs in {', '.join(changed) or 'digest'}"
    blob = engine.read_bytes()
    if len(blob) != info.get("engine_bytes"):
        return None, f"engine size {len(blob)} differs from the recorded {info.get('engine_bytes')}"
    if hashlib.sha256(blob).hexdigest() != info.get("engine_sha256"):
        return None, "engine sha256 differs from the record (corrupt file)"
    return blob, "ok"
