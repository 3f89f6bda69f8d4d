"""numpy <-> ``rosbags`` message conversions for bag replay (no rclpy).

``rosbags`` deserialises messages into its own dataclasses (built by a typestore), which are not
rclpy messages, so the live node's converters cannot be reused on them. These functions follow
the same conventions as the node: colour images as (H, W, 3) uint8 RGB; depth as float32 metres
with NaN for invalid pixels (``32FC1``, REP 118) or uint16 millimetres with 0 invalid
(``16UC1``); organized ``PointCloud2`` clouds with float32 x, y, z (+ packed rgb), NaN for
invalid points and ``is_dense`` false. Every conversion is vectorised.

All message constructors take the typestore so that the classes match the ones the bag writer
serialises with.
"""

from __future__ import annotations

import struct
from typing import Sequence

import numpy as np

from ..core.camera import Intrinsics
from ..core.errors import InputError

__all__ = [
    "COLOR_ENCODINGS",
    "DEPTH_ENCODINGS",
    "stamp_ns",
    "cdr_header_stamp",
    "image_array",
    "image_rgb",
    "image_depth_m",
    "camera_info_intrinsics",
    "make_time",
    "make_header",
    "make_image",
    "make_depth_image",
    "make_camera_info",
    "make_pointcloud2",
    "make_spatial_answer",
]

#: Colour encodings accepted as model input (channels, channel order to RGB).
COLOR_ENCODINGS = {"rgb8": (3, (0, 1, 2)), "bgr8": (3, (2, 1, 0)), "rgba8": (4, (0, 1, 2)),
                   "bgra8": (4, (2, 1, 0)), "mono8": (1, (0, 0, 0))}

#: Depth encodings accepted as ground truth.
DEPTH_ENCODINGS = ("32FC1", "16UC1", "mono16")

_ENCODING_DTYPES = {"rgb8": (np.uint8, 3), "bgr8": (np.uint8, 3), "rgba8": (np.uint8, 4),
                    "bgra8": (np.uint8, 4), "mono8": (np.uint8, 1), "8UC1": (np.uint8, 1),
                    "8UC3": (np.uint8, 3), "16UC1": (np.uint16, 1), "mono16": (np.uint16, 1),
                    "32FC1": (np.float32, 1)}

# PointField datatype constants (sensor_msgs/PointField).
_FLOAT32 = 7


def stamp_ns(stamp) -> int:
    """A ``builtin_interfaces/Time`` as integer nanoseconds."""
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def cdr_header_stamp(raw: bytes | memoryview) -> int:
    """Header stamp (ns) of a CDR-serialised message whose first field is a ``std_msgs/Header``.

    Reads only the 12 bytes after the encapsulation header, so a pass over a bag can index image
    stamps without deserialising the pixels.

    Raises:
        InputError: the buffer is too short or has an unknown encapsulation.
    """
    b = bytes(raw[:12])
    if len(b) < 12 or b[0] != 0 or b[1] not in (0, 1):
        raise InputError("not a CDR message with a header")
    endian = "<" if b[1] == 1 else ">"
    sec, nsec = struct.unpack(endian + "iI", b[4:12])
    return sec * 1_000_000_000 + nsec


def image_array(msg) -> np.ndarray:
    """Pixels of a ``sensor_msgs/Image`` as (H, W) or (H, W, C), honouring ``step`` padding.

    Raises:
        InputError: unknown encoding, or a data buffer shorter than ``height * step``.
    """
    enc = msg.encoding
    if enc not in _ENCODING_DTYPES:
        raise InputError(f"unsupported image encoding {enc!r}")
    dtype, ch = _ENCODING_DTYPES[enc]
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    itemsize = np.dtype(dtype).itemsize
    row = w * ch * itemsize
    data = np.asarray(msg.data, dtype=np.uint8)
    if h <= 0 or w <= 0:
        raise InputError(f"image has size {w}x{h}")
    if step < row or data.size < h * step:
        raise InputError(f"image data too short: {data.size} bytes for {w}x{h} {enc} step {step}")
    rows = data[: h * step].reshape(h, step)[:, :row]
    dt = np.dtype(dtype).newbyteorder(">" if msg.is_bigendian else "<")
    arr = np.ascontiguousarray(rows).view(dt).reshape(h, w, ch)
    arr = arr.astype(dtype, copy=False)  # native byte order from here on
    return arr[..., 0] if ch == 1 else arr


