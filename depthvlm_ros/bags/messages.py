"""numpy <-> ``rosbags`` message conversions for bag replay (no rclpy).

``rosbags`` deserialises messages into its own dataclasses (built by a typestore), which are not
rclpy messages, so the live node's converters cannot be reused on them. These functions follow
the same conventions as the node: colour images as (H, W, 3) uint8 RGB; depth as float32 metres
with NaN for invalid pixels (``32FC1``, REP 118) or uint16 millimetres with 0 invalid
(``16UC1``); organized ``PointCloud2`` clouds with float32 x, y, z (+ packed rgb), NaN for
invalid points and ``is_dense`` false. ``sensor_msgs/CompressedImage`` (JPEG / PNG colour,
compressedDepth PNG / RVL depth) is decoded by :mod:`depthvlm_ros.core.codecs`. Every
conversion is vectorised.

All message constructors take the typestore so that the classes match the ones the bag writer
serialises with.
"""

from __future__ import annotations

import struct
from typing import Sequence

import numpy as np

from ..core.camera import Intrinsics
from ..core.codecs import EncodingError, decode_compressed_depth, millimetres_to_metres
from ..core.errors import InputError
from ..core.frames import (camera_info_intrinsics, cloud_buffer, is_compressed_message,
                           output_camera_info)

