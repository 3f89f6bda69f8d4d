"""intrinsics_to_camera_info: the CameraInfo the node publishes for fallback intrinsics."""

import pytest

pytest.importorskip("sensor_msgs.msg")

from depthvlm_ros.core.camera import Intrinsics  # noqa: E402
from depthvlm_ros.ros import convert  # noqa: E402


def test_round_trip_and_layout():
    intr = Intrinsics.from_fov(640, 480, 70.0)
    ci = convert.intrinsics_to_camera_info(intr)
    assert (ci.width, ci.height, ci.distortion_model) == (640, 480, "plumb_bob")
    assert list(ci.d) == [0.0] * 5 and list(ci.r) == [1, 0, 0, 0, 1, 0, 0, 0, 1]
    assert list(ci.p) == [intr.fx, 0, intr.cx, 0, 0, intr.fy, intr.cy, 0, 0, 0, 1, 0]
    assert convert.camera_info_to_intrinsics(ci) == intr
    scaled = convert.camera_info_to_intrinsics(convert.scaled_camera_info(ci, 320, 240))
    assert scaled == intr.scaled(320, 240)
