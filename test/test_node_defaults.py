"""depthvlm_node on its defaults over real DDS: sensor-data (best-effort) image QoS, no
camera_info with a fallback field of view, and point clouds built only while subscribed; and
``use_sim_time`` following the /clock of ``depthvlm play``.

The live module (test_node_live.py) runs the node with reliable images so that its
full-resolution frame survives Fast DDS fragmentation; this module keeps the default QoS and
uses small frames (under the fragmentation size) so the default path is proven too.
"""

from __future__ import annotations

import math
import subprocess
import sys
import time

import numpy as np
import pytest
from ros_support import live_node, stamp

from depthvlm_ros.ros import harness

HFOV_DEG = 70.0
W, H = 160, 120


@pytest.fixture(scope="module")
def default_node(tmp_path_factory):
    log = tmp_path_factory.mktemp("node_defaults") / "depthvlm_node.log"
    # Nobody listens to the cloud at first (no "points" recorder): the node must not build it.
    with live_node(log, "node_defaults", {"fallback_hfov_deg": HFOV_DEG,
                                          "diagnostics_period_s": 0.25},
                   params_file=True, active_timeout=90) as running:
        yield running


def _send_image_only(client, rgb, sec):
    client.pub_image.publish(harness.image(rgb, stamp(sec), "cam"))


def test_default_qos_fallback_fov_and_points_only_when_subscribed(default_node):
    client, proc, log = default_node
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 255, (H, W, 3), dtype=np.uint8)
    # Best-effort delivery may drop a sample: resend until one depth image comes back.
    for sec in range(1, 30):
        _send_image_only(client, rgb, sec)
        time.sleep(0.3)
        if client.messages("depth"):
            break
    (depth, *_) = client.wait_for("depth", proc=proc)
    assert (depth.width, depth.height, depth.encoding) == (W, H, "32FC1")
    info = client.wait_for("info", lambda m: m.header.stamp == depth.header.stamp, proc=proc)[0]
    f = (W / 2.0) / math.tan(math.radians(HFOV_DEG) / 2.0)
    assert info.k[0] == pytest.approx(f) and info.k[4] == pytest.approx(f)
    assert (info.k[2], info.k[5]) == pytest.approx(((W - 1) / 2.0, (H - 1) / 2.0))

    vals = client.wait_diag(lambda v: int(v["frames_processed"]) >= 1)
    assert int(vals["points_published"]) == 0, "cloud built with nobody subscribed"

    # Someone subscribes: clouds follow, with the fallback intrinsics.
    client.record("points")
    t0 = time.monotonic()
    while not client.messages("points"):
        assert time.monotonic() - t0 < 30, "no cloud after subscribing"
        _send_image_only(client, rgb, 100 + int(time.monotonic() - t0))
        time.sleep(0.5)
    cloud = client.messages("points")[-1]
    assert (cloud.width, cloud.height, cloud.is_dense) == (W, H, False)
    vals = client.wait_diag(lambda v: int(v["points_published"]) >= 1)
    assert "Traceback" not in log.read_text() and proc.poll() is None


def test_node_follows_played_clock_with_use_sim_time(tmp_path):
    """``depthvlm play --clock`` drives a node started with ``use_sim_time``: the node's own
    clock (the stamp of its /diagnostics) is bag time, and every played frame comes out with
    its recorded stamp."""
    from depthvlm_ros.core.camera import Intrinsics
    from depthvlm_ros.bags import SAMPLE_START_NS, SampleFrame, write_frames_bag

    n, period_ns = 8, 500_000_000
    rng = np.random.default_rng(1)
    intr = Intrinsics(120.0, 120.0, 79.5, 59.5, W, H)
    frames = [SampleFrame(rng.integers(0, 255, (H, W, 3), dtype=np.uint8), intr,
                          np.full((H, W), 2.0, np.float32), SAMPLE_START_NS + i * period_ns)
              for i in range(n)]
    write_frames_bag(tmp_path / "bag", frames, "mcap",
                     topics={"image": "/cam/image_raw", "camera_info": "/cam/camera_info"})
    log = tmp_path / "node.log"
    player = None
    with live_node(log, "node_sim_time", {"use_sim_time": True, "image_qos": "reliable",
                                          "diagnostics_period_s": 0.25},
                   ["-r", "image:=/cam/image_raw", "-r", "camera_info:=/cam/camera_info"],
                   params_file=True, connect=False, active_timeout=90) as (client, proc, _):
        try:
            # Rate 0.5: one frame per wall second, slower than the model, so none is superseded.
            player = subprocess.Popen(
                [sys.executable, "-m", "depthvlm_ros.cli", "play", str(tmp_path / "bag"), "--rate",
                 "0.5", "--clock", "--wait-for-subscribers", "20"],
                env=harness.ros_env(harness.domain_id("node_sim_time"), threads=1),
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            out, _ = player.communicate(timeout=120)
            assert player.returncode == 0, out
            last = SAMPLE_START_NS + (n - 1) * period_ns
            client.wait_for("depth", lambda m: m.header.stamp.sec * 10**9 + m.header.stamp.nanosec
                            == last, proc=proc)
            stamps = [m.header.stamp.sec * 10**9 + m.header.stamp.nanosec
                      for m in client.messages("depth")]
            assert stamps == [f.stamp_ns for f in frames][-len(stamps):] and len(stamps) >= n - 1
            diag_ns = [m.header.stamp.sec * 10**9 + m.header.stamp.nanosec
                       for m in client.messages("diag")]
            in_bag_time = [t for t in diag_ns if SAMPLE_START_NS <= t <= last + 10**9]
            # Reports made while the bag played carry bag time, not wall time.
            assert in_bag_time, f"no diagnostics in bag time: {diag_ns[:5]}"
            assert abs(time.time() * 1e9 - max(diag_ns)) > 3600e9, "node clock is wall time"
        finally:
            if player is not None and player.poll() is None:
                player.kill()
