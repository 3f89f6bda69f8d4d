"""Safetensors headers and shard indexes, read without touching the tensor bytes.

A safetensors file is an 8-byte little-endian header length, a JSON header (tensor name ->
dtype, shape, byte range) and the raw tensor bytes. Everything a folder check needs (names,
shapes, dtypes, sizes, whether a file was cut short) is in the header, so a 9 GB checkpoint is
checked in milliseconds. A sharded folder adds ``model.safetensors.index.json``, whose
``weight_map`` names the shard of every tensor; :func:`read_weight_layout` checks the two
against each other.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "INDEX_FILE",
    "SINGLE_FILE",
    "DTYPE_BYTES",
    "HeaderError",
    "TensorInfo",
    "SafetensorsHeader",
    "WeightLayout",
    "read_safetensors_header",
    "read_weight_layout",
]

#: The shard index transformers writes next to sharded weights.
INDEX_FILE = "model.safetensors.index.json"
#: The weights file of an unsharded folder.
SINGLE_FILE = "model.safetensors"
#: Bytes per element of the safetensors dtype names.
DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1,
               "U8": 1, "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1, "U16": 2, "U32": 4, "U64": 8}
#: The floating-point dtypes a weight may have.
FLOAT_DTYPES = ("F32", "BF16", "F16", "F64")
# A header is JSON text describing tensors; far larger ones are corrupt or hostile.
_MAX_HEADER_BYTES = 100_000_000


class HeaderError(ValueError):
    """A safetensors file's header is unreadable or inconsistent with the file."""


@dataclass(frozen=True)
class TensorInfo:
    """One tensor as its header describes it."""

    dtype: str
    shape: tuple[int, ...]
    nbytes: int

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


@dataclass
class SafetensorsHeader:
    """The header of one safetensors file.

    Attributes:
        path: the file.
        tensors: name -> :class:`TensorInfo`, in header order.
        file_bytes: size of the file on disk.
        needed_bytes: size the header says the file has (8 + header + data).
    """

    path: Path
    tensors: dict[str, TensorInfo]
    file_bytes: int
    needed_bytes: int

    @property
    def truncated(self) -> bool:
        return self.needed_bytes > self.file_bytes


