"""depthvlm_node end to end: its own process, real DDS, a real Kinect Azure frame.

The node is the installed launcher with the installed params file, running this checkout's
code (see ``ros_support``), with the embedded model and a private ROS_DOMAIN_ID. The test
publishes images and questions and checks everything that comes back against the inputs and
the pinhole formula. The tests in this module share one node and run in order.
"""

from __future__ import annotations

import math
import signal
import subprocess
import time

import numpy as np
import pytest
from kinect_frame import KINECT_K, downscale
from ros_support import WAIT, camera_info, live_node, stamp

# After ros_support, which skips this module where ROS or the messages are missing.
from geometry_msgs.msg import Point
from lifecycle_msgs.msg import State, Transition
from sensor_msgs.msg import PointCloud2, PointField
from std_msgs.msg import String

from depthvlm_ros.core.camera import Intrinsics
from depthvlm_ros.msg import SpatialAnswer, SpatialQuery
from depthvlm_ros.ros import convert
from depthvlm_ros.ros.harness import OUTPUTS

FRAME_ID = "kinect_rgb_optical_frame"
NODE = "/depthvlm_node"


def _key(header) -> tuple:
    return (header.stamp.sec, header.stamp.nanosec, header.frame_id)


# ------------------------------------------------------------------------------------------
# the node


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    """(client, node process, log path): one node for the whole module."""
    log = tmp_path_factory.mktemp("node") / "depthvlm_node.log"
    # Reliable images: with best effort, this machine's Fast DDS loses every sample that needs
    # fragmenting (anything much over 0.5 MB), so the full-resolution frame would never
    # arrive. The node's QoS switch is the parameter under test here; test_node_defaults.py
    # covers the default (best-effort) path with small frames.
    with live_node(log, "node_live", {"image_qos": "reliable", "query_queue_size": 2,
                                      "publish_colorized": True, "diagnostics_period_s": 0.25,
                                      "warn_throttle_s": 0.0},
                   params_file=True, record=tuple(OUTPUTS), frame_id=FRAME_ID,
                   active_timeout=90) as running:
        yield running


@pytest.fixture(scope="module")
def small(kinect_frame):
    """The Kinect frame at 480x270 (a quarter of each side) and its correctly scaled intrinsics."""
    full = Intrinsics(**KINECT_K)
    return downscale(kinect_frame, 480, 270), full.scaled(480, 270)


def _pixel_in_cloud(cloud: PointCloud2, u: int, v: int) -> tuple[np.ndarray, int]:
    raw = np.frombuffer(bytes(cloud.data), dtype=np.uint8)
    off = v * cloud.row_step + u * cloud.point_step
    xyz = np.frombuffer(raw[off:off + 12].tobytes(), dtype="<f4")
    rgb = int(np.frombuffer(raw[off + 12:off + 16].tobytes(), dtype="<u4")[0])
    return xyz, rgb


# ------------------------------------------------------------------------------------------
# tests


def test_autostart_reaches_active(live):
    client, proc, _ = live
    assert client.state() == State.PRIMARY_STATE_ACTIVE
    assert proc.poll() is None


def test_depth_camera_info_points_colorized(live, small):
    client, proc, _ = live
    rgb, intr = small
    img = client.send_frame(rgb, intr, 1000, 123)
    want = _key(img.header)
    (depth,) = client.wait_for("depth", lambda m: _key(m.header) == want, proc=proc)
    (info,) = client.wait_for("info", lambda m: _key(m.header) == want, proc=proc)
    (cloud,) = client.wait_for("points", lambda m: _key(m.header) == want, proc=proc)
    (col,) = client.wait_for("colorized", lambda m: _key(m.header) == want, proc=proc)

    # depth/image: REP 118 32FC1 metres at the input resolution, header of the input.
    assert (depth.encoding, depth.width, depth.height) == ("32FC1", 480, 270)
    assert depth.step == 4 * 480 and depth.is_bigendian == 0
    d = convert.msg_to_depth(depth)
    valid = np.isfinite(d)
    assert valid.mean() > 0.5 and (d[valid] > 0).all()

    # depth/camera_info: sibling with the same header and the input's intrinsics.
    assert (info.width, info.height) == (480, 270)
    np.testing.assert_allclose(info.k, [intr.fx, 0, intr.cx, 0, intr.fy, intr.cy, 0, 0, 1],
                               rtol=1e-9)

    # points: organized xyz + packed rgb, 16-byte points, NaN allowed (is_dense false).
    assert (cloud.height, cloud.width) == (270, 480)
    assert [(f.name, f.offset, f.datatype, f.count) for f in cloud.fields] == [
        ("x", 0, PointField.FLOAT32, 1), ("y", 4, PointField.FLOAT32, 1),
        ("z", 8, PointField.FLOAT32, 1), ("rgb", 12, PointField.FLOAT32, 1)]
    assert cloud.point_step == 16 and cloud.row_step == 16 * 480
    assert cloud.is_dense is False and cloud.is_bigendian is False
    assert len(cloud.data) == 16 * 480 * 270
    checked = 0
    for u, v in ((0, 0), (240, 135), (479, 269), (100, 200), (333, 17)):
        xyz, packed = _pixel_in_cloud(cloud, u, v)
        z = d[v, u]
        if not np.isfinite(z):
            assert np.isnan(xyz).all()
            continue
        np.testing.assert_allclose(
            xyz, [(u - intr.cx) * z / intr.fx, (v - intr.cy) * z / intr.fy, z], rtol=1e-5,
            atol=1e-6)
        r, g, b = rgb[v, u]
        assert packed == (int(r) << 16) | (int(g) << 8) | int(b)
        checked += 1
    assert checked >= 3

    # depth/colorized: rgb8 preview, same size and header.
    assert (col.encoding, col.width, col.height, col.step) == ("rgb8", 480, 270, 3 * 480)


