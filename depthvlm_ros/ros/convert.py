"""numpy <-> ROS 2 message conversions for the node (our own: cv_bridge and sensor_msgs_py are
not installable from PyPI).

Conventions:

* colour images come out as (H, W, 3) uint8 RGB, whatever the input channel order;
* depth is float32 metres, z along the optical axis, NaN where invalid (REP 118, ``32FC1``);
  ``16UC1`` is millimetres with 0 meaning invalid, in and (``depth_encoding``) out;
* ``sensor_msgs/CompressedImage`` (JPEG / PNG colour, compressedDepth depth) is decoded by
  :mod:`depthvlm_ros.core.codecs`;
* point clouds are organized (one point per pixel), float32 x, y, z in the camera optical frame
  (x right, y down, z forward), optionally a packed ``rgb`` field in the PCL layout, NaN for
  invalid points, ``is_dense`` false, little-endian, 16 bytes per point.

Readers only touch message attributes (``height``, ``width``, ``encoding``, ``step``, ``data``,
...), so they accept rclpy messages and look-alikes such as ``rosbags`` dataclasses. Builders
return ``sensor_msgs`` / ``std_msgs`` rclpy messages; the message packages are imported when a
builder is first called, so the readers work without them.

Every user-caused problem (unknown encoding, short buffer, inconsistent sizes, bad intrinsics)
raises :class:`~depthvlm_ros.core.errors.InputError`. All conversions are vectorised.
"""

from __future__ import annotations

import array
from typing import Any, NamedTuple

import numpy as np

from ..core.camera import Intrinsics, backproject
from ..core.codecs import (EncodingError, decode_compressed_depth, metres_to_millimetres,
                           millimetres_to_metres)
from ..core.errors import InputError
from ..core.frames import MAX_IMAGE_SIDE, CameraInfoFields, cloud_buffer, output_camera_info
from ..core.frames import camera_info_intrinsics as camera_info_to_intrinsics
from ..core.frames import is_compressed_message
from ..core.frames import check_size as _check_size

__all__ = [
    "COLOR_ENCODINGS",
    "DEPTH_ENCODINGS",
    "MAX_IMAGE_SIDE",
    "CloudArrays",
    "image_to_rgb",
    "rgb_to_msg",
    "depth_to_msg",
    "msg_to_depth",
    "compressed_image_msg",
    "camera_info_to_intrinsics",
    "scaled_camera_info",
    "intrinsics_to_camera_info",
    "camera_info_msg",
    "fill_spatial_answer",
    "make_pointcloud2",
    "depth_to_pointcloud2",
    "pointcloud2_to_array",
]

#: Colour encodings accepted by :func:`image_to_rgb`: bytes per pixel, and the source channel
#: that feeds R, G and B.
COLOR_ENCODINGS: dict[str, tuple[int, tuple[int, int, int]]] = {
    "rgb8": (3, (0, 1, 2)),
    "bgr8": (3, (2, 1, 0)),
    "rgba8": (4, (0, 1, 2)),
    "bgra8": (4, (2, 1, 0)),
    "mono8": (1, (0, 0, 0)),
}

#: Depth encodings accepted by :func:`msg_to_depth`: element type (before byte order) and the
#: factor to metres. ``mono16`` is read like ``16UC1`` because several drivers publish depth
#: in millimetres under that name.
DEPTH_ENCODINGS: dict[str, tuple[str, float]] = {
    "32FC1": ("f4", 1.0),
    "16UC1": ("u2", 0.001),
    "mono16": ("u2", 0.001),
}

# sensor_msgs/PointField datatypes we read or write (values fixed by the message definition).
_PF_UINT32 = 6
_PF_FLOAT32 = 7
_PF_FLOAT64 = 8

class CloudArrays(NamedTuple):
    """Arrays read back from a ``PointCloud2`` by :func:`pointcloud2_to_array`.

    Attributes:
        points: (H, W, 3) float32 x, y, z; NaN where the cloud has no valid point.
        rgb: (H, W, 3) uint8 colours, or None when the cloud has no ``rgb``/``rgba`` field.
    """

    points: np.ndarray
    rgb: np.ndarray | None


# --------------------------------------------------------------------------------------------
# helpers


