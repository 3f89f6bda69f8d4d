"""Frame rules: which intrinsics a frame is processed with, or why it is dropped.

One place for the rules that the node, ``depthvlm replay``, training and the benchmark all
apply to a frame, so that the same input gives the same depth, camera_info and cloud everywhere:

* :func:`camera_info_intrinsics`: a CameraInfo's K and size, validated (an uncalibrated camera's
  all-zero K, a non-pinhole bottom row, a zero size are rejected).
* :func:`frame_intrinsics`: the intrinsics an image of a given size is processed with, from its
  camera_info (rescaled when only the resolution differs), or the fallback field of view, or a
  :class:`FrameDropped` naming one of :data:`DROP_REASONS`.
* :func:`output_camera_info`: the fields of the ``depth/camera_info`` published beside a depth
  map (K/P/ROI scaled like the image, an all-zero P filled from K, D/R/binning kept).
* :func:`nearest_stamp`: the image <-> camera_info stamp pairing rule (exact, else the nearest
  within the tolerance).
* :func:`cloud_buffer`: the organized point-cloud layout (float32 x, y, z + packed rgb, 16-byte
  points, NaN invalid) that both the live and the bag PointCloud2 builders wrap.
* :func:`intrinsics_from_focal` / :func:`record_intrinsics`: the intrinsics of an image known
  by its focal length (``depthvlm predict``) or of a benchmark / training record's stored image.
* :func:`color_frame`: the RGB pixels of an image message, raw ``sensor_msgs/Image`` or
  ``sensor_msgs/CompressedImage`` (JPEG / PNG, :mod:`~depthvlm_ros.core.codecs`), or the drop
  (``bad_encoding`` / ``bad_image``) it is counted under.
* :func:`depth_on_grid`: a depth map of another sensor's resolution and intrinsics resampled
  onto the colour image's pixel grid (ground truth of a separate depth sensor).
* :func:`cloud_points`: the points of a robot-side cloud: every ``stride``-th pixel, points
  outside a range band set invalid.

ROS-free: messages are read by attribute (``k``, ``p``, ``width``, ``roi``, ...), so rclpy
messages and rosbags' deserialised messages both work; the callers build their own message
types from the returned values.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterable

import numpy as np

from .camera import Intrinsics, backproject
from .codecs import EncodingError, decode_color
from .errors import AnnotationError, InputError

if TYPE_CHECKING:  # the bench package imports this module
    from .bench.jsonl import BenchRecord

__all__ = ["ASPECT_TOLERANCE", "DROP_REASONS", "MAX_IMAGE_SIDE", "FrameDropped", "CameraInfoFields",
           "check_size", "camera_info_intrinsics", "frame_intrinsics", "output_camera_info",
           "nearest_stamp", "CLOUD_FIELDS", "cloud_buffer", "depth_cloud", "intrinsics_from_focal",
           "record_intrinsics",
           "is_compressed_message", "color_frame", "depth_on_grid", "cloud_points"]

#: Relative aspect-ratio difference under which a camera_info of another size is rescaled to
#: the image (a binned or resized stream) rather than rejected (another camera, or a crop).
ASPECT_TOLERANCE = 0.01

#: Largest image side accepted anywhere (a guard against corrupt size fields).
MAX_IMAGE_SIDE = 16384

#: Why an input frame was not processed: the counter names of the node's diagnostics
#: (``drop_<reason>``) and of a replay's ``drops``.
DROP_REASONS = {
    "bad_encoding": "the image encoding is not one of the supported colour encodings",
    "bad_image": "the image could not be decoded (size, step or data inconsistent)",
    "bad_camera_info": "the paired camera_info is unusable (zero or invalid K, bad size)",
    "camera_info_size": "camera_info is for an image of another aspect ratio",
    "no_camera_info": "no camera_info with a matching stamp, and no fallback field of view",
    "superseded": "a newer frame arrived before this one was processed (latest-frame policy)",
    "inactive": "the node was not active",
    "error": "an unexpected error while processing the frame",
}


class FrameDropped(InputError):
    """A frame that is not processed, with the counter it is dropped under.

    Attributes:
        reason: one of :data:`DROP_REASONS`.
    """

    def __init__(self, reason: str, message: str) -> None:
        if reason not in DROP_REASONS:
            raise ValueError(f"unknown drop reason {reason!r}")
        super().__init__(message)
        self.reason = reason


def check_size(height: Any, width: Any, what: str) -> tuple[int, int]:
    """``(height, width)`` as positive ints no larger than :data:`MAX_IMAGE_SIDE`.

    Raises:
        InputError: not integers, empty, or oversized.
    """
    try:
        h, w = int(height), int(width)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{what}: height/width must be integers, got {height!r}x{width!r}") from exc
    if h <= 0 or w <= 0:
        raise InputError(f"{what}: empty image ({w}x{h})")
    if h > MAX_IMAGE_SIDE or w > MAX_IMAGE_SIDE:
        raise InputError(f"{what}: {w}x{h} exceeds the limit of {MAX_IMAGE_SIDE} pixels per side")
    return h, w


def camera_info_intrinsics(msg: Any) -> Intrinsics:
    """Pinhole intrinsics from a ``sensor_msgs/CameraInfo`` (rclpy or rosbags message).

    Args:
        msg: CameraInfo whose ``k`` is the row-major 3x3 camera matrix for an image of
            ``width`` x ``height``. Skew (``k[1]``) and distortion are not modelled and are
            ignored: rectified or near-pinhole images are expected.

    Returns:
        :class:`~depthvlm_ros.core.camera.Intrinsics`.

    Raises:
        InputError: ``k`` missing or not 9 numbers, non-positive or non-finite focal lengths
            (an uncalibrated camera publishes an all-zero ``k``), non-finite principal point,
            a bottom row other than (0, 0, 1), or a zero / oversized image size.
    """
    k = getattr(msg, "k", None)
    if k is None:
        raise InputError("camera info has no k matrix")
    try:
        k = np.asarray(k, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError) as exc:
        raise InputError(f"camera info k must be numbers, got {k!r}") from exc
    h, w = check_size(getattr(msg, "height", None), getattr(msg, "width", None), "camera info")
    intr = Intrinsics.from_k(k, w, h)
    if not np.allclose(k[6:9], (0.0, 0.0, 1.0), rtol=0.0, atol=1e-9):
        raise InputError(f"camera info k is not a pinhole matrix: bottom row {k[6:9].tolist()}")
    return intr


def frame_intrinsics(width: int, height: int, info: Any | None,
                     fallback_hfov_deg: float = 0.0) -> Intrinsics:
    """The intrinsics an image of ``width`` x ``height`` is processed with.

    Args:
        width, height: the decoded image's size.
        info: its paired CameraInfo, or None when there is none.
        fallback_hfov_deg: horizontal field of view used without a CameraInfo (0 = none).

    Returns:
        The camera_info's intrinsics, scaled to the image when only the resolution differs
        (same aspect ratio within :data:`ASPECT_TOLERANCE`: a binned or resized stream), or
        square-pixel intrinsics with the principal point at the centre from the fallback FOV.

    Raises:
        FrameDropped: ``no_camera_info`` (no info and no fallback), ``bad_camera_info`` (see
            :func:`camera_info_intrinsics`) or ``camera_info_size`` (another aspect ratio).
    """
    if info is None:
        if fallback_hfov_deg > 0:
            return Intrinsics.from_fov(width, height, fallback_hfov_deg)
        raise FrameDropped("no_camera_info", "no camera_info for this image (set a fallback "
                           "field of view to process it anyway)")
    try:
        intr = camera_info_intrinsics(info)
    except InputError as exc:
        raise FrameDropped("bad_camera_info", str(exc)) from None
    if (intr.width, intr.height) == (width, height):
        return intr
    if abs((width / height) / (intr.width / intr.height) - 1.0) > ASPECT_TOLERANCE:
        raise FrameDropped("camera_info_size", f"image is {width}x{height} but camera_info is "
                           f"{intr.width}x{intr.height} (different aspect ratio)")
    return intr.scaled(width, height)


@dataclass
class CameraInfoFields:
    """The values of a ``sensor_msgs/CameraInfo``, for a caller to put into its message type.

    ``roi`` is ``(x_offset, y_offset, width, height, do_rectify)``.
    """

    width: int
    height: int
    distortion_model: str
    d: np.ndarray
    k: np.ndarray
    r: np.ndarray
    p: np.ndarray
    binning_x: int
    binning_y: int
    roi: tuple[int, int, int, int, bool]


def output_camera_info(intr: Intrinsics, info: Any | None = None) -> CameraInfoFields:
    """The camera_info published beside a depth map computed with ``intr``.

    Without ``info`` (a fallback field of view, a test camera) it is a distortion-free pinhole
    (plumb_bob, zero D, identity R, P = [K | 0]). With the image's own ``info`` its distortion
    model, D, R and binning are kept and K, P and ROI follow the image to ``intr``'s size with
    the pixel-edge convention of :meth:`Intrinsics.scaled` (focal lengths and the stereo
    baseline term scale with the image, the principal point moves as ``(c + 0.5) * s - 0.5``);
    an all-zero P (published by some drivers) is filled from K.

    Raises:
        InputError: D, R or P of ``info`` are malformed.
    """
    k = np.array([intr.fx, 0.0, intr.cx, 0.0, intr.fy, intr.cy, 0.0, 0.0, 1.0])
    if info is None:
        p = np.array([intr.fx, 0.0, intr.cx, 0.0, 0.0, intr.fy, intr.cy, 0.0, 0.0, 0.0, 1.0, 0.0])
        return CameraInfoFields(intr.width, intr.height, "plumb_bob", np.zeros(5), k,
                                np.eye(3).reshape(-1), p, 0, 0, (0, 0, 0, 0, False))
    w0, h0 = max(1, int(info.width)), max(1, int(info.height))
    sx, sy = intr.width / w0, intr.height / h0
    k_in = np.asarray(info.k, dtype=np.float64).reshape(9)
    k[1] = k_in[1] * sx  # skew is not modelled, but kept for consumers that read it
    try:
        d = np.asarray(getattr(info, "d", []), dtype=np.float64).reshape(-1).copy()
        r = np.asarray(getattr(info, "r", np.eye(3)), dtype=np.float64).reshape(9).copy()
        p_in = np.asarray(getattr(info, "p", np.zeros(12)), dtype=np.float64).reshape(-1)
    except (TypeError, ValueError) as exc:
        raise InputError(f"camera info d / r / p are malformed: {exc}") from exc
    if p_in.size != 12:
        raise InputError(f"camera info p must have 12 entries, got {p_in.size}")
    if not np.any(p_in):
        p = np.zeros(12)
        p[[0, 1, 2, 4, 5, 6, 8, 9, 10]] = k
    else:
        p = p_in.copy()
        p[0:4] = p_in[0:4] * sx
        p[4:8] = p_in[4:8] * sy
        p[2] = (p_in[2] + 0.5) * sx - 0.5
        p[6] = (p_in[6] + 0.5) * sy - 0.5
    roi = getattr(info, "roi", None)
    roi_t = (0, 0, 0, 0, False) if roi is None else (
        int(round(int(roi.x_offset) * sx)), int(round(int(roi.y_offset) * sy)),
        int(round(int(roi.width) * sx)), int(round(int(roi.height) * sy)),
        bool(roi.do_rectify))
    return CameraInfoFields(intr.width, intr.height,
                            str(getattr(info, "distortion_model", "") or ""), d, k, r, p,
                            int(getattr(info, "binning_x", 0)), int(getattr(info, "binning_y", 0)),
                            roi_t)


def nearest_stamp(stamps: Iterable[int], stamp_ns: int, tolerance_ns: int) -> int | None:
    """The stamp equal to ``stamp_ns``, else the nearest within ``tolerance_ns`` (None: none).

    The one pairing rule for images and camera_info: the live node applies it to the messages it
    has buffered, replay to every camera_info of the bag. Ties go to the earlier stamp.
    """
    best, best_dt = None, None
    for s in stamps:
        dt = abs(s - stamp_ns)
        if dt <= tolerance_ns and (best_dt is None or dt < best_dt
                                   or (dt == best_dt and s < best)):
            best, best_dt = s, dt
    return best


#: Fields of the organized cloud: name, byte offset (all FLOAT32, count 1).
CLOUD_FIELDS = (("x", 0), ("y", 4), ("z", 8), ("rgb", 12))

# PCL's PointXYZRGB / PointXYZ-with-padding layout: 16 bytes, little-endian.
_CLOUD_RGB_DTYPE = np.dtype({"names": ["x", "y", "z", "rgb"],
                             "formats": ["<f4", "<f4", "<f4", "<u4"],
                             "offsets": [0, 4, 8, 12], "itemsize": 16})
_CLOUD_XYZ_DTYPE = np.dtype({"names": ["x", "y", "z"], "formats": ["<f4", "<f4", "<f4"],
                             "offsets": [0, 4, 8], "itemsize": 16})


def cloud_buffer(points: np.ndarray, rgb: np.ndarray | None = None
                 ) -> tuple[np.ndarray, tuple[tuple[str, int], ...]]:
    """The bytes and fields of an organized ``PointCloud2``.

    Args:
        points: (H, W, 3) x, y, z in metres in the camera optical frame; NaN for invalid
            points (converted to float32).
        rgb: optional (H, W, 3) uint8 RGB colours for the points.

    Returns:
        ``(data, fields)``: ``data`` (H, W) structured, 16 bytes per point (``point_step`` 16,
        ``row_step`` 16 W): x, y, z FLOAT32 at offsets 0, 4, 8 and, with ``rgb``, a FLOAT32
        field ``rgb`` at 12 whose bits are 0x00RRGGBB (the PCL packing RViz and PCL read);
        without ``rgb`` those 4 bytes are zero padding. ``fields`` lists ``(name, offset)``.

    Raises:
        InputError: wrong shapes or dtypes, or empty / oversized grids.
    """
    points = np.asarray(points)
    if points.ndim != 3 or points.shape[2] != 3:
        raise InputError(f"points must be (H, W, 3), got shape {points.shape}")
    if points.dtype.kind not in "fiu":
        raise InputError(f"points must be real-valued, got {points.dtype}")
    h, w = check_size(points.shape[0], points.shape[1], "point cloud")
    if rgb is not None:
        rgb = np.asarray(rgb)
        if rgb.shape != (h, w, 3) or rgb.dtype != np.uint8:
            raise InputError(f"rgb must be ({h}, {w}, 3) uint8 to match the points, got "
                             f"{rgb.shape} {rgb.dtype}")
    cloud = np.zeros((h, w), dtype=_CLOUD_RGB_DTYPE if rgb is not None else _CLOUD_XYZ_DTYPE)
    cloud["x"] = points[..., 0]
    cloud["y"] = points[..., 1]
    cloud["z"] = points[..., 2]
    if rgb is not None:
        c = rgb.astype(np.uint32)
        cloud["rgb"] = (c[..., 0] << 16) | (c[..., 1] << 8) | c[..., 2]
    return cloud, CLOUD_FIELDS if rgb is not None else CLOUD_FIELDS[:3]


def depth_cloud(depth: np.ndarray, intr: Intrinsics, rgb: np.ndarray | None = None
                ) -> tuple[np.ndarray, tuple[tuple[str, int], ...]]:
    """:func:`cloud_buffer` of a depth map back-projected with ``intr`` (NaN depth: NaN point)."""
    return cloud_buffer(backproject(depth, intr), rgb)


def intrinsics_from_focal(width: int, height: int, fx: float, fy: float | None = None,
                          cx: float | None = None, cy: float | None = None) -> Intrinsics:
    """Intrinsics of a ``width`` x ``height`` image from its focal length and what else is known.

    Without ``fy`` the pixels are square; without a principal point it is the image centre
    ``((W-1)/2, (H-1)/2)``.

    Raises:
        InputError: non-positive or non-finite focal lengths, or a bad size.
    """
    return Intrinsics(fx, fy if fy is not None else fx,
                      cx if cx is not None else (width - 1) / 2.0,
                      cy if cy is not None else (height - 1) / 2.0, int(width), int(height))


def record_intrinsics(record: "BenchRecord", width: int, height: int) -> Intrinsics:
    """Intrinsics of a record's image as it is stored (``width`` x ``height``).

    ``original_fx`` (and ``fy``, ``cx``, ``cy`` when present) describe the image at
    ``original_rgb_size`` (:func:`intrinsics_from_focal` fills what is missing, with the centre
    of the *annotated* image). If the stored image has another size the intrinsics are then
    scaled to it, so a 640x480 record stored at 320x240 has its principal point at the stored
    image's centre, 159.5.

    Raises:
        AnnotationError: the annotation's focal lengths or sizes are not usable.
    """
    w0, h0 = record.original_rgb_size or (width, height)
    try:
        intr = intrinsics_from_focal(int(w0), int(h0), record.original_fx, record.fy,
                                     record.cx, record.cy)
    except InputError as exc:
        raise AnnotationError(f"{record.source}: {exc}") from None
    if (w0, h0) != (width, height):
        intr = intr.scaled(width, height)
    return intr


def is_compressed_message(msg: Any) -> bool:
    """Whether an image message is a ``sensor_msgs/CompressedImage`` (``format`` + ``data``)
    rather than a raw ``sensor_msgs/Image`` (``encoding``, ``height``, ``width``, ...)."""
    return hasattr(msg, "format") and not hasattr(msg, "encoding")


def color_frame(msg: Any, decode_raw: Callable[[Any], np.ndarray]) -> np.ndarray:
    """The (H, W, 3) uint8 RGB pixels of a colour image message, raw or compressed.

    A ``CompressedImage`` is decoded by :func:`depthvlm_ros.core.codecs.decode_color` (JPEG or
    PNG named by its ``format``); a raw ``Image`` by ``decode_raw`` (the caller's converter for
    its message classes: rclpy in the node, rosbags in replay).

    Raises:
        FrameDropped: ``bad_encoding`` (an encoding or format that is not a supported colour
            one, :class:`~depthvlm_ros.core.codecs.EncodingError`) or ``bad_image`` (data that
            does not decode: size, step, truncated or corrupt stream).
    """
    try:
        if is_compressed_message(msg):
            return decode_color(msg.format, msg.data)
        return decode_raw(msg)
    except EncodingError as exc:
        raise FrameDropped("bad_encoding", str(exc)) from None
    except InputError as exc:
        raise FrameDropped("bad_image", str(exc)) from None


def depth_on_grid(depth: np.ndarray, depth_intr: Intrinsics | None,
                  color_intr: Intrinsics) -> np.ndarray:
    """A depth map resampled onto the colour image's pixel grid (nearest depth pixel).

    With ``depth_intr`` (the depth sensor's own camera_info) each colour pixel ``(u, v)`` reads
    the depth pixel its ray passes through, ``u_d = cx_d + fx_d (u - cx_c) / fx_c`` (and the
    same in v), rounded to the nearest pixel; depth values are not interpolated, so no value is
    invented across an object edge. This assumes the two optical centres coincide and the axes
    are parallel (no extrinsics are applied): exact for a depth map registered to the colour
    camera (realsense ``aligned_depth_to_color``, ZED ``depth_registered``, already on the colour
    grid and returned as is); for a separate depth sensor it leaves a parallax of
    ``baseline * f / z`` pixels (about 9 px at 1 m for a 15 mm baseline and f = 600).

    Without ``depth_intr`` a map of another size is taken as the same camera at another
    resolution (the intrinsics scaled like the colour's).

    Args:
        depth: (Hd, Wd) float32 metres, NaN invalid.
        depth_intr: intrinsics of ``depth`` (None: the same camera as the colour).
        color_intr: intrinsics of the colour image whose grid the result has.

    Returns:
        (H, W) float32 metres on the colour grid; NaN where the colour ray leaves the depth
        image or the depth has no reading.

    Raises:
        InputError: ``depth`` is not 2-D, or has another aspect ratio and no intrinsics.
    """
    depth = np.asarray(depth, dtype=np.float32)
    if depth.ndim != 2:
        raise InputError(f"depth must be 2-D, got shape {depth.shape}")
    hd, wd = depth.shape
    if depth_intr is None:
        if abs((wd / hd) / (color_intr.width / color_intr.height) - 1.0) > ASPECT_TOLERANCE:
            raise InputError(f"depth is {wd}x{hd} but the image is {color_intr.width}x"
                             f"{color_intr.height} (another aspect ratio) and the depth has "
                             "no camera_info of its own")
        depth_intr = color_intr.scaled(wd, hd)
    elif (depth_intr.width, depth_intr.height) != (wd, hd):
        depth_intr = depth_intr.scaled(wd, hd)
    w, h = color_intr.width, color_intr.height
    if (wd, hd) == (w, h) and depth_intr == color_intr:
        return depth
    u = depth_intr.cx + depth_intr.fx * (np.arange(w) - color_intr.cx) / color_intr.fx
    v = depth_intr.cy + depth_intr.fy * (np.arange(h) - color_intr.cy) / color_intr.fy
    ui, vi = np.rint(u).astype(np.int64), np.rint(v).astype(np.int64)
    u_ok, v_ok = (ui >= 0) & (ui < wd), (vi >= 0) & (vi < hd)
    out = depth[np.clip(vi, 0, hd - 1)[:, None], np.clip(ui, 0, wd - 1)[None, :]]
    out[~(v_ok[:, None] & u_ok[None, :])] = np.nan
    return out


def cloud_points(depth: np.ndarray, intr: Intrinsics, rgb: np.ndarray | None = None,
                 stride: int = 1, min_range: float = 0.0, max_range: float = 0.0
                 ) -> tuple[np.ndarray, np.ndarray | None]:
    """The points (and colours) of an organized cloud for a costmap or a viewer.

    Args:
        depth: (H, W) metres, NaN invalid.
        intr: its intrinsics.
        rgb: optional (H, W, 3) uint8 colours.
        stride: keep every ``stride``-th pixel of every ``stride``-th row, from (0, 0): the
            cloud is ``ceil(H / stride)`` x ``ceil(W / stride)`` and each point is the exact
            back-projection of its pixel (no averaging, no new camera).
        min_range, max_range: a point whose distance from the optical centre
            (``sqrt(x² + y² + z²)``, the "range" of a range sensor) is below ``min_range`` or
            above ``max_range`` becomes NaN (0 = no limit). They act on the cloud only; the
            depth image keeps ``min_depth`` / ``max_depth``.

    Returns:
        ``(points (h, w, 3) float32, rgb (h, w, 3) uint8 or None)`` for :func:`cloud_buffer`.

    Raises:
        InputError: ``stride`` below 1, or as :func:`~depthvlm_ros.core.camera.backproject`.
    """
    if int(stride) < 1:
        raise InputError(f"stride must be at least 1, got {stride}")
    s = int(stride)
    depth = np.asarray(depth)
    if depth.ndim != 2:
        raise InputError(f"depth must be 2-D, got shape {depth.shape}")
    if (depth.shape[1], depth.shape[0]) != (intr.width, intr.height):
        intr = intr.scaled(depth.shape[1], depth.shape[0])
    points = backproject(np.ascontiguousarray(depth[::s, ::s]), _strided(intr, s, depth.shape))
    if min_range > 0 or max_range > 0:
        dist = np.sqrt(np.einsum("hwc,hwc->hw", points, points))
        far = (dist > max_range) if max_range > 0 else np.zeros(dist.shape, dtype=bool)
        points[(dist < min_range) | far] = np.nan
    colours = None if rgb is None else np.ascontiguousarray(np.asarray(rgb)[::s, ::s])
    return points, colours


def _strided(intr: Intrinsics, s: int, shape: tuple[int, ...]) -> Intrinsics:
    """Intrinsics under which pixel (i, j) of ``image[::s, ::s]`` is pixel (s i, s j) of the
    image: the same rays, not a resized camera."""
    if s == 1:
        return intr
    h, w = -(-shape[0] // s), -(-shape[1] // s)
    return Intrinsics(intr.fx / s, intr.fy / s, intr.cx / s, intr.cy / s, w, h)
