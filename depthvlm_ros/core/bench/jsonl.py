"""Reader for DepthVLM-Bench annotation files (the authors' JSONL format).

One JSON object per line, as written by the DepthVLM authors' data pipeline::

    {"image": "rgb/0001.jpg", "depth_path": "depth/0001.png", "depth_scale": 1000.0,
     "original_fx": 1430.9, "canonical_fx": 1000.0, "canonical_size": [1342, 1006],
     "prompt": "...", "solution": "...", "pixel_coords": [[115, 107], ...],
     "depth": [1.021, ...], "depth_type": "z_depth"}

``pixel_coords`` are ``[col, row]`` at the original RGB resolution (``original_rgb_size`` when
given). Optional fields understood here: ``original_rgb_size``, ``original_depth_size``,
``fy``, ``cx``, ``cy`` (our synthetic generator writes them), ``mask_valid_path``,
``mask_transp_path`` (iBims-1), ``depth_format`` (``binary_float32`` for ETH3D), ``dataset``,
``qa_type``. Unknown fields are kept in :attr:`BenchRecord.extra`.

Paths are relative to the JSONL's folder unless an image / depth root is given (the authors keep
the annotation and the data in separate trees). Every problem is reported as an
:class:`~depthvlm_ros.core.errors.AnnotationError` naming ``file:line``.
"""

from __future__ import annotations

import json
import math
import os
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..errors import AnnotationError

__all__ = ["BenchRecord", "read_jsonl", "parse_record", "load_rgb", "load_gt_depth",
           "apply_gt_masks", "DEFAULT_DEPTH_PROMPT"]

#: The authors' default dense-depth prompt (used when a line has no ``prompt``).
DEFAULT_DEPTH_PROMPT = ("Given this image, estimate the metric depth (in meters, rounded to two "
                        "decimal places) for every pixel of the image.")

_KNOWN = {"image", "depth_path", "depth_scale", "original_fx", "canonical_fx", "canonical_size",
          "prompt", "solution", "pixel_coords", "depth", "depth_type", "original_rgb_size",
          "original_depth_size", "fy", "cx", "cy", "mask_valid_path", "mask_transp_path",
          "depth_format", "dataset", "qa_type"}

# ETH3D raw depth is a headerless float32 file; the reference only knows this size.
_BINARY_SIZES = ((6048, 4032),)


@dataclass(frozen=True)
class BenchRecord:
    """One annotated image.

    Attributes:
        image: absolute path of the RGB image.
        depth_path: absolute path of the GT depth map, or None.
        depth_scale: raw depth value per metre (1000 for millimetre PNGs).
        original_fx: focal length (pixels) of the RGB image.
        canonical_fx: focal length the image is normalised to (1000 in DepthVLM).
        canonical_size: ``(W, H)`` after the canonical-focal resize (evaluation grid), or None.
        prompt: question text.
        solution: reference answer text.
        pixel_coords: ``((col, row), ...)`` evaluation points at the original RGB resolution.
        depth: GT depth (metres) at ``pixel_coords``.
        depth_type: ``z_depth`` (distance along the optical axis) or another declared type.
        original_rgb_size: ``(W, H)`` the coordinates refer to, or None (use the image's size).
        fy, cx, cy: further intrinsics when the annotation has them.
        mask_valid_path, mask_transp_path: optional masks (0 = invalid) as in iBims-1.
        depth_format: None (image file) or ``binary_float32``.
        dataset, qa_type: labels written by our synthetic generator.
        source: ``file:line`` the record came from (for error messages).
        extra: fields this reader does not interpret.
    """

    image: Path
    depth_path: Path | None
    original_fx: float
    depth_scale: float = 1000.0
    canonical_fx: float = 1000.0
    canonical_size: tuple[int, int] | None = None
    prompt: str = DEFAULT_DEPTH_PROMPT
    solution: str = ""
    pixel_coords: tuple[tuple[float, float], ...] = ()
    depth: tuple[float, ...] = ()
    depth_type: str = "z_depth"
    original_rgb_size: tuple[int, int] | None = None
    original_depth_size: tuple[int, int] | None = None
    fy: float | None = None
    cx: float | None = None
    cy: float | None = None
    mask_valid_path: Path | None = None
    mask_transp_path: Path | None = None
    depth_format: str | None = None
    dataset: str | None = None
    qa_type: str | None = None
    source: str = ""
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def stem(self) -> str:
        """File stem of the image (the name of its ``.npy`` prediction)."""
        return self.image.stem

    @property
    def has_points(self) -> bool:
        return len(self.pixel_coords) > 0

    @property
    def seed(self) -> int:
        """A fixed seed from the JSONL file's name and the line, so a record's random picks
        repeat on every run however the file's path is written (relative, absolute, moved)."""
        path, _, line = self.source.rpartition(":")
        return zlib.crc32(f"{Path(path).name}:{line}".encode("utf-8"))