def _data_bytes(data: Any, what: str) -> np.ndarray:
    """The message's ``data`` field as a flat uint8 array, without copying where possible."""
    if data is None:
        raise InputError(f"{what}: message has no data")
    if isinstance(data, np.ndarray):
        if data.dtype == np.uint8:
            return data.reshape(-1)
        if data.dtype.kind in "ui":
            # Some hand-built messages carry wider integer arrays; their values must be bytes.
            flat = data.reshape(-1)
            if flat.size and (flat.min() < 0 or flat.max() > 255):
                raise InputError(f"{what}: data values must be bytes (0..255)")
            return flat.astype(np.uint8)
        raise InputError(f"{what}: data must be bytes, got an array of {data.dtype}")
    try:
        view = memoryview(data)
    except TypeError:
        view = None
    if view is not None:
        if not view.c_contiguous:
            raise InputError(f"{what}: data buffer is not contiguous")
        # array('B'), bytes, bytearray: read in place. Wider typecodes are reinterpreted as raw
        # bytes, which is what the wire format carries.
        return np.frombuffer(view.cast("B") if view.format != "B" else view, dtype=np.uint8)
    try:
        arr = np.asarray(data)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{what}: data must be a byte sequence") from exc
    if arr.ndim != 1 or (arr.size and arr.dtype.kind not in "ui"):
        raise InputError(f"{what}: data must be a flat sequence of bytes")
    if arr.size and (arr.min() < 0 or arr.max() > 255):
        raise InputError(f"{what}: data values must be bytes (0..255)")
    return arr.astype(np.uint8)


def _rows(msg: Any, bytes_per_pixel: int, what: str) -> tuple[np.ndarray, int, int]:
    """(H, W * bpp) uint8 view of the pixel bytes, with the row padding (``step``) cut off."""
    h, w = _check_size(getattr(msg, "height", None), getattr(msg, "width", None), what)
    try:
        step = int(msg.step)
    except (AttributeError, TypeError, ValueError) as exc:
        raise InputError(f"{what}: message has no valid step") from exc
    row = w * bytes_per_pixel
    if step < row:
        raise InputError(f"{what}: step {step} is smaller than width x bytes per pixel "
                         f"({w} x {bytes_per_pixel} = {row})")
    buf = _data_bytes(getattr(msg, "data", None), what)
    need = step * h
    if buf.size < need:
        raise InputError(f"{what}: data has {buf.size} bytes, step x height needs {need}")
    return buf[:need].reshape(h, step)[:, :row], h, w


def _encoding(msg: Any) -> str:
    enc = getattr(msg, "encoding", None)
    if not isinstance(enc, str):
        raise EncodingError(f"image encoding must be a string, got {enc!r}")
    return enc


def _msgs():
    """The rclpy message modules, imported on first use with a clear error if missing."""
    try:
        from builtin_interfaces.msg import Time
        from sensor_msgs.msg import CameraInfo, Image, PointCloud2, PointField
        from std_msgs.msg import Header
    except ImportError as exc:  # pragma: no cover - depends on the installation
        raise ImportError("building ROS messages needs the ROS 2 Python message packages "
                          "(sensor_msgs, std_msgs); source your ROS 2 setup or install the "
                          "ros-sensor-msgs / ros-std-msgs wheels") from exc
    return Time, Header, Image, CameraInfo, PointCloud2, PointField


def _header(header: Any):
    """A fresh std_msgs/Header with the stamp and frame of ``header`` (None: zero stamp).

    Copying (rather than sharing the caller's object) keeps outgoing messages independent, and
    accepts header look-alikes such as rosbags dataclasses.
    """
    Time, Header, *_ = _msgs()
    if header is None:
        return Header()
    try:
        sec, nanosec = int(header.stamp.sec), int(header.stamp.nanosec)
        frame_id = str(header.frame_id)
    except (AttributeError, TypeError, ValueError) as exc:
        raise InputError(f"header must have stamp.sec, stamp.nanosec and frame_id, got {header!r}") from exc
    if not (-(2**31) <= sec < 2**31 and 0 <= nanosec < 10**9):
        raise InputError(f"header stamp out of range: sec={sec} nanosec={nanosec}")
    return Header(stamp=Time(sec=sec, nanosec=nanosec), frame_id=frame_id)


def _byte_array(arr: np.ndarray) -> array.array:
    # Handing rclpy an array('B') skips its per-element validation of Python sequences, which
    # would take seconds for a single VGA frame.
    out = array.array("B")
    out.frombytes(np.ascontiguousarray(arr).tobytes())
    return out


