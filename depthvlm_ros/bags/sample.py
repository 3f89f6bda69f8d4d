"""Small rosbag2 bags of RGB-D frames: for tests, the demo and ``depthvlm make-sample-bag``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np

from ..core.camera import Intrinsics
from ..core.errors import InputError
from . import messages as bagconv
from .typestore import make_typestore, open_writer

__all__ = ["SAMPLE_TOPICS", "SAMPLE_START_NS", "SampleFrame", "write_frames_bag",
           "write_sample_bag"]

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
    """

    rgb: np.ndarray
    intrinsics: Intrinsics | None
    depth: np.ndarray | None
    stamp_ns: int


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
                     fx: float | None = None) -> int:
    """A bag of procedural RGB-D frames from the benchmark's scene generator.

    Frames alternate between indoor and outdoor scenes (seed ``seed + i``), at ``rate_hz``
    from :data:`SAMPLE_START_NS`, on the :data:`SAMPLE_TOPICS` topics, frame
    ``camera_optical_frame``, GT as ``32FC1`` metres.

    Returns:
        The number of frames written.
    """
    from ..core.bench.synthetic import render_scene

    if frames < 1 or width < 8 or height < 8 or rate_hz <= 0:
        raise InputError("need frames >= 1, width and height >= 8 and a positive rate")
    kinds = ("indoor", "outdoor")
    period = round(1e9 / rate_hz)

    def gen():
        for i in range(frames):
            kw = {"width": width, "height": height}
            if fx is not None:
                kw["fx"] = fx
            sc = render_scene(seed + i, kinds[i % 2], **kw)
            intr = Intrinsics(float(sc.fx), float(sc.fy), float(sc.cx), float(sc.cy),
                              sc.rgb.shape[1], sc.rgb.shape[0])
            yield SampleFrame(sc.rgb, intr, sc.depth, SAMPLE_START_NS + i * period)

    return write_frames_bag(path, gen(), storage)
