"""The cameras of a recording: which image, camera_info and depth topics belong together.

A robot bag holds many topics (realsense2_camera: ``.../color/image_raw/compressed``,
``.../color/camera_info``, ``.../depth/image_rect_raw/compressedDepth``,
``.../depth/camera_info``, ``.../aligned_depth_to_color/...``, ``.../imu``, ``/tf_static``;
ZED: ``.../rgb/image_rect_color``, ``.../depth/depth_registered``, ...). :func:`discover_cameras`
reads the connection list and one message per image topic and sorts them:

* an image topic is ``sensor_msgs/Image`` or ``sensor_msgs/CompressedImage``; its base topic
  drops image_transport's suffix (``/compressed``, ``/compressedDepth``), and its camera_info is
  the sibling ``camera_info`` of the base topic (image_transport's rule); the raw transport is
  preferred when a base is recorded both ways;
* a **camera** is a colour base topic (a colour encoding, a JPEG / PNG format);
* a **depth** is a depth base topic (16UC1 / mono16 / 32FC1, or compressedDepth);
* the GT of a camera is its one depth topic in the same device namespace (the base's
  grandparent, ``/camera/camera`` for ``/camera/camera/color/image_raw``), else the one of
  those on the colour grid (same size as the camera: ``aligned_depth_to_color``,
  ``depth_registered``); with several and none on the grid, none is chosen;
* everything else (tf, IMU, ...) is listed as ignored.

Needs ``rosbags`` only (no rclpy).
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass, field
from pathlib import Path

from ..core.codecs import EncodingError, is_compressed_depth, parse_color_format
from ..core.errors import InputError
from . import messages as bagconv
from .typestore import make_typestore, open_reader

__all__ = ["ImageTopic", "CameraTopics", "BagTopics", "ChosenTopics", "discover_cameras"]

_IMAGE = "sensor_msgs/msg/Image"
_COMPRESSED = "sensor_msgs/msg/CompressedImage"
_CAMERA_INFO = "sensor_msgs/msg/CameraInfo"
_SUFFIXES = {"/compressed": "compressed", "/compressedDepth": "compressedDepth"}


@dataclass
class ImageTopic:
    """One image base topic (colour or depth) and how it was recorded.

    Attributes:
        topic: the topic replay reads (the raw transport when both are recorded).
        msgtype: its message type.
        encoding: the Image encoding or the CompressedImage format of its first message.
        base: the base topic (image_transport's name without the transport suffix).
        camera_info_topic: the sibling camera_info, or None when the bag has none.
        size: (width, height) from the camera_info or the first message (None: unknown).
        messages: messages on ``topic``.
        transports: every recorded topic of this base.
    """

    topic: str
    msgtype: str
    encoding: str
    base: str
    camera_info_topic: str | None = None
    size: tuple[int, int] | None = None
    messages: int = 0
    transports: list[str] = field(default_factory=list)

    @property
    def device(self) -> str:
        """The namespace of the sensor: the base topic's grandparent."""
        return posixpath.dirname(posixpath.dirname(self.base))

    def describe(self) -> str:
        size = f"{self.size[0]}x{self.size[1]}" if self.size else "size unknown"
        info = self.camera_info_topic or "no camera_info"
        return (f"{self.topic} [{self.msgtype.rsplit('/', 1)[-1]} '{self.encoding}', {size}, "
                f"{self.messages} msgs] camera_info: {info}")


@dataclass
class CameraTopics:
    """A colour camera and the depth topics that can serve as its GT."""

    image: ImageTopic
    depth_candidates: list[ImageTopic] = field(default_factory=list)
    gt: ImageTopic | None = None


@dataclass
class ChosenTopics:
    """The topics a replay reads (see :meth:`BagTopics.choose`)."""

    image_topic: str
    camera_info_topic: str
    gt_depth_topic: str | None = None
    gt_camera_info_topic: str | None = None

    def describe(self) -> str:
        gt = "none"
        if self.gt_depth_topic:
            gt = self.gt_depth_topic + (f" (camera_info {self.gt_camera_info_topic})"
                                        if self.gt_camera_info_topic else "")
        return (f"image {self.image_topic}, camera_info {self.camera_info_topic}, "
                f"GT depth {gt}")


@dataclass
class BagTopics:
    """The cameras, depth topics and ignored topics of a bag."""

    bag: str
    cameras: list[CameraTopics] = field(default_factory=list)
    depths: list[ImageTopic] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)

    def camera(self, image_topic: str) -> CameraTopics | None:
        """The camera one of whose transports is ``image_topic`` (None: not a camera)."""
        return next((c for c in self.cameras if image_topic in c.image.transports), None)

    def depth(self, topic: str) -> ImageTopic | None:
        """The depth topic one of whose transports is ``topic``."""
        return next((d for d in self.depths if topic in d.transports), None)

    def only_camera(self) -> CameraTopics:
        """The camera to use when none is named: the only one, else the only colour one
        (mono8 infrared streams aside).

        Raises:
            InputError: no camera, or several.
        """
        if len(self.cameras) == 1:
            return self.cameras[0]
        colour = [c for c in self.cameras if not _is_mono(c.image.encoding)]
        if len(colour) == 1:
            return colour[0]
        if not self.cameras:
            raise InputError(f"no camera (colour image topic) in {self.bag}")
        raise InputError(f"{len(self.cameras)} cameras in {self.bag}: choose one with "
                         "--image-topic (see --list)")

    def choose(self, image_topic: str | None = None, camera_info_topic: str | None = None,
               gt_depth_topic: str | None = None,
               gt_camera_info_topic: str | None = None) -> ChosenTopics:
        """Fill in the topics not named: without ``image_topic`` the camera is
        :meth:`only_camera` and its GT (if it has one) is scored; a camera_info is the image's
        sibling; a GT's camera_info is the GT's sibling.

        Raises:
            InputError: no camera or several, or no camera_info for the image.
        """
        auto = image_topic is None
        if auto:
            image_topic = self.only_camera().image.topic
        cam = self.camera(image_topic)
        if camera_info_topic is None:
            camera_info_topic = cam.image.camera_info_topic if cam else None
            if camera_info_topic is None:
                raise InputError(f"no camera_info topic beside {image_topic} in {self.bag}: "
                                 "name one with --camera-info-topic")
        if gt_depth_topic is None and auto and cam is not None and cam.gt is not None:
            gt_depth_topic = cam.gt.topic
        if gt_depth_topic is not None and gt_camera_info_topic is None:
            depth = self.depth(gt_depth_topic)
            gt_camera_info_topic = depth.camera_info_topic if depth else None
        return ChosenTopics(image_topic, camera_info_topic, gt_depth_topic,
                            gt_camera_info_topic)

    def describe(self) -> str:
        """The listing ``depthvlm replay --list`` prints."""
        lines = [f"cameras in {self.bag}:"]
        for c in self.cameras or []:
            lines.append(f"  {c.image.describe()}")
            for d in c.depth_candidates:
                mark = "GT" if d is c.gt else "  "
                lines.append(f"    {mark} depth {d.describe()}")
        if not self.cameras:
            lines.append("  (none)")
        loose = [d for d in self.depths if not any(d in c.depth_candidates for c in self.cameras)]
        for d in loose:
            lines.append(f"  depth without a camera: {d.describe()}")
        if self.ignored:
            lines.append("ignored: " + ", ".join(self.ignored))
        return "\n".join(lines)