# ----------------------------------------------------------------------------------------------
# Field validation
# ----------------------------------------------------------------------------------------------

def _is_number(v: Any) -> bool:
    # bool is an int subclass; "true" is not a depth.
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _finite(v: Any) -> bool:
    """A JSON number that is finite as a float (huge integers overflow float())."""
    if not _is_number(v):
        return False
    try:
        return math.isfinite(float(v))
    except OverflowError:
        return False


#: What :func:`_given` returns for a field that is absent or null.
_ABSENT = object()


def _given(obj: dict, key: str, where: str, required: bool) -> Any:
    """The field's value, or :data:`_ABSENT` (an error when the field is required)."""
    if key not in obj or obj[key] is None:
        if required:
            raise AnnotationError(f"{where}: missing required field '{key}'")
        return _ABSENT
    return obj[key]


def _num(obj: dict, key: str, where: str, *, required: bool = False, positive: bool = False,
         default: float | None = None) -> float | None:
    v = _given(obj, key, where, required)
    if v is _ABSENT:
        return default
    if not _finite(v):
        raise AnnotationError(f"{where}: field '{key}' must be a finite number, got {v!r:.60}")
    if positive and v <= 0:
        raise AnnotationError(f"{where}: field '{key}' must be > 0, got {v!r}")
    return float(v)


def _str(obj: dict, key: str, where: str, *, required: bool = False,
         default: str | None = None) -> str | None:
    v = _given(obj, key, where, required)
    if v is _ABSENT:
        return default
    if not isinstance(v, str):
        raise AnnotationError(f"{where}: field '{key}' must be a string, got {type(v).__name__}")
    if required and not v.strip():
        raise AnnotationError(f"{where}: field '{key}' is empty")
    return v


def _size(obj: dict, key: str, where: str) -> tuple[int, int] | None:
    v = _given(obj, key, where, required=False)
    if v is _ABSENT:
        return None
    ok = isinstance(v, list) and len(v) == 2 and all(
        _finite(x) and float(x) == int(x) and x > 0 for x in v)
    if not ok:
        raise AnnotationError(f"{where}: field '{key}' must be [width, height] positive "
                              f"integers, got {v!r:.60}")
    return int(v[0]), int(v[1])


def _points(obj: dict, where: str) -> tuple[tuple[tuple[float, float], ...], tuple[float, ...]]:
    has_c, has_d = obj.get("pixel_coords") is not None, obj.get("depth") is not None
    if not has_c and not has_d:
        return (), ()
    if has_c != has_d:
        raise AnnotationError(f"{where}: 'pixel_coords' and 'depth' must be given together")
    coords, depth = obj["pixel_coords"], obj["depth"]
    if not isinstance(coords, list) or not isinstance(depth, list):
        raise AnnotationError(f"{where}: 'pixel_coords' and 'depth' must be lists")
    if len(coords) != len(depth):
        raise AnnotationError(f"{where}: {len(coords)} pixel_coords but {len(depth)} depth values")
    pts = []
    for i, c in enumerate(coords):
        if (not isinstance(c, list) or len(c) != 2
                or not all(_finite(x) for x in c)):
            raise AnnotationError(f"{where}: pixel_coords[{i}] must be [col, row] numbers, "
                                  f"got {c!r:.60}")
        pts.append((float(c[0]), float(c[1])))
    ds = []
    for i, d in enumerate(depth):
        if not _finite(d) or d < 0:
            raise AnnotationError(f"{where}: depth[{i}] must be a finite number >= 0, got {d!r:.60}")
        ds.append(float(d))
    return tuple(pts), tuple(ds)


def _resolve(rel: str, root: Path) -> Path:
    p = Path(rel)
    if p.is_absolute() and p.exists():
        return p
    # The reference joins root + path.lstrip("/"), so a leading slash still means "in the root".
    return root / rel.lstrip("/")