def test_camera_info_of_another_size_is_scaled_and_order_does_not_matter(live, small,
                                                                         kinect_frame):
    client, proc, _ = live
    rgb, intr = small
    full = Intrinsics(**KINECT_K)
    # Calibration for the full 1920x1080 sensor, image downscaled by 4, and the camera_info
    # arriving after the image: the node must pair them and scale K.
    img = client.send_frame(rgb, full, 1001, info_first=False)
    want = _key(img.header)
    (info,) = client.wait_for("info", lambda m: _key(m.header) == want, proc=proc)
    assert (info.width, info.height) == (480, 270)
    np.testing.assert_allclose(info.k, [intr.fx, 0, intr.cx, 0, intr.fy, intr.cy, 0, 0, 1],
                               rtol=1e-9)
    np.testing.assert_allclose(np.asarray(info.p).reshape(3, 4)[:, :3],
                               np.asarray(info.k).reshape(3, 3), rtol=1e-9)
    client.wait_for("depth", lambda m: _key(m.header) == want, proc=proc)


def test_full_resolution_frame(live, kinect_frame):
    client, proc, _ = live
    full = Intrinsics(**KINECT_K)
    img = client.send_frame(kinect_frame, full, 1002, encoding="bgr8")
    want = _key(img.header)
    (depth,) = client.wait_for("depth", lambda m: _key(m.header) == want, timeout=60, proc=proc)
    assert (depth.encoding, depth.width, depth.height) == ("32FC1", 1920, 1080)
    (info,) = client.wait_for("info", lambda m: _key(m.header) == want, proc=proc)
    np.testing.assert_allclose(info.k, [full.fx, 0, full.cx, 0, full.fy, full.cy, 0, 0, 1])
    (cloud,) = client.wait_for("points", lambda m: _key(m.header) == want, timeout=60,
                               proc=proc)
    assert (cloud.height, cloud.width, cloud.row_step) == (1080, 1920, 16 * 1920)
    d = convert.msg_to_depth(depth)
    u, v = 1500, 900
    xyz, packed = _pixel_in_cloud(cloud, u, v)
    z = d[v, u]
    np.testing.assert_allclose(xyz, [(u - full.cx) * z / full.fx, (v - full.cy) * z / full.fy, z],
                               rtol=1e-5)
    # bgr8 input: the colours must still be the true RGB.
    r, g, b = kinect_frame[v, u]
    assert packed == (int(r) << 16) | (int(g) << 8) | int(b)


