"""Small rosbag2 bags of RGB-D frames: for tests, the demo and ``depthvlm make-sample-bag``.

:func:`write_frames_bag` writes this package's own layout (raw rgb8 + camera_info + GT);
:func:`write_robot_bag` the layout of a robot's recording (realsense2_camera or ZED topic
names, compressed colour, compressedDepth at the depth sensor's own resolution, /tf_static and
an IMU stream beside them).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np

from ..core.camera import Intrinsics
from ..core.codecs import encode_color, encode_compressed_depth, metres_to_millimetres
from ..core.errors import InputError
from . import messages as bagconv
from .typestore import make_typestore, open_writer

__all__ = ["SAMPLE_TOPICS", "SAMPLE_START_NS", "SampleFrame", "write_frames_bag",
           "write_sample_bag", "ROBOT_LAYOUTS", "write_robot_bag"]

#: Topics of :func:`write_sample_bag` / ``depthvlm make-sample-bag``.
SAMPLE_TOPICS = {"image": "/camera/image_raw", "camera_info": "/camera/camera_info",
                 "gt_depth": "/camera/depth_gt"}


@dataclass
class SampleFrame:
    """One RGB-D frame to write into a bag.

    Attributes:
        rgb: (H, W, 3) uint8.
        intrinsics: the camera's intrinsics (None: no camera_info is written for this frame).
        depth: GT depth in metres (0 or NaN invalid), or None for no GT message.
        stamp_ns: header stamp and log time.
        depth_intrinsics: intrinsics of ``depth`` when it comes from a depth sensor of its own
            (:func:`write_robot_bag`); None: ``depth`` is on the colour grid.
    """

    rgb: np.ndarray
    intrinsics: Intrinsics | None
    depth: np.ndarray | None
    stamp_ns: int
    depth_intrinsics: Intrinsics | None = None


def write_frames_bag(path: str | Path, frames: Iterable[SampleFrame], storage: str = "mcap",
                     frame_id: str = "camera_optical_frame", topics: dict | None = None,
                     gt_encoding: str = "32FC1", typestore=None) -> int:
    """Write frames as image (rgb8) + camera_info + GT depth messages.

    Each frame's messages share its stamp as header stamp and log time. GT is ``32FC1`` metres
    (NaN invalid) or ``16UC1`` millimetres (0 invalid).

    Returns:
        The number of frames written.
    """
    if gt_encoding not in ("32FC1", "16UC1"):
        raise InputError(f"GT encoding must be 32FC1 or 16UC1, got {gt_encoding}")
    ts = typestore or make_typestore()
    names = {**SAMPLE_TOPICS, **(topics or {})}
    n = 0
    with open_writer(path, storage) as writer:
        conns = {
            "image": writer.add_connection(names["image"], "sensor_msgs/msg/Image", typestore=ts),
            "camera_info": writer.add_connection(names["camera_info"],
                                                 "sensor_msgs/msg/CameraInfo", typestore=ts),
            "gt_depth": writer.add_connection(names["gt_depth"], "sensor_msgs/msg/Image",
                                              typestore=ts),
        }
        for f in frames:
            header = bagconv.make_header(ts, f.stamp_ns, frame_id)
            img = bagconv.make_image(ts, header, np.ascontiguousarray(f.rgb, dtype=np.uint8), "rgb8")
            writer.write(conns["image"], f.stamp_ns, ts.serialize_cdr(img, "sensor_msgs/msg/Image"))
            if f.intrinsics is not None:
                info = bagconv.make_camera_info(ts, header, f.intrinsics)
                writer.write(conns["camera_info"], f.stamp_ns,
                             ts.serialize_cdr(info, "sensor_msgs/msg/CameraInfo"))
            if f.depth is not None:
                d = np.asarray(f.depth, dtype=np.float32)
                valid = np.isfinite(d) & (d > 0)
                if gt_encoding == "32FC1":
                    gt = bagconv.make_depth_image(ts, header, np.where(valid, d, np.nan))
                else:
                    mm = np.where(valid, np.clip(np.round(d * 1000.0), 1, 65535), 0)
                    gt = bagconv.make_image(ts, header, mm.astype(np.uint16), "16UC1")
                writer.write(conns["gt_depth"], f.stamp_ns,
                             ts.serialize_cdr(gt, "sensor_msgs/msg/Image"))
            n += 1
    return n


#: First stamp of sample bags (2023-11-14T22:13:20Z), a realistic wall-clock epoch.
SAMPLE_START_NS = 1_700_000_000 * 1_000_000_000


def write_sample_bag(path: str | Path, frames: int = 20, width: int = 320, height: int = 240,
                     storage: str = "mcap", rate_hz: float = 10.0, seed: int = 0,
                     fx: float | None = None, world: str | None = None) -> int:
    """A bag of procedural RGB-D frames from the benchmark's scene generator.

    Frames alternate between indoor and outdoor scenes (seed ``seed + i``), at ``rate_hz``
    from :data:`SAMPLE_START_NS`, on the :data:`SAMPLE_TOPICS` topics, frame
    ``camera_optical_frame``, GT as ``32FC1`` metres. ``world`` defaults to the generator's
    ``EMBEDDED_WORLD``, the world the embedded model was trained in, so a demo on it shows
    what that model learned.

    Returns:
        The number of frames written.
    """
    from ..core.bench.synthetic import EMBEDDED_WORLD, render_scene

    if frames < 1 or width < 8 or height < 8 or rate_hz <= 0:
        raise InputError("need frames >= 1, width and height >= 8 and a positive rate")
    kinds = ("indoor", "outdoor")
    period = round(1e9 / rate_hz)

    def gen():
        for i in range(frames):
            kw = {"width": width, "height": height, "world": world or EMBEDDED_WORLD}
            if fx is not None:
                kw["fx"] = fx
            sc = render_scene(seed + i, kinds[i % 2], **kw)
            intr = Intrinsics(float(sc.fx), float(sc.fy), float(sc.cx), float(sc.cy),
                              sc.rgb.shape[1], sc.rgb.shape[0])
            yield SampleFrame(sc.rgb, intr, sc.depth, SAMPLE_START_NS + i * period)

    return write_frames_bag(path, gen(), storage)


#: Topic layouts of :func:`write_robot_bag`: colour and depth base topics (image_transport
#: appends ``/compressed`` and ``/compressedDepth``), camera_info beside each, the IMU, the
#: optical frames, and the depth encoding each driver publishes.
ROBOT_LAYOUTS = {
    "realsense": {"color": "/camera/camera/color/image_raw",
                  "depth": "/camera/camera/depth/image_rect_raw",
                  "imu": "/camera/camera/imu", "color_frame": "camera_color_optical_frame",
                  "depth_frame": "camera_depth_optical_frame", "depth_encoding": "16UC1"},
    "zed": {"color": "/zed/zed_node/rgb/image_rect_color",
            "depth": "/zed/zed_node/depth/depth_registered", "imu": "/zed/zed_node/imu/data",
            "color_frame": "zed_left_camera_frame_optical",
            "depth_frame": "zed_left_camera_frame_optical", "depth_encoding": "32FC1"},
}


def _sibling_info(base: str) -> str:
    return base.rsplit("/", 1)[0] + "/camera_info"


def write_robot_bag(path: str | Path, frames: Iterable[SampleFrame], layout: str = "realsense",
                    storage: str = "mcap", color: str = "jpeg", depth: str = "png",
                    depth_stamp_offset_ns: int = 0, typestore=None) -> dict[str, str]:
    """Write frames the way a robot records its RGB-D camera.

    Per frame: colour on ``<color>/compressed`` (``color`` = ``jpeg`` or ``png``, format
    ``rgb8; jpeg compressed bgr8``) or raw rgb8 on ``<color>`` (``color`` = ``raw``), its
    camera_info; GT depth on ``<depth>/compressedDepth`` (``depth`` = ``png`` or ``rvl``) or
    raw on ``<depth>`` (``raw``: 16UC1 millimetres or 32FC1 metres, the layout's encoding),
    stamped ``depth_stamp_offset_ns`` after the colour (separate sensors), with the depth
    sensor's camera_info (``frame.depth_intrinsics``, else the colour's); an IMU message; and
    one ``/tf_static`` at the start.

    Returns:
        The topics written: ``image``, ``camera_info``, ``gt_depth``, ``gt_camera_info``,
        ``imu``, ``tf_static``.

    Raises:
        InputError: unknown layout or codec.
    """
    if layout not in ROBOT_LAYOUTS:
        raise InputError(f"layout must be one of {', '.join(ROBOT_LAYOUTS)}, got {layout!r}")
    if color not in ("jpeg", "png", "raw") or depth not in ("png", "rvl", "raw"):
        raise InputError("color must be jpeg, png or raw and depth png, rvl or raw")
    ts = typestore or make_typestore()
    lay = ROBOT_LAYOUTS[layout]
    image_type = "sensor_msgs/msg/Image" if color == "raw" else "sensor_msgs/msg/CompressedImage"
    depth_type = "sensor_msgs/msg/Image" if depth == "raw" else "sensor_msgs/msg/CompressedImage"
    topics = {"image": lay["color"] + ("" if color == "raw" else "/compressed"),
              "camera_info": _sibling_info(lay["color"]),
              "gt_depth": lay["depth"] + ("" if depth == "raw" else "/compressedDepth"),
              "gt_camera_info": _sibling_info(lay["depth"]), "imu": lay["imu"],
              "tf_static": "/tf_static"}
    info_type = "sensor_msgs/msg/CameraInfo"
    types = {"image": image_type, "camera_info": info_type, "gt_depth": depth_type,
             "gt_camera_info": info_type, "imu": "sensor_msgs/msg/Imu",
             "tf_static": "tf2_msgs/msg/TFMessage"}
    with open_writer(path, storage) as writer:
        conns = {k: writer.add_connection(topics[k], types[k], typestore=ts) for k in topics}

        def write(key: str, ns: int, msg) -> None:
            writer.write(conns[key], ns, ts.serialize_cdr(msg, types[key]))

        first = True
        for f in frames:
            if first:
                write("tf_static", f.stamp_ns, _tf_static(ts, f.stamp_ns, lay))
                first = False
            hdr = bagconv.make_header(ts, f.stamp_ns, lay["color_frame"])
            if color == "raw":
                img = bagconv.make_image(ts, hdr, np.ascontiguousarray(f.rgb, np.uint8), "rgb8")
            else:
                img = bagconv.make_compressed_image(ts, hdr, *encode_color(f.rgb, color))
            write("image", f.stamp_ns, img)
            if f.intrinsics is not None:
                write("camera_info", f.stamp_ns, bagconv.make_camera_info(ts, hdr, f.intrinsics))
            write("imu", f.stamp_ns, _imu(ts, hdr))
            if f.depth is None:
                continue
            d_ns = f.stamp_ns + depth_stamp_offset_ns
            d_hdr = bagconv.make_header(ts, d_ns, lay["depth_frame"])
            d_intr = f.depth_intrinsics or f.intrinsics
            write("gt_depth", d_ns, _depth_msg(ts, d_hdr, f.depth, lay["depth_encoding"], depth))
            if d_intr is not None:
                write("gt_camera_info", d_ns, bagconv.make_camera_info(ts, d_hdr, d_intr))
    return topics


def _depth_msg(ts, header, depth_m: np.ndarray, encoding: str, codec: str):
    if codec != "raw":
        return bagconv.make_compressed_image(
            ts, header, *encode_compressed_depth(depth_m, encoding, codec, depth_max=60.0))
    if encoding == "16UC1":
        return bagconv.make_image(ts, header, metres_to_millimetres(depth_m), "16UC1")
    return bagconv.make_depth_image(ts, header, depth_m)


def _imu(ts, header):
    types = ts.types
    vec = types["geometry_msgs/msg/Vector3"]
    return types["sensor_msgs/msg/Imu"](
        header=header, orientation=types["geometry_msgs/msg/Quaternion"](x=0.0, y=0.0, z=0.0,
                                                                         w=1.0),
        orientation_covariance=np.zeros(9), angular_velocity=vec(x=0.0, y=0.0, z=0.0),
        angular_velocity_covariance=np.zeros(9), linear_acceleration=vec(x=0.0, y=9.81, z=0.0),
        linear_acceleration_covariance=np.zeros(9))


def _tf_static(ts, ns: int, lay: dict):
    types = ts.types
    tf = types["geometry_msgs/msg/TransformStamped"](
        header=bagconv.make_header(ts, ns, lay["color_frame"]), child_frame_id=lay["depth_frame"],
        transform=types["geometry_msgs/msg/Transform"](
            translation=types["geometry_msgs/msg/Vector3"](x=0.015, y=0.0, z=0.0),
            rotation=types["geometry_msgs/msg/Quaternion"](x=0.0, y=0.0, z=0.0, w=1.0)))
    return types["tf2_msgs/msg/TFMessage"](transforms=[tf])
