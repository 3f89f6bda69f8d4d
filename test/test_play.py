"""depthvlm play: a bag published to a live rclpy subscriber with its timing and /clock."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from depthvlm_ros.core.camera import Intrinsics
from depthvlm_ros.core.errors import InputError
from depthvlm_ros.bags import SAMPLE_START_NS, SampleFrame, write_frames_bag
from depthvlm_ros.ros.play import play_bag

pytest.importorskip("rclpy")
from rosgraph_msgs.msg import Clock  # noqa: E402
from sensor_msgs.msg import CameraInfo, Image  # noqa: E402

N, PERIOD_NS, RATE = 6, 200_000_000, 2.0  # 0.2 s of bag time -> 0.1 s of wall time


# Topic names of our own: other tests' nodes may publish /camera/image_raw on the same domain.
IMG, INFO = f"/play_test_{os.getpid()}/image_raw", f"/play_test_{os.getpid()}/camera_info"


def _bag(path: Path) -> None:
    frames = [SampleFrame(np.full((4, 6, 3), 10 * i, np.uint8),
                          Intrinsics(500.0, 500.0, 2.5, 1.5, 6, 4),
                          np.full((4, 6), 1.0 + i, np.float32), SAMPLE_START_NS + i * PERIOD_NS)
              for i in range(N)]
    write_frames_bag(path, frames, "mcap", topics={"image": IMG, "camera_info": INFO})


def test_play_publishes_with_timing_and_clock(tmp_path):
    from depthvlm_ros.ros import harness

    _bag(tmp_path / "bag")
    # A domain of our own, so parallel runs and other tests' nodes do not see each other.
    domain = harness.domain_id("play")
    proc = None
    with harness.Client(domain, name="play_test_listener", record=(), inputs=()) as client:
        client.record("images", keep=lambda m: (time.monotonic(), m), topic=IMG, msg_type=Image)
        client.record("infos", topic=INFO, msg_type=CameraInfo)
        client.record("clocks", keep=lambda m: m.clock.sec * 10**9 + m.clock.nanosec,
                      topic="/clock", msg_type=Clock)
        try:
            proc = subprocess.Popen(
                [sys.executable, "-m", "depthvlm_ros.cli", "play", str(tmp_path / "bag"),
                 "--rate", str(RATE), "--clock", "--delay", "0.5", "--wait-for-subscribers",
                 "20", "--topics", IMG, INFO],
                env=harness.ros_env(domain), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                text=True)
            out = proc.communicate(timeout=45)[0]
            # Messages still in flight when the player exits come within a second.
            try:
                client.wait(lambda: len(client.messages("images")) >= N and
                            len(client.messages("infos")) >= N, "the played frames", 1.0)
            except TimeoutError:
                pass
        finally:
            if proc is not None and proc.poll() is None:
                proc.kill()
        images, infos = client.messages("images"), client.messages("infos")
        clocks = client.messages("clocks")
    assert proc.returncode == 0, out
    assert "published 12 messages" in out
    assert len(images) == N and len(infos) == N, out
    stamps = [m.header.stamp.sec * 10**9 + m.header.stamp.nanosec for _, m in images]
    assert stamps == [SAMPLE_START_NS + i * PERIOD_NS for i in range(N)]
    assert images[3][1].data[0] == 30 and images[0][1].encoding == "rgb8"
    # Timing: the recorded 0.2 s spacing played at rate 2 is 0.1 s of wall time.
    gaps = np.diff([t for t, _ in images])
    assert abs(float(np.median(gaps)) - 0.1) < 0.04, gaps
    assert 0.35 < images[-1][0] - images[0][0] < 0.9
    # /clock carries bag time across the bag's span, never backwards.
    assert len(clocks) >= N
    assert SAMPLE_START_NS <= min(clocks) and max(clocks) == SAMPLE_START_NS + (N - 1) * PERIOD_NS
    assert clocks == sorted(clocks)


def test_play_rejects_bad_arguments(tmp_path):
    _bag(tmp_path / "bag")
    with pytest.raises(InputError):
        play_bag(tmp_path / "bag", rate=0.0)
    with pytest.raises(InputError, match="not in"):
        play_bag(tmp_path / "bag", topics=["/missing"], log=None)
    with pytest.raises(InputError, match="cannot open"):
        play_bag(tmp_path / "nothing", log=None)