def image_rgb(msg) -> np.ndarray:
    """A colour ``sensor_msgs/Image`` as (H, W, 3) uint8 RGB.

    Raises:
        InputError: the encoding is not one of :data:`COLOR_ENCODINGS`.
    """
    if msg.encoding not in COLOR_ENCODINGS:
        raise InputError(f"image encoding {msg.encoding!r} is not a colour encoding "
                         f"({', '.join(COLOR_ENCODINGS)})")
    arr = image_array(msg)
    if arr.ndim == 2:
        return np.repeat(arr[..., None], 3, axis=2)
    _, order = COLOR_ENCODINGS[msg.encoding]
    return np.ascontiguousarray(arr[..., list(order)])


def image_depth_m(msg) -> np.ndarray:
    """A depth ``sensor_msgs/Image`` as float32 metres, NaN invalid.

    ``32FC1`` is metres (0, inf and NaN invalid); ``16UC1``/``mono16`` are millimetres (0
    invalid), the depth_image_proc conventions.

    Raises:
        InputError: not a depth encoding.
    """
    if msg.encoding not in DEPTH_ENCODINGS:
        raise InputError(f"depth encoding {msg.encoding!r} not one of {', '.join(DEPTH_ENCODINGS)}")
    arr = image_array(msg)
    if arr.dtype == np.uint16:
        out = arr.astype(np.float32) * np.float32(0.001)
        out[arr == 0] = np.nan
        return out
    out = arr.astype(np.float32, copy=True)
    out[~(np.isfinite(out) & (out > 0))] = np.nan
    return out


def camera_info_intrinsics(msg) -> Intrinsics:
    """Intrinsics from a ``sensor_msgs/CameraInfo`` (K and the image size).

    Raises:
        InputError: zero size or a K without positive finite focal lengths.
    """
    return Intrinsics.from_k(np.asarray(msg.k, dtype=np.float64), int(msg.width), int(msg.height))


# ----------------------------------------------------------------------------------------------
# Builders
# ----------------------------------------------------------------------------------------------

def make_time(ts, ns: int):
    """``builtin_interfaces/Time`` for integer nanoseconds."""
    Time = ts.types["builtin_interfaces/msg/Time"]
    sec, nsec = divmod(int(ns), 1_000_000_000)
    return Time(sec=sec, nanosec=nsec)


def make_header(ts, ns: int, frame_id: str):
    """``std_msgs/Header`` with the stamp ``ns`` and ``frame_id``."""
    return ts.types["std_msgs/msg/Header"](stamp=make_time(ts, ns), frame_id=frame_id)


def make_image(ts, header, array: np.ndarray, encoding: str):
    """``sensor_msgs/Image`` from an array whose dtype and channels match ``encoding``.

    Raises:
        InputError: the array does not fit the encoding.
    """
    if encoding not in _ENCODING_DTYPES:
        raise InputError(f"unsupported image encoding {encoding!r}")
    dtype, ch = _ENCODING_DTYPES[encoding]
    a = np.asarray(array)
    shape_ok = a.ndim == 2 if ch == 1 else (a.ndim == 3 and a.shape[2] == ch)
    if not shape_ok or a.dtype != dtype:
        raise InputError(f"array {a.shape} {a.dtype} does not fit encoding {encoding}")
    a = np.ascontiguousarray(a.astype(np.dtype(dtype).newbyteorder("<"), copy=False))
    h, w = a.shape[:2]
    return ts.types["sensor_msgs/msg/Image"](
        header=header, height=h, width=w, encoding=encoding, is_bigendian=0,
        step=w * ch * np.dtype(dtype).itemsize, data=a.reshape(-1).view(np.uint8))


def make_depth_image(ts, header, depth_m: np.ndarray):
    """``32FC1`` depth image in metres (NaN invalid), REP 118."""
    return make_image(ts, header, np.asarray(depth_m, dtype=np.float32), "32FC1")


