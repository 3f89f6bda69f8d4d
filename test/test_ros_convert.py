"""Tests of depthvlm_ros.ros.convert against independent decoders.

Independent references used here: Pillow's raw decoder (channel orders and row stride), the
``rosbags`` CDR (de)serialiser (wire layout of our messages, without rclpy), ``struct`` for single
values, and the pinhole formulas written out per pixel.
"""

from __future__ import annotations

import math
import struct
from types import SimpleNamespace

import numpy as np
import pytest

sensor_msgs = pytest.importorskip("sensor_msgs.msg", reason="ROS 2 sensor_msgs Python package not installed")
std_msgs = pytest.importorskip("std_msgs.msg", reason="ROS 2 std_msgs Python package not installed")
serialization = pytest.importorskip("rclpy.serialization", reason="rclpy not installed")

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from PIL import Image as PILImage  # noqa: E402

from depthvlm_ros.core.camera import Intrinsics, backproject  # noqa: E402
from depthvlm_ros.core.errors import InputError  # noqa: E402
from depthvlm_ros.ros import convert  # noqa: E402

Image = sensor_msgs.Image
CameraInfo = sensor_msgs.CameraInfo
PointCloud2 = sensor_msgs.PointCloud2
PointField = sensor_msgs.PointField
Header = std_msgs.Header

PAD_BYTE = 0xAB  # row padding filled with a visible value so leaking it would show


def _rgb(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _header(sec: int = 12, nanosec: int = 345, frame: str = "cam_optical") -> Header:
    h = Header(frame_id=frame)
    h.stamp.sec, h.stamp.nanosec = sec, nanosec
    return h


def _padded(pixels: np.ndarray, pad: int) -> tuple[bytes, int]:
    """Row bytes of (H, W, C) pixels with ``pad`` bytes of PAD_BYTE after each row."""
    h = pixels.shape[0]
    rows = pixels.reshape(h, -1)
    step = rows.shape[1] + pad
    out = np.full((h, step), PAD_BYTE, dtype=np.uint8)
    out[:, : rows.shape[1]] = rows
    return out.tobytes(), step


def _raw_pixels(rgb: np.ndarray, encoding: str) -> np.ndarray:
    """The bytes a camera would send for ``rgb`` under ``encoding`` (alpha = 200)."""
    h, w, _ = rgb.shape
    alpha = np.full((h, w, 1), 200, dtype=np.uint8)
    return {
        "rgb8": rgb,
        "bgr8": rgb[:, :, ::-1],
        "rgba8": np.concatenate([rgb, alpha], axis=2),
        "bgra8": np.concatenate([rgb[:, :, ::-1], alpha], axis=2),
        "mono8": rgb[:, :, :1],
    }[encoding]


# Pillow image mode and raw mode that decode each encoding.
PIL_MODES = {"rgb8": ("RGB", "RGB"), "bgr8": ("RGB", "BGR"), "rgba8": ("RGBA", "RGBA"),
             "bgra8": ("RGBA", "BGRA"), "mono8": ("L", "L")}


# ---------------------------------------------------------------------------------------------
# colour images


@pytest.mark.parametrize("encoding", list(convert.COLOR_ENCODINGS))
@pytest.mark.parametrize("pad", [0, 1, 3, 64])
@pytest.mark.parametrize("bigendian", [0, 1])
def test_image_to_rgb_matches_pillow_and_source(encoding, pad, bigendian):
    rgb = _rgb(5, 7, seed=pad)
    raw = _raw_pixels(rgb, encoding)
    data, step = _padded(raw, pad)
    msg = Image(height=5, width=7, encoding=encoding, is_bigendian=bigendian, step=step, data=data)

    out = convert.image_to_rgb(msg)

    mode, rawmode = PIL_MODES[encoding]
    ref = np.asarray(PILImage.frombuffer(mode, (7, 5), data, "raw", rawmode, step, 1).convert("RGB"))
    expected = np.repeat(rgb[:, :, :1], 3, axis=2) if encoding == "mono8" else rgb
    assert out.dtype == np.uint8 and out.shape == (5, 7, 3)
    np.testing.assert_array_equal(out, ref)
    np.testing.assert_array_equal(out, expected)


def test_image_to_rgb_returns_an_independent_array():
    rgb = _rgb(3, 4)
    msg = Image(height=3, width=4, encoding="rgb8", step=12, data=rgb.tobytes())
    out = convert.image_to_rgb(msg)
    out[:] = 0
    np.testing.assert_array_equal(np.frombuffer(msg.data, np.uint8).reshape(3, 4, 3), rgb)


def test_image_to_rgb_accepts_trailing_bytes_and_list_data():
    rgb = _rgb(2, 3)
    msg = SimpleNamespace(height=2, width=3, encoding="rgb8", is_bigendian=0, step=9,
                          data=list(rgb.tobytes()) + [1, 2, 3])
    np.testing.assert_array_equal(convert.image_to_rgb(msg), rgb)


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "mono8"])
def test_rgb_to_msg_round_trip(encoding):
    rgb = _rgb(6, 9, seed=3)
    src = rgb[:, :, 0] if encoding == "mono8" else rgb
    msg = convert.rgb_to_msg(src, _header(), encoding=encoding)
    assert (msg.encoding, msg.height, msg.width, msg.is_bigendian) == (encoding, 6, 9, 0)
    assert msg.step == 9 * (1 if encoding == "mono8" else 3)
    assert (msg.header.stamp.sec, msg.header.stamp.nanosec, msg.header.frame_id) == (12, 345, "cam_optical")
    back = convert.image_to_rgb(msg)
    expected = np.repeat(src[:, :, None], 3, axis=2) if encoding == "mono8" else rgb
    np.testing.assert_array_equal(back, expected)
    if encoding == "bgr8":
        assert bytes(msg.data[:3]) == bytes(rgb[0, 0, ::-1])