def parse_record(obj: Any, where: str, image_root: Path, depth_root: Path,
                 check_files: bool = True) -> BenchRecord:
    """Validate one decoded JSON line and build its :class:`BenchRecord`.

    Args:
        obj: the decoded JSON value.
        where: ``file:line`` for error messages.
        image_root: folder ``image`` is relative to.
        depth_root: folder ``depth_path`` and mask paths are relative to.
        check_files: raise when the image or depth file does not exist.

    Raises:
        AnnotationError: on any missing or mistyped field or missing file.
    """
    if not isinstance(obj, dict):
        raise AnnotationError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    image_rel = _str(obj, "image", where, required=True)
    depth_rel = _str(obj, "depth_path", where)
    coords, depth = _points(obj, where)
    if not depth_rel and not coords:
        raise AnnotationError(f"{where}: needs 'depth_path' or 'pixel_coords' + 'depth' "
                              "(nothing to evaluate against)")
    depth_format = _str(obj, "depth_format", where)
    if depth_format not in (None, "binary_float32"):
        raise AnnotationError(f"{where}: unknown depth_format {depth_format!r}")
    image = _resolve(image_rel, image_root)
    depth_path = _resolve(depth_rel, depth_root) if depth_rel else None
    masks = {}
    for key in ("mask_valid_path", "mask_transp_path"):
        rel = _str(obj, key, where)
        masks[key] = _resolve(rel, depth_root) if rel else None
    if check_files:
        if not image.is_file():
            raise AnnotationError(f"{where}: image not found: {image}")
        if depth_path is not None and not depth_path.is_file():
            raise AnnotationError(f"{where}: depth map not found: {depth_path}")
    return BenchRecord(
        image=image,
        depth_path=depth_path,
        original_fx=_num(obj, "original_fx", where, required=True, positive=True),
        depth_scale=_num(obj, "depth_scale", where, positive=True, default=1000.0),
        canonical_fx=_num(obj, "canonical_fx", where, positive=True, default=1000.0),
        canonical_size=_size(obj, "canonical_size", where),
        prompt=_str(obj, "prompt", where, default=DEFAULT_DEPTH_PROMPT),
        solution=_str(obj, "solution", where, default=""),
        pixel_coords=coords,
        depth=depth,
        depth_type=_str(obj, "depth_type", where, default="z_depth"),
        original_rgb_size=_size(obj, "original_rgb_size", where),
        original_depth_size=_size(obj, "original_depth_size", where),
        fy=_num(obj, "fy", where, positive=True),
        cx=_num(obj, "cx", where),
        cy=_num(obj, "cy", where),
        mask_valid_path=masks["mask_valid_path"],
        mask_transp_path=masks["mask_transp_path"],
        depth_format=depth_format,
        dataset=_str(obj, "dataset", where),
        qa_type=_str(obj, "qa_type", where),
        source=where,
        extra={k: v for k, v in obj.items() if k not in _KNOWN},
    )


def read_jsonl(path: str | os.PathLike, *, image_root: str | os.PathLike | None = None,
               depth_root: str | os.PathLike | None = None, check_files: bool = True,
               limit: int | None = None) -> list[BenchRecord]:
    """Read a DepthVLM-Bench JSONL file.

    Args:
        path: the annotation file.
        image_root: folder image paths are relative to (default: the file's folder).
        depth_root: folder depth / mask paths are relative to (default: ``image_root``).
        check_files: fail on missing image / depth files.
        limit: read at most this many records.

    Returns:
        The records in file order (blank lines are skipped).

    Raises:
        AnnotationError: unreadable file, malformed line, bad field or missing file; the
            message starts with ``file:line``.
    """
    path = Path(path)
    if not path.is_file():
        raise AnnotationError(f"{path}: annotation file not found")
    iroot = Path(image_root) if image_root is not None else path.parent
    droot = Path(depth_root) if depth_root is not None else iroot
    records: list[BenchRecord] = []
    try:
        fh = open(path, "rb")
    except OSError as exc:
        raise AnnotationError(f"{path}: cannot open: {exc.strerror or exc}") from None
    with fh:
        for lineno, raw in enumerate(fh, start=1):
            where = f"{path}:{lineno}"
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise AnnotationError(f"{where}: not valid UTF-8") from None
            if not line.strip():
                continue
            try:
                # parse_constant turns NaN / Infinity (accepted by Python's json) into errors.
                obj = json.loads(line, parse_constant=_reject_constant)
            except (json.JSONDecodeError, ValueError, RecursionError) as exc:
                msg = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
                raise AnnotationError(f"{where}: invalid JSON: {msg}") from None
            records.append(parse_record(obj, where, iroot, droot, check_files))
            if limit is not None and len(records) >= limit:
                break
    if not records:
        raise AnnotationError(f"{path}: contains no records")
    return records