# --------------------------------------------------------------------------------------------
# images


def image_to_rgb(msg: Any) -> np.ndarray:
    """Decode a colour ``sensor_msgs/Image`` into an RGB array.

    Args:
        msg: Image with encoding ``rgb8``, ``bgr8``, ``rgba8``, ``bgra8`` or ``mono8``. Row
            padding (``step`` larger than ``width`` x bytes per pixel) is skipped, and bytes
            beyond ``step`` x ``height`` are ignored. All accepted encodings have one byte per
            channel, so ``is_bigendian`` does not affect them.

    Returns:
        A new, writable (H, W, 3) uint8 array in RGB order; alpha is dropped and mono8 is
        repeated into the three channels.

    Raises:
        InputError: unsupported encoding (16-bit and float encodings are depth or infrared, not
            colour, and are rejected too), empty or oversized image, ``step`` too small or
            implausible, or ``data`` shorter than ``step`` x ``height``.
    """
    enc = _encoding(msg)
    if enc not in COLOR_ENCODINGS:
        raise EncodingError(f"unsupported colour encoding {enc!r}; expected one of "
                         f"{', '.join(COLOR_ENCODINGS)}")
    channels, order = COLOR_ENCODINGS[enc]
    rows, h, w = _rows(msg, channels, f"{enc} image")
    pixels = rows.reshape(h, w, channels)
    if channels == 1:
        return np.repeat(pixels, 3, axis=2)
    # Fancy indexing on the channel axis copies, so the result never aliases the message.
    return pixels[:, :, list(order)]


def rgb_to_msg(rgb: np.ndarray, header: Any = None, encoding: str = "rgb8"):
    """Encode an RGB array as a ``sensor_msgs/Image`` (used for the colorized depth preview).

    Args:
        rgb: (H, W, 3) uint8 RGB, or (H, W) uint8 when ``encoding`` is ``mono8``.
        header: header to copy (stamp and frame_id); None gives a zero stamp and empty frame.
        encoding: ``rgb8``, ``bgr8`` (channels reversed on the way out) or ``mono8``.

    Returns:
        An Image with ``step`` = width x channels (no padding) and ``is_bigendian`` 0.

    Raises:
        InputError: wrong dtype, shape or size, or an encoding other than the three above.
    """
    rgb = np.asarray(rgb)
    if rgb.dtype != np.uint8:
        raise InputError(f"image must be uint8, got {rgb.dtype}")
    if encoding == "mono8":
        if rgb.ndim != 2:
            raise InputError(f"mono8 needs an (H, W) array, got shape {rgb.shape}")
        pixels, channels = rgb, 1
    elif encoding in ("rgb8", "bgr8"):
        if rgb.ndim != 3 or rgb.shape[2] != 3:
            raise InputError(f"{encoding} needs an (H, W, 3) array, got shape {rgb.shape}")
        pixels, channels = (rgb if encoding == "rgb8" else rgb[:, :, ::-1]), 3
    else:
        raise InputError(f"cannot encode {encoding!r}; use rgb8, bgr8 or mono8")
    h, w = _check_size(rgb.shape[0], rgb.shape[1], "image")
    _, _, Image, *_ = _msgs()
    return Image(header=_header(header), height=h, width=w, encoding=encoding, is_bigendian=0,
                 step=w * channels, data=_byte_array(pixels))


# --------------------------------------------------------------------------------------------
# depth


def depth_to_msg(depth: np.ndarray, header: Any = None, encoding: str = "32FC1"):
    """Encode a depth map as a ``sensor_msgs/Image`` (REP 118).

    Args:
        depth: (H, W) real-valued depth in metres; NaN marks invalid pixels.
        header: header to copy (the input image's, so depth lines up with it in time and
            frame); None gives a zero stamp and empty frame.
        encoding: ``32FC1`` (metres, NaN kept as is) or ``16UC1`` (millimetres, rounded; 0
            where NaN, not positive or beyond 65.535 m:
            :func:`~depthvlm_ros.core.codecs.metres_to_millimetres`).

    Returns:
        A little-endian Image with ``step`` = 4 x width (32FC1) or 2 x width (16UC1).

    Raises:
        InputError: not 2-D, not a real dtype, empty / oversized, or another encoding.
    """
    depth = np.asarray(depth)
    if depth.ndim != 2:
        raise InputError(f"depth must be 2-D, got shape {depth.shape}")
    if depth.dtype.kind not in "fiu":
        raise InputError(f"depth must be real-valued, got {depth.dtype}")
    h, w = _check_size(depth.shape[0], depth.shape[1], "depth")
    if encoding == "32FC1":
        values = depth.astype("<f4", copy=False)
    elif encoding == "16UC1":
        values = metres_to_millimetres(depth).astype("<u2", copy=False)
    else:
        raise InputError(f"depth encoding must be 32FC1 or 16UC1, got {encoding!r}")
    _, _, Image, *_ = _msgs()
    return Image(header=_header(header), height=h, width=w, encoding=encoding, is_bigendian=0,
                 step=values.itemsize * w, data=_byte_array(values))