__all__ = [
    "COLOR_ENCODINGS",
    "DEPTH_ENCODINGS",
    "stamp_ns",
    "cdr_header_stamp",
    "image_array",
    "image_rgb",
    "image_depth_m",
    "depth_message_m",
    "camera_info_intrinsics",
    "make_time",
    "make_header",
    "make_image",
    "make_depth_image",
    "make_compressed_image",
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
        raise EncodingError(f"image encoding {msg.encoding!r} is not a colour encoding "
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
        raise EncodingError(f"depth encoding {msg.encoding!r} not one of "
                            f"{', '.join(DEPTH_ENCODINGS)}")
    arr = image_array(msg)
    if arr.dtype == np.uint16:
        return millimetres_to_metres(arr)
    return _valid_metres(arr.astype(np.float32, copy=True))


def _valid_metres(depth: np.ndarray) -> np.ndarray:
    depth[~(np.isfinite(depth) & (depth > 0))] = np.nan
    return depth


def depth_message_m(msg) -> np.ndarray:
    """A depth message as float32 metres, NaN invalid: a raw ``Image`` (:func:`image_depth_m`)
    or a compressedDepth ``CompressedImage`` (PNG or RVL, ``16UC1`` millimetres or ``32FC1``
    inverse depth; :func:`~depthvlm_ros.core.codecs.decode_compressed_depth`).

    Raises:
        EncodingError: not a depth encoding or compressedDepth format.
        InputError: data that does not decode.
    """
    if is_compressed_message(msg):
        return _valid_metres(decode_compressed_depth(msg.format, msg.data))
    return image_depth_m(msg)


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


def make_compressed_image(ts, header, fmt: str, data: bytes):
    """``sensor_msgs/CompressedImage`` with ``format`` and ``data`` (see
    :func:`~depthvlm_ros.core.codecs.encode_color` and
    :func:`~depthvlm_ros.core.codecs.encode_compressed_depth`)."""
    return ts.types["sensor_msgs/msg/CompressedImage"](
        header=header, format=fmt, data=np.frombuffer(bytes(data), dtype=np.uint8))


def make_camera_info(ts, header, intr: Intrinsics, template=None):
    """``sensor_msgs/CameraInfo`` for ``intr``.

    The values are :func:`depthvlm_ros.core.frames.output_camera_info`, as the live node
    publishes them: with a ``template`` (the camera's own CameraInfo) its distortion model, D,
    R and binning are kept and K, P and ROI follow the image's size; without one a
    distortion-free pinhole is written.
    """
    f = output_camera_info(intr, template)
    roi = ts.types["sensor_msgs/msg/RegionOfInterest"](
        x_offset=f.roi[0], y_offset=f.roi[1], width=f.roi[2], height=f.roi[3],
        do_rectify=f.roi[4])
    return ts.types["sensor_msgs/msg/CameraInfo"](
        header=header, height=f.height, width=f.width, distortion_model=f.distortion_model,
        d=f.d, k=f.k, r=f.r, p=f.p, binning_x=f.binning_x, binning_y=f.binning_y, roi=roi)


def make_pointcloud2(ts, header, xyz: np.ndarray, rgb: np.ndarray | None = None):
    """Organized ``sensor_msgs/PointCloud2`` in the layout of
    :func:`depthvlm_ros.core.frames.cloud_buffer` (the live node's): float32 x y z (+ packed
    rgb) in 16-byte points, NaN invalid, ``is_dense`` false.
    """
    PointField = ts.types["sensor_msgs/msg/PointField"]
    cloud, names = cloud_buffer(xyz, rgb)
    h, w = cloud.shape
    fields = [PointField(name=n, offset=off, datatype=_FLOAT32, count=1) for n, off in names]
    step = cloud.dtype.itemsize
    return ts.types["sensor_msgs/msg/PointCloud2"](
        header=header, height=h, width=w, fields=fields, is_bigendian=False,
        point_step=step, row_step=step * w, data=cloud.view(np.uint8).reshape(-1),
        is_dense=False)


def make_spatial_answer(ts, header, *, id: str, question: str, answer: str,
                        depths: Sequence[float], points: np.ndarray | None, status: int,
                        status_reason: str, latency: float, source: int = 0,
                        model_answer: str = "", pixels: np.ndarray | None = None,
                        regions: Sequence = (), camera: str = ""):
    """``depthvlm_ros/msg/SpatialAnswer`` (the typestore must have it registered).

    ``regions`` are :class:`~depthvlm_ros.core.spatial.RegionMeasurement` values; ``camera``
    is the camera's name ('' for the one unnamed camera a replay reads).
    """
    return ts.types["depthvlm_ros/msg/SpatialAnswer"](
        header=header, id=id, question=question, answer=answer, source=int(source),
        model_answer=model_answer, pixels=_points(ts, pixels, columns=2),
        depths=np.asarray(depths, dtype=np.float32).reshape(-1), points=_points(ts, points),
        regions=[_region_measurement(ts, r) for r in regions], status=int(status),
        status_reason=status_reason, latency=float(latency), camera=camera)


def _points(ts, values: np.ndarray | None, columns: int = 3) -> list:
    """``geometry_msgs/Point`` list from (N, 3) points, or (N, 2) pixels (z = 0)."""
    Point = ts.types["geometry_msgs/msg/Point"]
    if values is None:
        return []
    arr = np.asarray(values, dtype=np.float64).reshape(-1, columns)
    z = arr[:, 2] if columns == 3 else np.zeros(len(arr))
    return [Point(x=float(a[0]), y=float(a[1]), z=float(c)) for a, c in zip(arr, z)]


def _region_measurement(ts, r):
    """``depthvlm_ros/msg/RegionMeasurement`` of a core RegionMeasurement."""
    roi = ts.types["sensor_msgs/msg/RegionOfInterest"](
        x_offset=int(r.roi.x_offset), y_offset=int(r.roi.y_offset), width=int(r.roi.width),
        height=int(r.roi.height), do_rectify=False)
    (nearest_pixel,) = _points(ts, [r.nearest_pixel], columns=2)
    nearest_point, centroid = _points(ts, [r.nearest_point, r.centroid])
    return ts.types["depthvlm_ros/msg/RegionMeasurement"](
        roi=roi, origin=int(r.origin), label=r.label, valid_fraction=float(r.valid_fraction),
        nearest_depth=float(r.nearest_depth), nearest_pixel=nearest_pixel,
        nearest_point=nearest_point, median_depth=float(r.median_depth),
        mean_depth=float(r.mean_depth), centroid=centroid,
        width_m=float(r.width_m), height_m=float(r.height_m))