def _reject_constant(name: str) -> None:
    raise ValueError(f"non-finite number {name} is not allowed")


# ----------------------------------------------------------------------------------------------
# Loading images and depth
# ----------------------------------------------------------------------------------------------

def load_rgb(record: BenchRecord) -> np.ndarray:
    """The record's image as (H, W, 3) uint8 RGB.

    Raises:
        AnnotationError: the file is missing or not an image.
    """
    try:
        with Image.open(record.image) as im:
            return np.asarray(im.convert("RGB"), dtype=np.uint8).copy()
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise AnnotationError(f"{record.source}: cannot read image {record.image}: {exc}") from None


def _read_mask(path: Path, shape: tuple[int, int], where: str) -> np.ndarray | None:
    from .metrics import resize_nearest  # local: metrics does not depend on this module
    if not path.is_file():
        return None  # the reference silently ignores a missing mask
    try:
        with Image.open(path) as im:
            m = np.asarray(im.convert("L"))
    except (OSError, ValueError) as exc:
        raise AnnotationError(f"{where}: cannot read mask {path}: {exc}") from None
    if m.shape != shape:
        m = resize_nearest(m, (shape[1], shape[0]))
    return m


def load_gt_depth(record: BenchRecord, *, masks: bool = True) -> np.ndarray | None:
    """GT depth in metres at its native resolution, not capped.

    Args:
        record: the annotation.
        masks: apply ``mask_valid_path`` / ``mask_transp_path`` (0 = invalid). The authors'
            loader applies them for the dense protocol (and in training) but not in its
            sparse-points branch, so the benchmark loads with ``masks=False`` and masks the
            dense copy with :func:`apply_gt_masks`.

    Returns:
        (H, W) float32, or None when the record has no depth map.

    Raises:
        AnnotationError: the file is missing, unreadable or not single-channel.
    """
    if record.depth_path is None:
        return None
    p, where = record.depth_path, record.source
    try:
        if record.depth_format == "binary_float32":
            raw = np.fromfile(p, dtype=np.float32)
            sizes = ([record.original_depth_size] if record.original_depth_size else []) + list(_BINARY_SIZES)
            for w, h in sizes:
                if w * h == raw.size:
                    depth = raw.reshape(h, w).copy()
                    break
            else:
                raise AnnotationError(f"{where}: binary depth {p} has {raw.size} values, which "
                                      "matches no known size (set original_depth_size)")
        elif p.suffix.lower() == ".npy":
            depth = np.load(p, allow_pickle=False).astype(np.float32) / record.depth_scale
        else:
            with Image.open(p) as im:
                depth = np.asarray(im).astype(np.float32) / record.depth_scale
    except AnnotationError:
        raise
    except (OSError, ValueError) as exc:
        raise AnnotationError(f"{where}: cannot read depth map {p}: {exc}") from None
    if depth.ndim != 2:
        raise AnnotationError(f"{where}: depth map {p} must be single-channel, got shape {depth.shape}")
    depth[~np.isfinite(depth)] = 0.0
    return apply_gt_masks(record, depth, copy=False) if masks else depth


def apply_gt_masks(record: BenchRecord, depth: np.ndarray, *, copy: bool = True) -> np.ndarray:
    """Zero ``depth`` where the record's masks are 0 (iBims-1 ``mask_valid`` / ``mask_transp``).

    Masks of another size are nearest-resized to the depth map first, and a mask file that does
    not exist is ignored, both as the authors' ``_load_depth`` does.

    Args:
        record: the annotation (its mask paths may be None).
        depth: (H, W) native-resolution depth in metres.
        copy: leave ``depth`` untouched and return a masked copy (only when a mask applies).

    Returns:
        The masked map (``depth`` itself when the record has no mask).
    """
    out = depth
    for mpath in (record.mask_valid_path, record.mask_transp_path):
        if mpath is not None:
            m = _read_mask(mpath, depth.shape, record.source)
            if m is not None:
                if copy and out is depth:
                    out = depth.copy()
                out[m == 0] = 0.0
    return out