def msg_to_depth(msg: Any) -> np.ndarray:
    """Decode a depth ``sensor_msgs/Image`` (or compressedDepth ``CompressedImage``) to metres.

    Args:
        msg: Image with encoding ``32FC1`` (metres) or ``16UC1`` / ``mono16`` (millimetres,
            0 = no reading); ``step`` padding and ``is_bigendian`` are honoured. Or a
            ``CompressedImage`` in compressed_depth_image_transport's layout
            (:func:`~depthvlm_ros.core.codecs.decode_compressed_depth`).

    Returns:
        A new (H, W) float32 array in metres, native byte order. Millimetre zeros become NaN;
        float values (including 0, +-inf and NaN) are passed through unchanged.

    Raises:
        InputError: unsupported encoding, bad sizes, ``step`` not a whole number of elements
            or too small, or ``data`` too short.
    """
    if is_compressed_message(msg):
        return decode_compressed_depth(msg.format, msg.data)
    enc = _encoding(msg)
    if enc not in DEPTH_ENCODINGS:
        raise EncodingError(f"unsupported depth encoding {enc!r}; expected one of "
                            f"{', '.join(DEPTH_ENCODINGS)}")
    kind, _ = DEPTH_ENCODINGS[enc]
    dtype = np.dtype((">" if getattr(msg, "is_bigendian", 0) else "<") + kind)
    rows, h, w = _rows(msg, dtype.itemsize, f"{enc} depth")
    # .copy() makes the rows contiguous so they can be reinterpreted as elements.
    values = rows.copy().view(dtype).reshape(h, w)
    if kind == "f4":
        return values.astype(np.float32)
    return millimetres_to_metres(values)


def compressed_image_msg(fmt: str, data: bytes, header: Any = None):
    """A ``sensor_msgs/CompressedImage`` with ``format`` and ``data`` (e.g. from
    :func:`~depthvlm_ros.core.codecs.encode_color`) under a copy of ``header``."""
    from sensor_msgs.msg import CompressedImage

    out = array.array("B")
    out.frombytes(bytes(data))
    return CompressedImage(header=_header(header), format=str(fmt), data=out)


# --------------------------------------------------------------------------------------------
# camera info


def scaled_camera_info(msg: Any, width: int, height: int):
    """The ``CameraInfo`` of the same camera after resizing its image to ``width`` x ``height``.

    The arithmetic is :func:`depthvlm_ros.core.frames.output_camera_info` (K, P and ROI follow
    the image with the pixel-edge convention, an all-zero P is filled from K, D/R/binning are
    kept); the header is copied.

    Raises:
        InputError: invalid intrinsics in ``msg`` or a zero / oversized target size.
    """
    h2, w2 = _check_size(height, width, "target size")
    intr = camera_info_to_intrinsics(msg).scaled(w2, h2)
    return camera_info_msg(output_camera_info(intr, msg), getattr(msg, "header", None))


def camera_info_msg(fields: CameraInfoFields, header: Any = None):
    """A ``sensor_msgs/CameraInfo`` holding ``fields`` under a copy of ``header``."""
    _, _, _, CameraInfo, *_ = _msgs()
    out = CameraInfo()
    out.header = _header(header)
    out.width, out.height = int(fields.width), int(fields.height)
    out.distortion_model = fields.distortion_model
    out.d = [float(v) for v in fields.d]
    out.k, out.r, out.p = fields.k, fields.r, fields.p
    out.binning_x, out.binning_y = fields.binning_x, fields.binning_y
    (out.roi.x_offset, out.roi.y_offset, out.roi.width, out.roi.height,
     out.roi.do_rectify) = fields.roi
    return out


# --------------------------------------------------------------------------------------------
# point clouds


