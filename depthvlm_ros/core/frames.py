"""Frame rules: which intrinsics a frame is processed with, or why it is dropped.

One place for the rules that the node, ``depthvlm replay``, training and the benchmark all
apply to a frame, so that the same input gives the same depth everywhere:

* :func:`record_intrinsics`: the intrinsics of a benchmark / training record's stored image.

ROS-free: messages are read by attribute (``k``, ``width``, ``height``), so rclpy messages and
rosbags' deserialised messages both work.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .camera import Intrinsics
from .errors import AnnotationError, InputError

if TYPE_CHECKING:  # the bench package imports this module
    from .bench.jsonl import BenchRecord

__all__ = ["record_intrinsics"]


def record_intrinsics(record: "BenchRecord", width: int, height: int) -> Intrinsics:
    """Intrinsics of a record's image as it is stored (``width`` x ``height``).

    ``original_fx`` (and ``fy``, ``cx``, ``cy`` when present) describe the image at
    ``original_rgb_size``; without ``fy`` the pixels are taken as square and without a principal
    point it is put at the centre of the *annotated* image, ``((W0-1)/2, (H0-1)/2)``. If the
    stored image has another size the intrinsics are then scaled to it, so a 640x480 record
    stored at 320x240 has its principal point at the stored image's centre, 159.5.

    Raises:
        AnnotationError: the annotation's focal lengths or sizes are not usable.
    """
    w0, h0 = record.original_rgb_size or (width, height)
    fx = record.original_fx
    fy = record.fy if record.fy is not None else fx
    cx = record.cx if record.cx is not None else (w0 - 1) / 2.0
    cy = record.cy if record.cy is not None else (h0 - 1) / 2.0
    try:
        intr = Intrinsics(fx, fy, cx, cy, int(w0), int(h0))
    except InputError as exc:
        raise AnnotationError(f"{record.source}: {exc}") from None
    if (w0, h0) != (width, height):
        intr = intr.scaled(width, height)
    return intr