def _is_mono(encoding: str) -> bool:
    return encoding.split(";")[0].strip() in ("mono8", "8UC1")


def _base(topic: str, msgtype: str) -> tuple[str, str]:
    if msgtype == _COMPRESSED:
        for suffix, transport in _SUFFIXES.items():
            if topic.endswith(suffix):
                return topic[: -len(suffix)], transport
        return topic, "compressed"
    return topic, "raw"


def _kind(msg, msgtype: str) -> tuple[str, str]:
    """``(colour | depth | other, encoding or format)`` of an image topic's first message."""
    if msgtype == _COMPRESSED:
        fmt = str(msg.format)
        if is_compressed_depth(fmt):
            return "depth", fmt
        try:
            parse_color_format(fmt)
        except EncodingError:
            return "other", fmt
        return "colour", fmt
    enc = str(msg.encoding)
    if enc in bagconv.COLOR_ENCODINGS:
        return "colour", enc
    if enc in bagconv.DEPTH_ENCODINGS:
        return "depth", enc
    return "other", enc


def _first(reader, conn):
    for _, _, raw in reader.messages(connections=[conn]):
        return raw
    return None


def discover_cameras(bag: str | Path, typestore=None) -> BagTopics:
    """Sort a bag's topics into cameras, depth topics and ignored topics (see the module).

    Raises:
        InputError: the bag cannot be opened.
    """
    ts = typestore or make_typestore()
    bag = Path(bag)
    reader = open_reader(bag)
    out = BagTopics(str(bag.parent if bag.is_file() else bag))
    try:
        infos: dict[str, tuple[int, int] | None] = {}
        images: dict[str, dict[str, ImageTopic]] = {"colour": {}, "depth": {}}
        for conn in reader.connections:
            if conn.msgtype == _CAMERA_INFO:
                raw = _first(reader, conn)
                try:
                    msg = ts.deserialize_cdr(raw, conn.msgtype)
                    infos[conn.topic] = (int(msg.width), int(msg.height))
                except Exception:  # noqa: BLE001 - an unreadable camera_info has no size
                    infos[conn.topic] = None
        for conn in reader.connections:
            if conn.msgtype not in (_IMAGE, _COMPRESSED):
                if conn.msgtype != _CAMERA_INFO:
                    out.ignored.append(f"{conn.topic} ({conn.msgtype})")
                continue
            raw = _first(reader, conn)
            try:
                msg = ts.deserialize_cdr(raw, conn.msgtype)
                kind, encoding = _kind(msg, conn.msgtype)
            except Exception:  # noqa: BLE001 - an undecodable topic is not offered
                kind, encoding = "other", "?"
            if kind == "other":
                out.ignored.append(f"{conn.topic} ({conn.msgtype} '{encoding}')")
                continue
            base, transport = _base(conn.topic, conn.msgtype)
            found = images[kind].get(base)
            size = (int(msg.width), int(msg.height)) if conn.msgtype == _IMAGE else None
            topic = ImageTopic(conn.topic, conn.msgtype, encoding, base,
                               messages=int(conn.msgcount), size=size)
            if found is None:
                images[kind][base] = topic
                found = topic
            elif transport == "raw":
                topic.transports = found.transports
                images[kind][base] = found = topic
            if conn.topic not in found.transports:
                found.transports.append(conn.topic)
        for kind in ("colour", "depth"):
            for t in images[kind].values():
                sibling = posixpath.join(posixpath.dirname(t.base), "camera_info")
                if sibling in infos:
                    t.camera_info_topic = sibling
                    t.size = t.size or infos[sibling]
        out.depths = sorted(images["depth"].values(), key=lambda t: t.topic)
        for image in sorted(images["colour"].values(), key=lambda t: t.topic):
            out.cameras.append(_with_gt(image, out.depths, len(images["colour"]) == 1))
    finally:
        reader.close()
    return out


def _with_gt(image: ImageTopic, depths: list[ImageTopic], only_camera: bool) -> CameraTopics:
    near = [d for d in depths if d.device == image.device]
    candidates = near or (list(depths) if only_camera else [])
    cam = CameraTopics(image, candidates)
    on_grid = [d for d in candidates if d.size is not None and d.size == image.size]
    if len(candidates) == 1:
        cam.gt = candidates[0]
    elif len(on_grid) == 1:
        cam.gt = on_grid[0]
    return cam