def intrinsics_to_camera_info(intr: Intrinsics, header: Any = None):
    """A distortion-free CameraInfo (plumb_bob, zero D, identity R) for given intrinsics.

    For intrinsics that did not come from a CameraInfo (a configured field of view, a test
    camera); P is K with a zero translation column, as for a monocular camera.
    """
    return camera_info_msg(output_camera_info(intr), header)


def make_pointcloud2(points: np.ndarray, header: Any = None, rgb: np.ndarray | None = None):
    """Build an organized ``sensor_msgs/PointCloud2``.

    Args:
        points: (H, W, 3) x, y, z in metres in the camera optical frame; NaN for invalid
            points (converted to float32).
        header: header to copy; its frame_id should be the camera optical frame.
        rgb: optional (H, W, 3) uint8 RGB colours for the points.

    Returns:
        A cloud with ``height`` H, ``width`` W, fields x, y, z (FLOAT32, offsets 0, 4, 8) and,
        with ``rgb``, a FLOAT32 field ``rgb`` at offset 12 whose bits are 0x00RRGGBB (the PCL
        packing that RViz and PCL read); without ``rgb`` those 4 bytes are zero padding.
        ``point_step`` 16, ``row_step`` 16 W, little-endian, ``is_dense`` false.

    Raises:
        InputError: wrong shapes or dtypes, or empty / oversized grids.
    """
    cloud, names = cloud_buffer(points, rgb)
    h, w = cloud.shape
    _, _, _, _, PointCloud2, PointField = _msgs()
    fields = [PointField(name=n, offset=off, datatype=PointField.FLOAT32, count=1)
              for n, off in names]
    return PointCloud2(header=_header(header), height=h, width=w, fields=fields,
                       is_bigendian=False, point_step=cloud.dtype.itemsize,
                       row_step=cloud.dtype.itemsize * w,
                       data=_byte_array(cloud.view(np.uint8)), is_dense=False)


def depth_to_pointcloud2(depth: np.ndarray, intrinsics: Intrinsics, header: Any = None,
                         rgb: np.ndarray | None = None):
    """Back-project a depth map with :func:`depthvlm_ros.core.camera.backproject` and build the
    organized cloud with :func:`make_pointcloud2`.

    Args:
        depth: (H, W) metres, NaN invalid.
        intrinsics: the camera's intrinsics (rescaled by ``backproject`` if the sizes differ).
        header: header to copy (the image's stamp and optical frame).
        rgb: optional (H, W, 3) uint8 colours.

    Returns:
        A ``sensor_msgs/PointCloud2`` as described in :func:`make_pointcloud2`.

    Raises:
        InputError: as :func:`backproject` and :func:`make_pointcloud2`.
    """
    return make_pointcloud2(backproject(np.asarray(depth), intrinsics), header, rgb)