def test_builders_copy_the_header():
    header = _header()
    msg = convert.rgb_to_msg(_rgb(2, 2), header)
    header.frame_id = "changed later"
    assert msg.header.frame_id == "cam_optical"
    assert convert.rgb_to_msg(_rgb(2, 2)).header.stamp.sec == 0


def test_image_wire_format_against_rosbags():
    """Our Image survives rclpy's CDR serialisation and reads back in rosbags' own parser, and
    a rosbags-built Image decodes through image_to_rgb (duck-typed reader)."""
    typesys = pytest.importorskip("rosbags.typesys", reason="rosbags not installed")
    store = typesys.get_typestore(typesys.Stores.ROS2_JAZZY)
    rgb = _rgb(4, 5, seed=9)
    msg = convert.rgb_to_msg(rgb, _header(), encoding="bgr8")
    theirs = store.deserialize_cdr(bytes(serialization.serialize_message(msg)), "sensor_msgs/msg/Image")
    assert (theirs.height, theirs.width, theirs.step, theirs.encoding) == (4, 5, 15, "bgr8")
    assert theirs.header.frame_id == "cam_optical" and theirs.header.stamp.nanosec == 345
    np.testing.assert_array_equal(theirs.data.reshape(4, 5, 3)[:, :, ::-1], rgb)
    np.testing.assert_array_equal(convert.image_to_rgb(theirs), rgb)

    # And the other way: a padded bgra8 image written by rosbags, read by rclpy, then by us.
    RbImage = store.types["sensor_msgs/msg/Image"]
    RbHeader = store.types["std_msgs/msg/Header"]
    RbTime = store.types["builtin_interfaces/msg/Time"]
    data, step = _padded(_raw_pixels(rgb, "bgra8"), 12)
    rb = RbImage(header=RbHeader(stamp=RbTime(sec=1, nanosec=2), frame_id="f"), height=4, width=5,
                 encoding="bgra8", is_bigendian=0, step=step, data=np.frombuffer(data, np.uint8))
    ours = serialization.deserialize_message(bytes(store.serialize_cdr(rb, "sensor_msgs/msg/Image")), Image)
    np.testing.assert_array_equal(convert.image_to_rgb(ours), rgb)


# ---------------------------------------------------------------------------------------------
# depth