def test_answers_carry_stamp_id_depths_and_points(live, small):
    client, proc, _ = live
    rgb, intr = small
    img = client.send_frame(rgb, intr, 1003, 500)
    want = _key(img.header)
    (depth,) = client.wait_for("depth", lambda m: _key(m.header) == want, proc=proc)
    d = convert.msg_to_depth(depth)

    q = SpatialQuery()
    q.header.stamp = stamp(1003, 500)
    q.id, q.text = "q-stamped", "How far away is the table?"
    q.pixels = [Point(x=240.0, y=135.0), Point(x=12.5, y=250.25), Point(x=5000.0, y=3.0)]
    client.pub_query.publish(q)
    client.pub_text.publish(String(data="What is in front of the camera?"))
    (ans,) = client.wait_for("answer", lambda m: m.id == "q-stamped", proc=proc)
    assert ans.status == SpatialAnswer.STATUS_OK, ans.status_reason
    assert _key(ans.header) == want
    assert ans.question == q.text and ans.status_reason == ""
    assert 0.0 < ans.latency < WAIT
    assert len(ans.depths) == len(ans.points) == 3
    for i, (u, v) in enumerate(((240.0, 135.0), (12.5, 250.25))):
        iu, iv = int(np.floor(u + 0.5)), int(np.floor(v + 0.5))
        win = d[max(0, iv - 1):iv + 2, max(0, iu - 1):iu + 2]
        z = float(np.median(win[np.isfinite(win)]))
        assert ans.depths[i] == pytest.approx(z, rel=1e-5)
        p = ans.points[i]
        assert [p.x, p.y, p.z] == pytest.approx(
            [(u - intr.cx) * z / intr.fx, (v - intr.cy) * z / intr.fy, z], rel=1e-5)
    # A pixel outside the image: NaN, not an error.
    assert np.isnan(ans.depths[2]) and np.isnan([ans.points[2].x, ans.points[2].z]).all()

    # Plain-text question: empty id, answered about the latest processed frame.
    (txt,) = client.wait_for("answer", lambda m: m.question == "What is in front of the camera?",
                             proc=proc)
    assert txt.status == SpatialAnswer.STATUS_OK and txt.id == ""
    assert txt.header.frame_id == FRAME_ID and (txt.header.stamp.sec, txt.header.stamp.nanosec) \
        >= (1003, 500)
    assert list(txt.depths) == [] and list(txt.points) == []


def test_bad_questions_get_error_answers(live):
    client, proc, _ = live
    for qid, text in (("empty", "   "), ("long", "x" * 513)):
        q = SpatialQuery()
        q.id, q.text = qid, text
        client.pub_query.publish(q)
    q = SpatialQuery()
    q.id, q.text = "old-frame", "Where is the door?"
    q.header.stamp = stamp(5, 0)  # older than every held frame
    client.pub_query.publish(q)
    q = SpatialQuery()
    q.id, q.text = "nan-pixel", "How far?"
    q.pixels = [Point(x=float("nan"), y=1.0)]
    client.pub_query.publish(q)
    for qid, words in (("empty", "empty"), ("long", "limit"), ("old-frame", "not held"),
                       ("nan-pixel", "non-finite")):
        (ans,) = client.wait_for("answer", lambda m, qid=qid: m.id == qid, proc=proc)
        assert ans.status == SpatialAnswer.STATUS_ERROR, qid
        assert words in ans.status_reason, (qid, ans.status_reason)
        assert ans.answer == ""


def test_query_flood_gets_busy_answers_and_none_is_lost(live):
    client, proc, _ = live
    ids = [f"flood-{i}" for i in range(50)]
    for qid in ids:
        q = SpatialQuery()
        q.id, q.text = qid, "Is the path clear?"
        client.pub_query.publish(q)
    answers = client.wait_for("answer", lambda m: m.id.startswith("flood-"), count=50,
                              proc=proc, timeout=60)
    time.sleep(0.5)  # anything answered twice would show up now
    answers = [m for m in client.messages("answer") if m.id.startswith("flood-")]
    assert sorted(m.id for m in answers) == sorted(ids), "every query answered exactly once"
    by_status = {s: [m for m in answers if m.status == s] for s in (0, 1, 2)}
    busy, ok = by_status[SpatialAnswer.STATUS_BUSY], by_status[SpatialAnswer.STATUS_OK]
    assert not by_status[SpatialAnswer.STATUS_ERROR]
    # Queue of 2 and one worker: most of a burst of 50 must be turned away at once...
    assert len(busy) >= 10 and len(ok) >= 2, (len(busy), len(ok))
    assert all("queue full" in m.status_reason for m in busy)
    # ... and busy answers are immediate, not queued behind the model.
    assert max(m.latency for m in busy) < 5.0