def pointcloud2_to_array(msg: Any) -> CloudArrays:
    """Read x, y, z (and colour) back from a ``sensor_msgs/PointCloud2``.

    Args:
        msg: any PointCloud2 with FLOAT32 or FLOAT64 ``x``, ``y``, ``z`` fields; an ``rgb`` or
            ``rgba`` field (FLOAT32 or UINT32, PCL packing) is decoded when present. Byte order,
            ``point_step`` and ``row_step`` padding are honoured; unorganized clouds come back
            with H = 1.

    Returns:
        :class:`CloudArrays` (points (H, W, 3) float32, rgb (H, W, 3) uint8 or None).

    Raises:
        InputError: missing or unsupported x/y/z fields, fields that do not fit in
            ``point_step``, ``row_step`` smaller than a row, ``data`` too short, or empty /
            oversized clouds.
    """
    try:
        h, w = int(msg.height), int(msg.width)
        point_step, row_step = int(msg.point_step), int(msg.row_step)
        endian = ">" if msg.is_bigendian else "<"
    except (AttributeError, TypeError, ValueError) as exc:
        raise InputError(f"not a valid PointCloud2 header: {exc}") from exc
    if h <= 0 or w <= 0:
        raise InputError(f"point cloud is empty ({w}x{h})")
    # Unorganized clouds may be wider than any image, so only the point count is limited.
    if h * w > MAX_IMAGE_SIDE * MAX_IMAGE_SIDE:
        raise InputError(f"point cloud of {w}x{h} points is too large")
    if point_step <= 0:
        raise InputError(f"point_step must be positive, got {point_step}")
    by_name = {str(f.name): f for f in getattr(msg, "fields", [])}
    sizes = {_PF_UINT32: ("u4", 4), _PF_FLOAT32: ("f4", 4), _PF_FLOAT64: ("f8", 8)}

    def field(name: str, allowed: tuple[int, ...]):
        f = by_name[name]
        dt = int(f.datatype)
        if dt not in allowed or int(f.count) != 1:
            raise InputError(f"point cloud field {name!r}: unsupported datatype {dt} "
                             f"or count {f.count}")
        kind, size = sizes[dt]
        off = int(f.offset)
        if off < 0 or off + size > point_step:
            raise InputError(f"point cloud field {name!r} at offset {off} does not fit in "
                             f"point_step {point_step}")
        return endian + kind, off

    missing = [n for n in ("x", "y", "z") if n not in by_name]
    if missing:
        raise InputError(f"point cloud lacks field(s) {', '.join(missing)}")
    names, formats, offsets = [], [], []
    for n in ("x", "y", "z"):
        fmt, off = field(n, (_PF_FLOAT32, _PF_FLOAT64))
        names.append(n)
        formats.append(fmt)
        offsets.append(off)
    colour = next((n for n in ("rgb", "rgba") if n in by_name), None)
    if colour is not None:
        _, off = field(colour, (_PF_FLOAT32, _PF_UINT32))
        # The colour is a bit pattern, whatever the declared type: read it as an integer.
        names.append("c")
        formats.append(endian + "u4")
        offsets.append(off)
    if row_step < w * point_step:
        raise InputError(f"row_step {row_step} is smaller than width x point_step "
                         f"({w} x {point_step})")
    buf = _data_bytes(getattr(msg, "data", None), "point cloud")
    if buf.size < row_step * h:
        raise InputError(f"point cloud data has {buf.size} bytes, row_step x height needs "
                         f"{row_step * h}")
    dtype = np.dtype({"names": names, "formats": formats, "offsets": offsets,
                      "itemsize": point_step})
    rows = buf[: row_step * h].reshape(h, row_step)[:, : w * point_step]
    cloud = rows.copy().view(dtype).reshape(h, w)
    points = np.stack([cloud["x"], cloud["y"], cloud["z"]], axis=-1).astype(np.float32)
    rgb = None
    if colour is not None:
        c = cloud["c"]
        rgb = np.stack([(c >> 16) & 0xFF, (c >> 8) & 0xFF, c & 0xFF], axis=-1).astype(np.uint8)
    return CloudArrays(points, rgb)


# --------------------------------------------------------------------------------------------
# answers


def _point(xyz):
    from geometry_msgs.msg import Point

    return Point(x=float(xyz[0]), y=float(xyz[1]), z=float(xyz[2]) if len(xyz) > 2 else 0.0)


def fill_spatial_answer(msg: Any, result) -> Any:
    """Copy a :class:`~depthvlm_ros.core.answers.SpatialResult` into a ``SpatialAnswer``.

    The final text, the model's text, the source, every pixel measured with its depth and 3-D
    point, and one ``RegionMeasurement`` per region (the header, id and question are the
    caller's). Returns ``msg``.
    """
    from depthvlm_ros.msg import RegionMeasurement

    msg.answer, msg.model_answer, msg.source = result.answer, result.model_answer, result.source
    px = result.pixels
    msg.pixels = [_point(p) for p in np.asarray(px.pixels, dtype=np.float64).reshape(-1, 2)]
    msg.depths = [float(d) for d in px.depths]
    msg.points = [_point(p) for p in px.points]
    regions = []
    for r in result.regions:
        m = RegionMeasurement()
        m.roi.x_offset, m.roi.y_offset = int(r.roi.x_offset), int(r.roi.y_offset)
        m.roi.width, m.roi.height = int(r.roi.width), int(r.roi.height)
        m.origin, m.label = int(r.origin), r.label
        m.valid_fraction, m.nearest_depth = float(r.valid_fraction), float(r.nearest_depth)
        m.nearest_pixel, m.nearest_point = _point(r.nearest_pixel), _point(r.nearest_point)
        m.median_depth, m.mean_depth = float(r.median_depth), float(r.mean_depth)
        m.centroid = _point(r.centroid)
        m.width_m, m.height_m = float(r.width_m), float(r.height_m)
        regions.append(m)
    msg.regions = regions
    msg.status = result.status
    return msg