def test_depth_round_trip_keeps_nan_and_bits():
    depth = np.random.default_rng(1).uniform(0.2, 20.0, (6, 8)).astype(np.float32)
    depth[1, 2] = np.nan
    depth[3, 4] = np.inf
    msg = convert.depth_to_msg(depth, _header())
    assert (msg.encoding, msg.step, msg.is_bigendian, msg.height, msg.width) == ("32FC1", 32, 0, 6, 8)
    assert msg.header.frame_id == "cam_optical"
    # Pixel (row 2, col 5) read with struct, independently of numpy's view.
    (value,) = struct.unpack_from("<f", bytes(msg.data), 2 * msg.step + 5 * 4)
    assert value == depth[2, 5]
    back = convert.msg_to_depth(msg)
    assert back.dtype == np.float32
    np.testing.assert_array_equal(back, depth)  # NaN == NaN for assert_array_equal


def test_depth_from_float64_is_stored_as_float32():
    depth = np.array([[1.0, 2.5], [np.nan, 4.0]])
    back = convert.msg_to_depth(convert.depth_to_msg(depth))
    np.testing.assert_array_equal(back, depth.astype(np.float32))


@pytest.mark.parametrize("encoding", ["16UC1", "mono16"])
@pytest.mark.parametrize("bigendian", [0, 1])
def test_millimetre_depth_with_padding_and_byte_order(encoding, bigendian):
    mm = np.array([[0, 1000, 65535], [250, 0, 1]], dtype=np.uint16)
    fmt = ">H" if bigendian else "<H"
    pad = 6
    rows = [b"".join(struct.pack(fmt, int(v)) for v in row) + bytes([PAD_BYTE] * pad) for row in mm]
    msg = Image(height=2, width=3, encoding=encoding, is_bigendian=bigendian, step=6 + pad,
                data=b"".join(rows))
    depth = convert.msg_to_depth(msg)
    expected = np.array([[np.nan, 1.0, 65.535], [0.25, np.nan, 0.001]], dtype=np.float32)
    np.testing.assert_allclose(depth, expected, rtol=1e-6)
    assert np.isnan(depth[0, 0]) and np.isnan(depth[1, 1])


def test_big_endian_float_depth_with_padding():
    values = [[1.5, -0.0, float("nan")], [3.25, 1e-3, 7.0]]
    rows = [b"".join(struct.pack(">f", v) for v in row) + b"\0\0\0\0" for row in values]
    msg = Image(height=2, width=3, encoding="32FC1", is_bigendian=1, step=16, data=b"".join(rows))
    np.testing.assert_array_equal(convert.msg_to_depth(msg), np.array(values, dtype=np.float32))


# ---------------------------------------------------------------------------------------------
# camera info


def _camera_info(w=640, h=480, fx=525.0, fy=520.0, cx=319.5, cy=241.0, tx=-37.5) -> CameraInfo:
    info = CameraInfo(width=w, height=h, distortion_model="plumb_bob")
    info.header = _header()
    info.d = [0.1, -0.2, 0.001, 0.002, 0.0]
    info.k = [fx, 0.0, cx, 0.0, fy, cy, 0.0, 0.0, 1.0]
    info.r = [1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0]
    info.p = [fx, 0.0, cx, tx, 0.0, fy, cy, 0.0, 0.0, 0.0, 1.0, 0.0]
    info.roi.x_offset, info.roi.y_offset, info.roi.width, info.roi.height = 10, 20, 300, 200
    return info


def test_camera_info_to_intrinsics():
    intr = convert.camera_info_to_intrinsics(_camera_info())
    assert intr == Intrinsics(525.0, 520.0, 319.5, 241.0, 640, 480)


def test_scaled_camera_info_follows_pixel_edge_convention():
    info = _camera_info()
    out = convert.scaled_camera_info(info, 320, 240)
    # By hand: half the size; focal and baseline term halve; centres map (c + .5) / 2 - .5.
    np.testing.assert_allclose(out.k, [262.5, 0, 159.5, 0, 260.0, 120.25, 0, 0, 1])
    np.testing.assert_allclose(out.p, [262.5, 0, 159.5, -18.75, 0, 260.0, 120.25, 0, 0, 0, 1, 0])
    assert (out.width, out.height) == (320, 240)
    assert convert.camera_info_to_intrinsics(out) == Intrinsics(525.0, 520.0, 319.5, 241.0, 640, 480).scaled(320, 240)
    assert (out.header.stamp.sec, out.header.frame_id) == (12, "cam_optical")
    assert out.distortion_model == "plumb_bob"
    np.testing.assert_allclose(out.d, info.d)
    np.testing.assert_allclose(out.r, info.r)
    assert (out.roi.x_offset, out.roi.y_offset, out.roi.width, out.roi.height) == (5, 10, 150, 100)
    # The left edge of pixel 0 projects to u = -0.5 in both images (a ray through the same point).
    x_over_z = (-0.5 - info.k[2]) / info.k[0]
    assert math.isclose(out.k[0] * x_over_z + out.k[2], -0.5)