def make_camera_info(ts, header, intr: Intrinsics, template=None):
    """``sensor_msgs/CameraInfo`` for ``intr``.

    With a ``template`` (the camera's own CameraInfo) the distortion model, D, R, binning and ROI
    are kept and K/P are scaled when the size differs; without one a distortion-free pinhole
    is written.
    """
    CameraInfo = ts.types["sensor_msgs/msg/CameraInfo"]
    k = np.array([intr.fx, 0.0, intr.cx, 0.0, intr.fy, intr.cy, 0.0, 0.0, 1.0])
    if template is not None:
        sx = intr.width / max(1, int(template.width))
        sy = intr.height / max(1, int(template.height))
        p = np.asarray(template.p, dtype=np.float64).copy()
        if sx != 1.0 or sy != 1.0:
            # Same pixel-edge convention as Intrinsics.scaled for the projection matrix.
            p[[0, 1]] *= sx
            p[[4, 5]] *= sy
            p[2] = (p[2] + 0.5) * sx - 0.5
            p[6] = (p[6] + 0.5) * sy - 0.5
            p[3] *= sx
            p[7] *= sy
        return CameraInfo(
            header=header, height=intr.height, width=intr.width,
            distortion_model=template.distortion_model,
            d=np.asarray(template.d, dtype=np.float64).copy(), k=k,
            r=np.asarray(template.r, dtype=np.float64).copy(), p=p,
            binning_x=template.binning_x, binning_y=template.binning_y, roi=template.roi)
    p = np.array([intr.fx, 0.0, intr.cx, 0.0, 0.0, intr.fy, intr.cy, 0.0, 0.0, 0.0, 1.0, 0.0])
    roi = ts.types["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0,
                                                       do_rectify=False)
    return CameraInfo(header=header, height=intr.height, width=intr.width,
                      distortion_model="plumb_bob", d=np.zeros(5), k=k,
                      r=np.eye(3).reshape(-1), p=p, binning_x=0, binning_y=0, roi=roi)


def make_pointcloud2(ts, header, xyz: np.ndarray, rgb: np.ndarray | None = None):
    """Organized ``sensor_msgs/PointCloud2`` (float32 x y z, + packed rgb), ``is_dense`` false.

    Args:
        ts: typestore.
        header: header of the depth image the points come from.
        xyz: (H, W, 3) float32 points, NaN where invalid.
        rgb: optional (H, W, 3) uint8 colours, packed as the float32 ``rgb`` field (PCL layout
            0x00RRGGBB, as RViz reads it).
    """
    PointField = ts.types["sensor_msgs/msg/PointField"]
    h, w = xyz.shape[:2]
    names = ["x", "y", "z"] + (["rgb"] if rgb is not None else [])
    fields = [PointField(name=n, offset=4 * i, datatype=_FLOAT32, count=1)
              for i, n in enumerate(names)]
    buf = np.empty((h, w, len(names)), dtype="<f4")
    buf[..., :3] = xyz
    if rgb is not None:
        c = np.asarray(rgb, dtype=np.uint32)
        packed = (c[..., 0] << 16) | (c[..., 1] << 8) | c[..., 2]
        buf[..., 3] = packed.astype("<u4").view("<f4")
    point_step = 4 * len(names)
    return ts.types["sensor_msgs/msg/PointCloud2"](
        header=header, height=h, width=w, fields=fields, is_bigendian=False,
        point_step=point_step, row_step=point_step * w,
        data=buf.reshape(-1).view(np.uint8), is_dense=False)


def make_spatial_answer(ts, header, *, id: str, question: str, answer: str,
                        depths: Sequence[float], points: np.ndarray | None, status: int,
                        status_reason: str, latency: float, source: int = 0,
                        model_answer: str = "", pixels: np.ndarray | None = None,
                        regions: Sequence = ()):
    """``depthvlm_ros/msg/SpatialAnswer`` (the typestore must have it registered).

    ``regions`` are ``RegionMeasurement`` messages of the same typestore
    (:func:`make_region_measurement`).
    """
    return ts.types["depthvlm_ros/msg/SpatialAnswer"](
        header=header, id=id, question=question, answer=answer, source=int(source),
        model_answer=model_answer, pixels=_points(ts, pixels, columns=2),
        depths=np.asarray(depths, dtype=np.float32).reshape(-1), points=_points(ts, points),
        regions=list(regions), status=int(status), status_reason=status_reason,
        latency=float(latency))


def _points(ts, values: np.ndarray | None, columns: int = 3) -> list:
    """``geometry_msgs/Point`` list from (N, 3) points, or (N, 2) pixels (z = 0)."""
    Point = ts.types["geometry_msgs/msg/Point"]
    if values is None:
        return []
    arr = np.asarray(values, dtype=np.float64).reshape(-1, columns)
    z = arr[:, 2] if columns == 3 else np.zeros(len(arr))
    return [Point(x=float(a[0]), y=float(a[1]), z=float(c)) for a, c in zip(arr, z)]