def read_safetensors_header(path: str | os.PathLike) -> SafetensorsHeader:
    """Read and check the header of ``path`` (never its tensor bytes).

    A file cut short is returned with ``truncated`` set rather than raised, so a caller can
    tell a truncated copy from a corrupt file.

    Raises:
        HeaderError: the file is too short, the length or the JSON is invalid, or a tensor
            entry has an unknown dtype or a byte range that does not match its shape.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            raw = fh.read(8)
            if len(raw) < 8:
                raise HeaderError("file shorter than its header")
            n = int.from_bytes(raw, "little")
            if n <= 0 or n > min(size - 8, _MAX_HEADER_BYTES):
                raise HeaderError("header length out of range")
            header = json.loads(fh.read(n))
    except OSError as exc:
        raise HeaderError(str(exc)) from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise HeaderError(f"header is not JSON: {exc}") from None
    if not isinstance(header, dict):
        raise HeaderError("header is not a JSON object")
    tensors: dict[str, TensorInfo] = {}
    end = 0
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype, shape = entry["dtype"], tuple(int(s) for s in entry["shape"])
            begin, stop = (int(v) for v in entry["data_offsets"])
        except (KeyError, TypeError, ValueError):
            raise HeaderError(f"tensor {name}: malformed header entry") from None
        if dtype not in DTYPE_BYTES:
            raise HeaderError(f"tensor {name}: unknown dtype {dtype}")
        nbytes = math.prod(shape) * DTYPE_BYTES[dtype]
        if stop - begin != nbytes or begin < 0:
            raise HeaderError(f"tensor {name}: byte range {begin}..{stop} does not hold "
                              f"{dtype} {list(shape)}")
        tensors[name] = TensorInfo(dtype, shape, nbytes)
        end = max(end, stop)
    return SafetensorsHeader(path, tensors, size, 8 + n + end)


@dataclass
class WeightLayout:
    """The weight files of a folder, their headers and what is wrong with them.

    Attributes:
        files: the safetensors files the loader will read (the index's shards, or the one file).
        headers: file name -> header, for the files that could be read.
        indexed: whether the folder has ``model.safetensors.index.json``.
        tensors: tensor name -> (file name, info), for every tensor found.
        problems: one line per inconsistency (missing shard, extra file, a tensor in two
            shards, a truncated or corrupt file, index and headers disagreeing).
        unreadable: tensors the index puts in a shard that is missing or corrupt (already
            reported by that shard's problem line).
    """

    files: list[str] = field(default_factory=list)
    headers: dict[str, SafetensorsHeader] = field(default_factory=dict)
    indexed: bool = False
    tensors: dict[str, tuple[str, TensorInfo]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    unreadable: set[str] = field(default_factory=set)

    @property
    def total_bytes(self) -> int:
        return sum(info.nbytes for _, info in self.tensors.values())


def read_weight_layout(folder: str | os.PathLike) -> WeightLayout:
    """Headers of every weight file of ``folder``, checked against the shard index if any.

    Never raises for a bad folder: every problem is a line in ``problems``.
    """
    folder = Path(folder)
    layout = WeightLayout()
    present = sorted(p.name for p in folder.glob("*.safetensors"))
    weight_map = _read_index(folder, layout)
    if weight_map is None:
        if len(present) > 1 and SINGLE_FILE not in present:
            layout.problems.append(f"{len(present)} safetensors files but no {INDEX_FILE} "
                                   "naming the shard of each tensor")
        layout.files = [SINGLE_FILE] if SINGLE_FILE in present else present[:1]
    else:
        layout.files = sorted(set(weight_map.values()))
        for name in layout.files:
            if name not in present:
                count = sum(1 for s in weight_map.values() if s == name)
                layout.problems.append(f"missing shard {name} (the index maps {count} tensors "
                                       "to it)")
        extra = [n for n in present if n not in layout.files]
        if extra:
            layout.problems.append(f"extra safetensors file(s) not in the index: {', '.join(extra)}")
    for name in layout.files:
        if name in present:
            _add_file(folder / name, layout)
    if weight_map is not None:
        layout.unreadable = {t for t, s in weight_map.items() if s not in layout.headers}
        _compare_index(weight_map, layout)
    return layout


def _read_index(folder: Path, layout: WeightLayout) -> dict[str, str] | None:
    path = folder / INDEX_FILE
    if not path.is_file():
        return None
    layout.indexed = True
    try:
        weight_map = json.loads(path.read_text())["weight_map"]
        if not isinstance(weight_map, dict) or not all(
                isinstance(v, str) for v in weight_map.values()):
            raise TypeError("weight_map is not a name -> file object")
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as exc:
        layout.problems.append(f"{INDEX_FILE} is unreadable: {type(exc).__name__}: {exc}")
        return {}
    return weight_map


def _add_file(path: Path, layout: WeightLayout) -> None:
    try:
        header = read_safetensors_header(path)
    except HeaderError as exc:
        layout.problems.append(f"{path.name} is not a valid safetensors file: {exc}")
        return
    layout.headers[path.name] = header
    if header.truncated:
        layout.problems.append(f"{path.name} is truncated: its header needs "
                               f"{header.needed_bytes} bytes, the file has {header.file_bytes}")
    for tensor, info in header.tensors.items():
        if tensor in layout.tensors:
            layout.problems.append(f"tensor {tensor} is in two shards: "
                                   f"{layout.tensors[tensor][0]} and {path.name}")
            continue
        layout.tensors[tensor] = (path.name, info)


def _compare_index(weight_map: dict[str, str], layout: WeightLayout) -> None:
    wrong = [(t, s) for t, s in weight_map.items()
             if s in layout.headers and layout.tensors.get(t, ("",))[0] != s]
    if wrong:
        t, s = wrong[0]
        more = f" (and {len(wrong) - 1} more)" if len(wrong) > 1 else ""
        layout.problems.append(f"the index puts {t} in {s}, whose header does not hold it{more}")
    unindexed = [t for t in layout.tensors if t not in weight_map]
    if unindexed:
        more = f" (and {len(unindexed) - 1} more)" if len(unindexed) > 1 else ""
        layout.problems.append(f"tensor {unindexed[0]} in {layout.tensors[unindexed[0]][0]} is "
                               f"not in the index, so the loader would never read it{more}")