def test_scaled_camera_info_fills_an_empty_projection_and_anisotropic_scale():
    info = _camera_info()
    info.p = [0.0] * 12
    out = convert.scaled_camera_info(info, 1280, 360)
    k = np.asarray(out.k).reshape(3, 3)
    np.testing.assert_allclose(np.asarray(out.p).reshape(3, 4)[:, :3], k)
    np.testing.assert_allclose(k[0], [1050.0, 0, (319.5 + 0.5) * 2 - 0.5])
    np.testing.assert_allclose(k[1], [0, 390.0, (241.0 + 0.5) * 0.75 - 0.5])


# ---------------------------------------------------------------------------------------------
# point clouds


def _depth_and_intrinsics():
    intr = Intrinsics(fx=50.0, fy=40.0, cx=4.2, cy=2.7, width=9, height=6)
    depth = np.random.default_rng(4).uniform(0.5, 5.0, (6, 9)).astype(np.float32)
    depth[0, 0] = np.nan
    depth[5, 8] = np.nan
    return depth, intr


def test_pointcloud2_layout_and_pinhole_points_via_rosbags():
    typesys = pytest.importorskip("rosbags.typesys", reason="rosbags not installed")
    depth, intr = _depth_and_intrinsics()
    rgb = _rgb(6, 9, seed=5)
    msg = convert.depth_to_pointcloud2(depth, intr, _header(), rgb)

    assert (msg.height, msg.width, msg.point_step, msg.row_step) == (6, 9, 16, 144)
    assert msg.is_dense is False and msg.is_bigendian is False
    assert [(f.name, f.offset, f.datatype, f.count) for f in msg.fields] == [
        ("x", 0, PointField.FLOAT32, 1), ("y", 4, PointField.FLOAT32, 1),
        ("z", 8, PointField.FLOAT32, 1), ("rgb", 12, PointField.FLOAT32, 1)]

    # Parse the wire bytes with rosbags and read single points with struct.
    store = typesys.get_typestore(typesys.Stores.ROS2_JAZZY)
    theirs = store.deserialize_cdr(bytes(serialization.serialize_message(msg)), "sensor_msgs/msg/PointCloud2")
    raw = theirs.data.tobytes()
    assert theirs.header.frame_id == "cam_optical" and len(raw) == 6 * 144
    for v, u in [(1, 2), (3, 7), (5, 0), (2, 4)]:
        x, y, z, packed = struct.unpack_from("<fffI", raw, v * 144 + u * 16)
        zd = float(depth[v, u])
        assert math.isclose(z, zd, rel_tol=1e-6)
        assert math.isclose(x, (u - 4.2) * zd / 50.0, rel_tol=1e-5, abs_tol=1e-6)
        assert math.isclose(y, (v - 2.7) * zd / 40.0, rel_tol=1e-5, abs_tol=1e-6)
        r, g, b = (int(c) for c in rgb[v, u])
        assert packed == (r << 16) | (g << 8) | b  # 0x00RRGGBB, PCL packing
    x, y, z, _ = struct.unpack_from("<fffI", raw, 0)
    assert all(math.isnan(c) for c in (x, y, z))

    back = convert.pointcloud2_to_array(msg)
    np.testing.assert_array_equal(back.points, backproject(depth, intr))
    np.testing.assert_array_equal(back.rgb, rgb)


def test_pointcloud2_without_colour_has_zero_padding():
    depth, intr = _depth_and_intrinsics()
    msg = convert.make_pointcloud2(backproject(depth, intr), _header())
    assert [f.name for f in msg.fields] == ["x", "y", "z"] and msg.point_step == 16
    pads = np.frombuffer(bytes(msg.data), np.uint8).reshape(-1, 16)[:, 12:]
    assert not pads.any()
    back = convert.pointcloud2_to_array(msg)
    assert back.rgb is None
    np.testing.assert_array_equal(back.points, backproject(depth, intr))