def test_malformed_inputs_are_dropped_and_the_node_keeps_going(live, small):
    client, proc, _ = live
    rgb, intr = small

    def drops(reason):
        return lambda vals: int(vals.get(f"dropped_{reason}", 0)) >= 1

    # A good frame first, fully processed (a frame sent right after it would supersede it).
    client.send_frame(rgb, intr, 2000)
    client.wait_for("depth", lambda m: m.header.stamp.sec == 2000, proc=proc)
    # Unsupported encoding.
    bad = convert.rgb_to_msg(rgb)
    bad.header.stamp, bad.header.frame_id = stamp(2001), FRAME_ID
    bad.encoding = "yuv422_weird"
    client.pub_info.publish(camera_info(intr, bad.header.stamp, FRAME_ID))
    client.pub_image.publish(bad)
    client.wait_diag(drops("bad_encoding"))
    # Data shorter than step x height.
    short = convert.rgb_to_msg(rgb)
    short.header.stamp, short.header.frame_id = stamp(2002), FRAME_ID
    short.data = bytes(short.data)[: len(short.data) // 2]
    client.pub_info.publish(camera_info(intr, short.header.stamp, FRAME_ID))
    client.pub_image.publish(short)
    client.wait_diag(drops("bad_image"))
    # Uncalibrated camera: zero focal length.
    zero = camera_info(intr, stamp(2003), FRAME_ID)
    zero.k = [0.0] * 9
    client.send_frame(rgb, zero, 2003)
    client.wait_diag(drops("bad_camera_info"))
    # camera_info of a different aspect ratio (another camera, or a crop).
    client.send_frame(rgb, Intrinsics(500.0, 500.0, 319.5, 239.5, 640, 480), 2004)
    client.wait_diag(drops("camera_info_size"))

    assert proc.poll() is None
    # Good frames still come out.
    img = client.send_frame(rgb, intr, 2005)
    client.wait_for("depth", lambda m: _key(m.header) == _key(img.header), proc=proc)
    assert not [m for m in client.messages("depth") if m.header.stamp.sec in (2001, 2002, 2003,
                                                                              2004)]


def test_burst_supersedes_and_diagnostics_account_for_everything(live, small):
    client, proc, _ = live
    rgb, intr = small
    for i in range(8):
        client.send_frame(rgb, intr, 3000 + i)
    client.wait_for("depth", lambda m: m.header.stamp.sec == 3007, proc=proc)
    # Latest-frame policy: the newest frame always comes out; most of the burst does not.
    burst_out = {m.header.stamp.sec for m in client.messages("depth")} & set(range(3000, 3008))
    assert len(burst_out) < 8

    after = time.time()

    def settled(vals):
        return int(vals["frames_received"]) == \
            int(vals["frames_processed"]) + int(vals["frames_dropped"]) + \
            int(vals["frames_waiting_camera_info"]) and int(vals["queries_pending"]) == 0
    # Only a report made after the burst's last depth image says anything about it.
    vals = client.wait_diag(settled, after)
    assert int(vals["frames_processed"]) == len(client.messages("depth"))
    assert int(vals["dropped_superseded"]) >= 1
    assert sum(int(v) for k, v in vals.items() if k.startswith("dropped_")) == \
        int(vals["frames_dropped"])
    answers = client.messages("answer")
    assert int(vals["queries_received"]) == len(answers)
    assert int(vals["queries_busy"]) == sum(m.status == SpatialAnswer.STATUS_BUSY for m in answers)
    assert int(vals["queries_error"]) == sum(m.status == SpatialAnswer.STATUS_ERROR
                                             for m in answers)
    assert int(vals["queries_answered"]) == sum(m.status == SpatialAnswer.STATUS_OK
                                                for m in answers)
    # Rates cover the last period only (after the burst here), so only their form is checked;
    # the latency is that of the last processed frame, which must be real.
    assert math.isfinite(float(vals["input_rate_hz"])) and float(vals["model_latency_last_ms"]) > 0.0
    (status,) = client.messages("diag")[-1].status
    assert status.name.startswith(NODE) and status.hardware_id == "embedded"


def test_deactivate_stops_output_and_activate_resumes(live, small):
    client, proc, _ = live
    rgb, intr = small
    assert client.transition(Transition.TRANSITION_DEACTIVATE)
    assert client.state() == State.PRIMARY_STATE_INACTIVE
    client.send_frame(rgb, intr, 4000)
    time.sleep(1.5)
    assert not [m for m in client.messages("depth") if m.header.stamp.sec == 4000]
    assert client.transition(Transition.TRANSITION_ACTIVATE)
    client.wait_connected()
    img = client.send_frame(rgb, intr, 4001)
    client.wait_for("depth", lambda m: _key(m.header) == _key(img.header), proc=proc)


def test_ctrl_c_exits_cleanly(live):
    client, proc, log = live
    proc.send_signal(signal.SIGINT)
    try:
        rc = proc.wait(30)
    except subprocess.TimeoutExpired:
        pytest.fail("node did not exit within 30 s of SIGINT")
    text = log.read_text()
    assert rc == 0, text[-3000:]
    assert "Traceback" not in text and "[ERROR]" not in text, text[-3000:]
