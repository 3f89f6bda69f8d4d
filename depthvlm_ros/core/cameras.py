"""Several cameras on one model: camera names, their topics, and which camera a question is about.

A node serving several cameras keeps every camera's topics under the camera's name
(``front/image``, ``front/depth/image``, ...), so namespaces and remaps work per camera as they
do for one. With no names configured there is one unnamed camera (``""``) on the plain topics.
The rules live here so the node, its tests and the documentation agree on them.
"""

from __future__ import annotations

import re
from typing import Mapping, Sequence

from .errors import ConfigError, InputError

__all__ = ["MAX_CAMERAS", "parse_camera_names", "camera_topic", "choose_camera"]

#: Most cameras one node serves; each costs subscriptions, publishers and held frames.
MAX_CAMERAS = 16

# A camera name becomes one token of a relative topic name (ROS 2 topic-name rules).
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


def parse_camera_names(text: str) -> tuple[str, ...]:
    """The cameras of a ``cameras`` setting, in order.

    Args:
        text: comma-separated names (spaces around them are ignored), e.g. ``"front, left"``.
            Empty: one unnamed camera on the plain topics.

    Returns:
        ``("",)`` for the unnamed camera, else the names.

    Raises:
        ConfigError: a name is not a valid topic token, repeats, or there are too many.
    """
    if not text.strip():
        return ("",)
    names = tuple(part.strip() for part in text.split(","))
    problems = [f"{n!r} is not a topic name token (a letter, then letters, digits or _)"
                for n in names if not _NAME.match(n)]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        problems.append(f"repeated: {', '.join(repeated)}")
    if len(names) > MAX_CAMERAS:
        problems.append(f"{len(names)} cameras, at most {MAX_CAMERAS}")
    if problems:
        raise ConfigError(f"invalid cameras={text!r}: " + "; ".join(problems))
    return names


def camera_topic(camera: str, topic: str) -> str:
    """The relative topic of ``topic`` for ``camera`` (the plain topic for the unnamed one)."""
    return f"{camera}/{topic}" if camera else topic


def choose_camera(cameras: Sequence[str], name: str = "", frame_id: str = "",
                  frame_ids: Mapping[str, str] | None = None) -> str:
    """The camera a question is about.

    In order: the camera ``name`` the question gives; else the camera whose latest frame has
    ``frame_id`` (the question's header); else the first camera. With one camera, that camera
    (a name, when given, must still be it).

    Args:
        cameras: the node's cameras, in configured order.
        name: camera named by the question ('' = not named).
        frame_id: ``header.frame_id`` of the question ('' = not given).
        frame_ids: camera -> ``frame_id`` of its latest image.

    Raises:
        InputError: the name is not one of ``cameras``, or ``frame_id`` is given, several
            cameras are served and none of their latest frames has it.
    """
    served = ", ".join(c for c in cameras if c) or "one unnamed camera"
    if name:
        if name not in cameras:
            raise InputError(f"unknown camera {name!r}; this node serves: {served}")
        return name
    if len(cameras) == 1 or not frame_id:
        return cameras[0]
    matches = [c for c in cameras if (frame_ids or {}).get(c) == frame_id]
    if not matches:
        seen = ", ".join(f"{c}: {f!r}" for c, f in (frame_ids or {}).items() if f) or "none yet"
        raise InputError(f"no camera has published frame_id {frame_id!r} (latest frames: {seen});"
                         f" name the camera instead (one of {served})")
    return matches[0]