def test_pointcloud2_reader_handles_foreign_layouts():
    """Big-endian float64 x/y/z, uint32 rgba, odd point_step and row padding (hand-built)."""
    h, w, point_step, row_step = 2, 3, 40, 3 * 40 + 8
    dt = np.dtype({"names": ["z", "x", "y", "rgba"], "formats": [">f8", ">f8", ">f8", ">u4"],
                   "offsets": [0, 8, 16, 28], "itemsize": point_step})
    pts = np.zeros((h, w), dtype=dt)
    pts["x"] = [[1, 2, 3], [4, 5, 6]]
    pts["y"] = -pts["x"]
    pts["z"] = np.nan
    pts["rgba"] = 0xFF102030
    rows = np.full((h, row_step), PAD_BYTE, np.uint8)
    rows[:, : w * point_step] = pts.view(np.uint8).reshape(h, -1)
    fields = [PointField(name="z", offset=0, datatype=PointField.FLOAT64, count=1),
              PointField(name="x", offset=8, datatype=PointField.FLOAT64, count=1),
              PointField(name="y", offset=16, datatype=PointField.FLOAT64, count=1),
              PointField(name="rgba", offset=28, datatype=PointField.UINT32, count=1)]
    msg = PointCloud2(height=h, width=w, fields=fields, is_bigendian=True, point_step=point_step,
                      row_step=row_step, data=rows.tobytes(), is_dense=False)
    back = convert.pointcloud2_to_array(msg)
    np.testing.assert_array_equal(back.points[..., 0], pts["x"].astype(np.float32))
    np.testing.assert_array_equal(back.points[..., 1], pts["y"].astype(np.float32))
    assert np.isnan(back.points[..., 2]).all()
    assert (back.rgb == np.array([0x10, 0x20, 0x30], np.uint8)).all()


# ---------------------------------------------------------------------------------------------
# bad input


def _img(**kw):
    base = dict(height=2, width=3, encoding="rgb8", is_bigendian=0, step=9, data=bytes(18))
    base.update(kw)
    return SimpleNamespace(**base)


@pytest.mark.parametrize("msg, fragment", [
    (_img(encoding="yuv422"), "unsupported colour encoding"),
    (_img(encoding="16UC1"), "unsupported colour encoding"),
    (_img(encoding="mono16"), "unsupported colour encoding"),
    (_img(encoding="32FC1"), "unsupported colour encoding"),
    (_img(encoding="8UC3"), "unsupported colour encoding"),
    (_img(encoding="RGB8"), "unsupported colour encoding"),
    (_img(encoding=None), "encoding must be a string"),
    (_img(step=8), "step 8 is smaller"),
    (_img(step=-9), "smaller"),
    (_img(data=bytes(17)), "data has 17 bytes"),
    (_img(step=10, data=bytes(18)), "needs 20"),
    (_img(width=0), "empty image"),
    (_img(height=0, data=b""), "empty image"),
    (_img(height=-1), "empty image"),
    (_img(width=16385, step=3 * 16385), "exceeds the limit"),
    (_img(height=20000), "exceeds the limit"),
    (_img(height="two"), "must be integers"),
    (_img(data=None), "no data"),
    (_img(data=[0, 1, 300] * 6), "0..255"),
    (_img(data="not bytes at all!!"), "bytes"),
    (_img(data=np.zeros(18, np.float32)), "bytes"),
    (_img(step=None), "no valid step"),
])
def test_image_to_rgb_rejects(msg, fragment):
    with pytest.raises(InputError, match=fragment):
        convert.image_to_rgb(msg)


@pytest.mark.parametrize("msg", [
    _img(encoding="rgb8"),
    _img(encoding="32FC2", step=24, data=bytes(48)),
    _img(encoding="32FC1", step=11, data=bytes(24)),
    _img(encoding="16UC1", step=5, data=bytes(12)),
    _img(encoding="32FC1", step=12, data=bytes(23)),
])
def test_msg_to_depth_rejects(msg):
    with pytest.raises(InputError):
        convert.msg_to_depth(msg)


