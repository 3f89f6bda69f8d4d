"""Pinhole intrinsics, the canonical-focal resize plans and back-projection to 3-D.

Conventions follow REP 103/118 and depth_image_proc: the camera optical frame has x right,
y down, z forward; depth is z in metres; invalid depth is NaN. Principal points come from the
camera, never from the image centre.

Two resize plans bring an image to the camera the model was trained for:

* ``metric`` (:func:`plan_canonical_resize`, ours): one resample straight to a multiple of the
  token size, square canonical pixels, and an exact depth correction when the token budget
  shrinks it.
* ``release`` (:func:`plan_release_resize`): the chain of the DepthVLM authors' scripts, which
  their checkpoint was trained and evaluated with, reproduced size for size.

The token size (pixels per side of one LLM image token) is the model's ViT patch times its
spatial merge (:func:`token_pixels_of`); every plan takes it as ``token_pixels``, default
:data:`TOKEN_PIXELS`, Qwen3-VL's 32.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from .errors import InputError

__all__ = ["Intrinsics", "ResizePlan", "plan_canonical_resize", "plan_release_resize",
           "plan_resize", "release_canonical_size", "smart_resize", "vl_utils_smart_resize",
           "backproject", "TOKEN_PIXELS", "check_token_pixels", "vision_patching",
           "token_pixels_of", "RESIZE_MODES", "RELEASE_MIN_PIXELS",
           "RELEASE_MAX_PIXELS", "VL_UTILS_FACTOR", "VL_UTILS_MIN_PIXELS", "VL_UTILS_MAX_PIXELS"]

#: Pixels per side of one LLM image token of Qwen3-VL (DepthVLM-4B): ViT patch 16 x spatial
#: merge 2. Only a default: a model's own size is :func:`token_pixels_of` its config.
TOKEN_PIXELS = 32

#: Resize conventions a plan can follow (``auto`` is resolved by the pipeline, never here).
RESIZE_MODES = ("release", "metric")

#: qwen_vl_utils ``process_vision_info`` defaults (``image_patch_size=14``): sides rounded to
#: multiples of 14 x merge 2 = 28, area within 4 .. 16384 tokens of 28 x 28 pixels.
VL_UTILS_FACTOR = 28
VL_UTILS_MIN_PIXELS = 4 * 28 * 28
VL_UTILS_MAX_PIXELS = 16384 * 28 * 28

#: Area limits of the Qwen3-VL image processor (preprocessor_config.json ``size``:
#: ``shortest_edge`` / ``longest_edge``, which are pixel counts despite their names).
RELEASE_MIN_PIXELS = 65536
RELEASE_MAX_PIXELS = 16777216

#: Largest canonical intermediate the release plan resamples to (64 Mpx, ~200 MB of RGB). Only
#: a camera with a focal far below canonical_fx on a huge sensor gets there; see
#: :func:`plan_release_resize`.
_MAX_CANONICAL_PIXELS = 1 << 26


def check_token_pixels(token_pixels: int) -> int:
    """``token_pixels`` as an int, or :class:`InputError` unless it is a positive even integer.

    Even because a token is ``merge`` x ``merge`` patches and every Qwen-VL merge is 2; a plan
    built for an odd size could never be laid out in patches.
    """
    if isinstance(token_pixels, bool) or not isinstance(token_pixels, numbers.Integral) \
            or token_pixels < 2 or token_pixels % 2:
        raise InputError(f"token size must be a positive even number of pixels, got "
                         f"{token_pixels!r}")
    return int(token_pixels)


def _field(obj, name: str):
    # Configs arrive as transformers objects or as the raw config.json dict.
    return obj.get(name) if isinstance(obj, Mapping) else getattr(obj, name, None)


def vision_patching(config) -> tuple[int, int]:
    """``(patch_size, spatial_merge_size)`` of a Qwen3-VL config (object or config.json dict).

    A value a config.json leaves out is Qwen3-VL's (16, 2), as transformers fills it in.

    Raises:
        InputError: a value is not a positive integer.
    """
    vision = _field(config, "vision_config")
    vision = {} if vision is None else vision
    values = []
    for name, default in (("patch_size", 16), ("spatial_merge_size", 2)):
        value = _field(vision, name)
        value = default if value is None else value
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
            raise InputError(f"vision_config.{name} must be a positive integer, got {value!r}")
        values.append(int(value))
    return values[0], values[1]


def token_pixels_of(config) -> int:
    """Pixels per side of one LLM image token of a model: ViT patch x spatial merge.

    32 for Qwen3-VL (patch 16 x merge 2); 16 for a model with patch 8.
    """
    patch, merge = vision_patching(config)
    return check_token_pixels(patch * merge)


@dataclass(frozen=True)
class Intrinsics:
    """Pinhole intrinsics in pixels for an image of ``width`` x ``height``."""

    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int

    def __post_init__(self) -> None:
        values = (self.fx, self.fy, self.cx, self.cy)
        if not all(math.isfinite(v) for v in values):
            raise InputError(f"intrinsics must be finite, got fx={self.fx} fy={self.fy} "
                             f"cx={self.cx} cy={self.cy}")
        if self.fx <= 0 or self.fy <= 0:
            raise InputError(f"focal lengths must be positive, got fx={self.fx} fy={self.fy}")
        if self.width <= 0 or self.height <= 0:
            raise InputError(f"image size must be positive, got {self.width}x{self.height}")

    @classmethod
    def from_fov(cls, width: int, height: int, hfov_deg: float) -> "Intrinsics":
        """Square-pixel intrinsics with the principal point at the centre, from a horizontal FOV."""
        if not 0.0 < hfov_deg < 180.0:
            raise InputError(f"horizontal field of view must be in (0, 180) degrees, got {hfov_deg}")
        f = (width / 2.0) / math.tan(math.radians(hfov_deg) / 2.0)
        return cls(f, f, (width - 1) / 2.0, (height - 1) / 2.0, width, height)

    @classmethod
    def from_k(cls, k, width: int, height: int) -> "Intrinsics":
        """From a row-major 3x3 camera matrix (9 numbers, as in sensor_msgs/CameraInfo.k)."""
        k = np.asarray(k, dtype=np.float64).reshape(-1)
        if k.size != 9:
            raise InputError(f"camera matrix must have 9 entries, got {k.size}")
        return cls(float(k[0]), float(k[4]), float(k[2]), float(k[5]), int(width), int(height))

    def scaled(self, width: int, height: int) -> "Intrinsics":
        """Intrinsics of the same camera after resizing the image to ``width`` x ``height``.

        Uses the pixel-edge convention (a resize maps pixel edges to pixel edges), so the
        principal point moves as ``(c + 0.5) * s - 0.5``.
        """
        sx, sy = width / self.width, height / self.height
        return Intrinsics(self.fx * sx, self.fy * sy, (self.cx + 0.5) * sx - 0.5,
                          (self.cy + 0.5) * sy - 0.5, int(width), int(height))

    def matrix(self) -> np.ndarray:
        """The 3x3 camera matrix."""
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])


@dataclass(frozen=True)
class ResizePlan:
    """How an input image is resized for the model, and how depth is brought back.

    Attributes:
        model_width, model_height: size fed to the vision tower (multiples of
            ``token_pixels``).
        grid_w, grid_h: LLM token grid (model size / ``token_pixels``).
        depth_scale: factor applied to the model's depth so it is metric for the input camera.
            Metric plan: ``effective_fx / canonical_fx``, 1 up to rounding when the canonical
            image fits the token budget, smaller when the image had to be shrunk further.
            Release plan: exactly 1 (the release uses the output as metres), or the extra
            shrink forced by the token budget.
        mode: ``metric`` or ``release``: which convention made this plan.
        steps: resamples applied before the final one, as ``(width, height, filter)`` with
            filter ``bilinear`` or ``bicubic``; the final resample to the model size is always
            bicubic. Empty for the metric plan (a single resample).
        token_pixels: pixels per side of one LLM token of the model the plan is for (last,
            so plans written positionally before it existed keep their meaning).
    """

    model_width: int
    model_height: int
    depth_scale: float
    mode: str = "metric"
    steps: tuple[tuple[int, int, str], ...] = ()
    token_pixels: int = TOKEN_PIXELS

    def __post_init__(self) -> None:
        check_token_pixels(self.token_pixels)

    @property
    def grid_w(self) -> int:
        return self.model_width // self.token_pixels

    @property
    def grid_h(self) -> int:
        return self.model_height // self.token_pixels

    @property
    def num_tokens(self) -> int:
        return self.grid_w * self.grid_h


def _fit_token_budget(w: float, h: float, max_tokens: int, min_tokens: int,
                      token_pixels: int = TOKEN_PIXELS) -> tuple[int, int]:
    """Token grid ``(gw, gh)`` of a ``w`` x ``h`` pixel image scaled uniformly into the budget.

    The area is brought into ``[min_tokens, max_tokens]`` by one factor on both axes, each side
    is rounded to whole tokens, and rounding that lands just over the budget is shaved off the
    longer side.
    """
    tokens = (w / token_pixels) * (h / token_pixels)
    extra = 1.0
    if tokens > max_tokens:
        extra = math.sqrt(max_tokens / tokens)
    elif tokens < min_tokens:
        extra = math.sqrt(min_tokens / tokens)
    gw = max(1, round(w * extra / token_pixels))
    gh = max(1, round(h * extra / token_pixels))
    while gw * gh > max_tokens:
        if gw >= gh:
            gw -= 1
        else:
            gh -= 1
    return gw, gh


def _check_budget(canonical_fx: float, max_tokens: int, min_tokens: int) -> None:
    if canonical_fx <= 0:
        raise InputError(f"canonical_fx must be positive, got {canonical_fx}")
    if max_tokens < 1 or min_tokens < 1 or min_tokens > max_tokens:
        raise InputError(f"bad token budget: min {min_tokens}, max {max_tokens}")


def plan_canonical_resize(intr: Intrinsics, canonical_fx: float = 1000.0,
                          max_tokens: int = 16384, min_tokens: int = 4,
                          token_pixels: int = TOKEN_PIXELS) -> ResizePlan:
    """Plan the resize that makes the image look as if taken by the canonical camera (metric).

    The image is scaled by ``canonical_fx / fx`` horizontally and ``canonical_fx / fy``
    vertically (so pixels become square with focal ``canonical_fx``) and rounded to multiples
    of ``token_pixels`` (the model's token size). If that exceeds ``max_tokens`` (or falls below ``min_tokens``) both axes are scaled
    by the same extra factor ``s``. A camera with focal ``s * canonical_fx`` sees every object
    ``s`` times smaller, and a model trained at ``canonical_fx`` then reads it ``1 / s`` times
    farther away, so the prediction is multiplied by ``depth_scale`` (the effective focal over
    the canonical one). This keeps metric scale for any image size; only detail is lost.
    """
    _check_budget(canonical_fx, max_tokens, min_tokens)
    tp = check_token_pixels(token_pixels)
    w = intr.width * canonical_fx / intr.fx
    h = intr.height * canonical_fx / intr.fy
    gw, gh = _fit_token_budget(w, h, max_tokens, min_tokens, tp)
    mw, mh = gw * tp, gh * tp
    # Effective focal of the model image: mean of the two axes' focal after the final resize.
    eff_fx = 0.5 * (intr.fx * mw / intr.width + intr.fy * mh / intr.height)
    return ResizePlan(mw, mh, eff_fx / canonical_fx, token_pixels=tp)


def release_canonical_size(width: int, height: int, fx: float,
                           canonical_fx: float = 1000.0) -> tuple[int, int]:
    """``canonical_size`` (width, height) as the authors' data scripts compute it.

    Both sides are scaled by ``canonical_fx / fx`` (fx only: the release assumes square pixels)
    and rounded with Python's ``round`` (half to even), exactly as
    ``data_process/curate_datasets/create_data_pixel_level_*.py`` writes it into the
    annotations. A side that would round to 0 is kept at 1 (the release would fail there).
    """
    scale = canonical_fx / fx
    return max(1, round(width * scale)), max(1, round(height * scale))


def _round_to_factor(height: int, width: int, factor: int, min_pixels: int, max_pixels: int,
                     floor_rounded: bool) -> tuple[int, int]:
    """Qwen-VL's ``smart_resize``: (height, width) rounded to ``factor``, area brought into
    ``[min_pixels, max_pixels]``. Python's ``round`` (half to even) as in both originals.

    The two originals differ only in where a side is kept at one ``factor`` or more:
    ``floor_rounded`` applies it to the rounded sides (qwen_vl_utils), otherwise to the sides
    shrunk for ``max_pixels`` (transformers).
    """
    _check_ratio(height, width)
    low = factor if floor_rounded else 0
    h_bar = max(low, round(height / factor) * factor)
    w_bar = max(low, round(width / factor) * factor)
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        low = 0 if floor_rounded else factor
        h_bar = max(low, math.floor(height / beta / factor) * factor)
        w_bar = max(low, math.floor(width / beta / factor) * factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


def vl_utils_smart_resize(height: int, width: int, factor: int = VL_UTILS_FACTOR,
                          min_pixels: int = VL_UTILS_MIN_PIXELS,
                          max_pixels: int = VL_UTILS_MAX_PIXELS) -> tuple[int, int]:
    """``qwen_vl_utils.smart_resize``: (height, width) rounded to ``factor`` within an area range.

    Raises:
        InputError: aspect ratio above 200 (qwen_vl_utils raises too).
    """
    return _round_to_factor(height, width, factor, min_pixels, max_pixels, floor_rounded=True)


def smart_resize(height: int, width: int, factor: int = TOKEN_PIXELS,
                 min_pixels: int = RELEASE_MIN_PIXELS,
                 max_pixels: int = RELEASE_MAX_PIXELS) -> tuple[int, int]:
    """transformers' Qwen2-VL ``smart_resize`` (the Qwen3-VL image processor's): (height, width).

    ``factor`` is the processor's patch x merge, i.e. the model's token size.

    Raises:
        InputError: aspect ratio above 200 (transformers raises too).
    """
    return _round_to_factor(height, width, factor, min_pixels, max_pixels, floor_rounded=False)


def _check_ratio(height: int, width: int) -> None:
    if max(height, width) / min(height, width) > 200:
        raise InputError(f"aspect ratio of {width}x{height} is above 200, which Qwen-VL "
                         "preprocessing rejects")


def plan_release_resize(intr: Intrinsics, canonical_fx: float = 1000.0,
                        max_tokens: int = 16384, min_tokens: int = 4,
                        min_pixels: int = RELEASE_MIN_PIXELS,
                        max_pixels: int = RELEASE_MAX_PIXELS,
                        token_pixels: int = TOKEN_PIXELS) -> ResizePlan:
    """Plan the authors' resize chain, the one the DepthVLM-4B checkpoint was trained with.

    1. PIL bilinear to ``canonical_size`` (:func:`release_canonical_size`, fx on both axes);
    2. qwen_vl_utils ``process_vision_info`` defaults: PIL bicubic to
       :func:`vl_utils_smart_resize` (multiples of 28);
    3. the Qwen3-VL image processor: bicubic to :func:`smart_resize` (multiples of the
       model's ``token_pixels``, 32 for DepthVLM-4B; area in ``[min_pixels, max_pixels]``,
       the folder's ``size``).

    Step 2's 28 stays whatever the model: it is qwen_vl_utils' own ``IMAGE_FACTOR`` (Qwen2-VL's
    patch 14 x merge 2), which the authors' scripts apply before the processor ever runs.

    The model's output at the step-3 size is metres as it stands (``depth_scale`` 1): the
    release never corrects for the small aspect changes of steps 2-3, and neither do we, so the
    numbers match theirs. Two departures, both outside the release's own operating range:

    * If the step-3 grid is outside ``[min_tokens, max_tokens]`` it is scaled into the budget
      as the metric plan does, the final resample goes straight to that size, and
      ``depth_scale`` is the exact effective-focal ratio of that extra scaling (the mean of
      the two axes' size ratios), so depth stays metric. The defaults (4 .. 16384 tokens)
      contain every size step 3 can produce, so this only happens under a tighter budget.
    * If the step-1 image would exceed 64 Mpx, step 1 is skipped (the input goes straight to
      the step-2 size, bicubic) to bound memory. Sizes are unchanged; pixels differ slightly.
    """
    _check_budget(canonical_fx, max_tokens, min_tokens)
    tp = check_token_pixels(token_pixels)
    if min_pixels < 1 or max_pixels < min_pixels:
        raise InputError(f"bad pixel limits: min {min_pixels}, max {max_pixels}")
    cw, ch = release_canonical_size(intr.width, intr.height, intr.fx, canonical_fx)
    h28, w28 = vl_utils_smart_resize(ch, cw)
    hp, wp = smart_resize(h28, w28, tp, min_pixels, max_pixels)
    steps = ((w28, h28, "bicubic"),)
    if cw * ch <= _MAX_CANONICAL_PIXELS:
        steps = ((cw, ch, "bilinear"),) + steps
    mw, mh, scale = wp, hp, 1.0
    if not min_tokens <= (wp // tp) * (hp // tp) <= max_tokens:
        gw, gh = _fit_token_budget(wp, hp, max_tokens, min_tokens, tp)
        mw, mh = gw * tp, gh * tp
        # The model reads the release-size image correctly; shrinking it by s makes everything
        # look 1/s farther, so the prediction is multiplied by s (per axis, averaged).
        scale = 0.5 * (mw / wp + mh / hp)
    return ResizePlan(mw, mh, scale, mode="release", steps=steps, token_pixels=tp)


def plan_resize(intr: Intrinsics, mode: str = "metric", canonical_fx: float = 1000.0,
                max_tokens: int = 16384, min_tokens: int = 4,
                min_pixels: int = RELEASE_MIN_PIXELS,
                max_pixels: int = RELEASE_MAX_PIXELS,
                token_pixels: int = TOKEN_PIXELS) -> ResizePlan:
    """The resize plan of ``mode`` (``metric`` or ``release``; see the module docstring).

    ``min_pixels`` / ``max_pixels`` (the image processor's area limits) only affect ``release``;
    ``token_pixels`` is the model's token size (:func:`token_pixels_of`).
    """
    if mode == "metric":
        return plan_canonical_resize(intr, canonical_fx, max_tokens, min_tokens, token_pixels)
    if mode == "release":
        return plan_release_resize(intr, canonical_fx, max_tokens, min_tokens, min_pixels,
                                   max_pixels, token_pixels)
    raise InputError(f"resize mode must be one of {', '.join(RESIZE_MODES)}, got {mode!r}")


def backproject(depth: np.ndarray, intr: Intrinsics) -> np.ndarray:
    """Back-project a depth image (metres, NaN invalid) to an organized (H, W, 3) float32 cloud.

    ``x = (u - cx) z / fx``, ``y = (v - cy) z / fy``, ``z = depth``; NaN depth gives NaN points.
    """
    if depth.ndim != 2:
        raise InputError(f"depth must be 2-D, got shape {depth.shape}")
    h, w = depth.shape
    if (w, h) != (intr.width, intr.height):
        intr = intr.scaled(w, h)
    z = depth.astype(np.float32, copy=False)
    u = (np.arange(w, dtype=np.float32) - np.float32(intr.cx)) / np.float32(intr.fx)
    v = (np.arange(h, dtype=np.float32) - np.float32(intr.cy)) / np.float32(intr.fy)
    out = np.empty((h, w, 3), dtype=np.float32)
    np.multiply(z, u[None, :], out=out[..., 0])
    np.multiply(z, v[:, None], out=out[..., 1])
    out[..., 2] = z
    return out