@pytest.mark.parametrize("array", [
    np.zeros((2, 3, 1), np.float32), np.zeros(5, np.float32), np.zeros((0, 4), np.float32),
    np.zeros((2, 2), np.complex64), np.zeros((2, 2), object), np.zeros((1, 16385), np.float32),
])
def test_depth_to_msg_rejects(array):
    with pytest.raises(InputError):
        convert.depth_to_msg(array)


@pytest.mark.parametrize("array, encoding", [
    (np.zeros((2, 2, 3), np.float32), "rgb8"),
    (np.zeros((2, 2, 4), np.uint8), "rgb8"),
    (np.zeros((2, 2), np.uint8), "rgb8"),
    (np.zeros((2, 2, 3), np.uint8), "mono8"),
    (np.zeros((2, 2, 3), np.uint8), "rgba8"),
    (np.zeros((0, 2, 3), np.uint8), "rgb8"),
])
def test_rgb_to_msg_rejects(array, encoding):
    with pytest.raises(InputError):
        convert.rgb_to_msg(array, None, encoding=encoding)


def _bad_info(**changes):
    info = _camera_info()
    k = list(info.k)
    for index, value in changes.pop("k", {}).items():
        k[index] = value
    info.k = k
    for name, value in changes.items():
        setattr(info, name, value)
    return info


@pytest.mark.parametrize("info, fragment", [
    (_bad_info(k={0: 0.0, 4: 0.0, 2: 0.0, 5: 0.0, 8: 0.0}), "focal"),  # uncalibrated
    (_bad_info(k={0: -500.0}), "focal"),
    (_bad_info(k={4: float("nan")}), "finite"),
    (_bad_info(k={2: float("inf")}), "finite"),
    (_bad_info(k={8: 0.0}), "pinhole"),
    (_bad_info(k={6: 0.3}), "pinhole"),
    (_bad_info(width=0), "empty"),
    (SimpleNamespace(width=4, height=4, k=[1.0, 0, 1, 0, 1]), "9 entries"),
    (SimpleNamespace(width=4, height=4), "no k"),
    (SimpleNamespace(width=4, height=4, k="abc"), "numbers"),
])
def test_camera_info_rejects(info, fragment):
    with pytest.raises(InputError, match=fragment):
        convert.camera_info_to_intrinsics(info)
    with pytest.raises(InputError):
        convert.scaled_camera_info(info, 10, 10)


@pytest.mark.parametrize("width, height", [(0, 10), (10, 0), (-3, 4), (16385, 10)])
def test_scaled_camera_info_rejects_bad_target(width, height):
    with pytest.raises(InputError):
        convert.scaled_camera_info(_camera_info(), width, height)


@pytest.mark.parametrize("points, rgb", [
    (np.zeros((2, 3), np.float32), None),
    (np.zeros((2, 3, 4), np.float32), None),
    (np.zeros((0, 3, 3), np.float32), None),
    (np.zeros((2, 3, 3), np.complex64), None),
    (np.zeros((2, 3, 3), np.float32), np.zeros((2, 3, 3), np.float32)),
    (np.zeros((2, 3, 3), np.float32), np.zeros((3, 2, 3), np.uint8)),
    (np.zeros((2, 3, 3), np.float32), np.zeros((2, 3), np.uint8)),
])
def test_make_pointcloud2_rejects(points, rgb):
    with pytest.raises(InputError):
        convert.make_pointcloud2(points, None, rgb)


def _cloud(**kw):
    fields = [SimpleNamespace(name=n, offset=4 * i, datatype=7, count=1) for i, n in enumerate("xyz")]
    base = dict(height=1, width=2, fields=fields, is_bigendian=False, point_step=12, row_step=24,
                data=bytes(24))
    base.update(kw)
    return SimpleNamespace(**base)


@pytest.mark.parametrize("msg, fragment", [
    (_cloud(fields=[SimpleNamespace(name="x", offset=0, datatype=7, count=1)]), "lacks"),
    (_cloud(fields=[SimpleNamespace(name=n, offset=4 * i, datatype=1, count=1)
                    for i, n in enumerate("xyz")]), "unsupported datatype"),
    (_cloud(fields=[SimpleNamespace(name=n, offset=4 * i, datatype=7, count=3)
                    for i, n in enumerate("xyz")]), "count"),
    (_cloud(point_step=8, row_step=16), "does not fit"),
    (_cloud(row_step=20), "row_step 20"),
    (_cloud(data=bytes(23)), "needs 24"),
    (_cloud(width=0), "empty"),
    (_cloud(point_step=0, row_step=0), "point_step"),
    (_cloud(height=None), "PointCloud2"),
])
def test_pointcloud2_to_array_rejects(msg, fragment):
    with pytest.raises(InputError, match=fragment):
        convert.pointcloud2_to_array(msg)


# ---------------------------------------------------------------------------------------------
# fuzz: arbitrary headers and bytes either convert or raise InputError


ENCODINGS = list(convert.COLOR_ENCODINGS) + list(convert.DEPTH_ENCODINGS) + [
    "", "yuv422", "bayer_rggb8", "8UC3", "32FC3", "RGB8"]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(encoding=st.sampled_from(ENCODINGS),
       height=st.integers(-3, 12), width=st.integers(-3, 12), step=st.integers(-8, 80),
       bigendian=st.integers(0, 1), data=st.binary(max_size=600),
       as_rclpy=st.booleans())
def test_fuzz_image_decoders(encoding, height, width, step, bigendian, data, as_rclpy):
    if as_rclpy and min(height, width, step) >= 0:
        msg = Image(height=height, width=width, encoding=encoding, is_bigendian=bigendian,
                    step=step, data=data)
    else:
        msg = SimpleNamespace(height=height, width=width, encoding=encoding,
                              is_bigendian=bigendian, step=step, data=data)
    for decode, channels in ((convert.image_to_rgb, 3), (convert.msg_to_depth, None)):
        try:
            out = decode(msg)
        except InputError:
            continue
        assert out.shape[:2] == (height, width)
        if channels:
            assert out.shape == (height, width, 3) and out.dtype == np.uint8
        else:
            assert out.dtype == np.float32
        assert len(data) >= step * height >= 0


@settings(max_examples=200, deadline=None)
@given(point_step=st.integers(-4, 40), row_step=st.integers(-4, 120),
       height=st.integers(-1, 3), width=st.integers(-1, 4), bigendian=st.booleans(),
       fields=st.lists(st.tuples(st.sampled_from(["x", "y", "z", "rgb", "rgba", "i"]),
                                 st.integers(-2, 40), st.integers(0, 9), st.integers(0, 2)),
                       max_size=6),
       data=st.binary(max_size=400))
def test_fuzz_pointcloud2_reader(point_step, row_step, height, width, bigendian, fields, data):
    msg = SimpleNamespace(height=height, width=width, is_bigendian=bigendian,
                          point_step=point_step, row_step=row_step, data=data,
                          fields=[SimpleNamespace(name=n, offset=o, datatype=d, count=c)
                                  for n, o, d, c in fields])
    try:
        out = convert.pointcloud2_to_array(msg)
    except InputError:
        return
    assert out.points.shape == (height, width, 3) and out.points.dtype == np.float32


def test_depth_16uc1_output_and_compressed_depth_input():
    from depthvlm_ros.core import codecs

    depth = np.array([[0.5, np.nan, 70.0], [1.2344, -1.0, 2.0]], np.float32)
    msg = convert.depth_to_msg(depth, encoding="16UC1")
    assert (msg.encoding, msg.step) == ("16UC1", 6)
    np.testing.assert_array_equal(np.frombuffer(bytes(msg.data), "<u2").reshape(2, 3),
                                  [[500, 0, 0], [1234, 0, 2000]])  # 0 = invalid (REP 118)
    back = convert.msg_to_depth(msg)
    np.testing.assert_array_equal(np.isnan(back), [[False, True, True], [False, True, False]])
    with pytest.raises(InputError):
        convert.depth_to_msg(depth, encoding="8UC1")
    fmt, data = codecs.encode_compressed_depth(np.nan_to_num(depth, nan=0.0), "16UC1", "rvl")
    packed = convert.compressed_image_msg(fmt, data)
    np.testing.assert_array_equal(convert.msg_to_depth(packed), back)
