"""The node and ``depthvlm replay`` apply one set of frame rules (core/frames.py).

One bag with frames that exercise every rule (camera_info at another resolution, at another
aspect ratio, with a ROI and an all-zero P, a bad encoding, corrupt pixel data) goes through the
lifecycle node in-process (its real callbacks, converters and publishers' messages, without DDS
timing) and through ``replay_bag``: the same depth maps, camera_info, point clouds and drop
counters come out.
"""

from __future__ import annotations

import numpy as np
import pytest

from depthvlm_ros.bags import messages as bagconv
from depthvlm_ros.bags import OUTPUT_TOPICS, ReplayOptions, make_typestore, open_writer, replay_bag
from depthvlm_ros.core.camera import Intrinsics
from depthvlm_ros.core.config import DepthVLMConfig
from depthvlm_ros.core.frames import (FrameDropped, frame_intrinsics, nearest_stamp,
                                      output_camera_info)
from depthvlm_ros.core.pipeline import DepthVLMPipeline

rclpy = pytest.importorskip("rclpy")
pytest.importorskip("rosbags")

W, H = 64, 48
INTR = Intrinsics(1000.0, 1000.0, 31.5, 23.5, W, H)
IMG, INFO = "/cam/image_raw", "/cam/camera_info"
START_NS = 1_700_000_000 * 1_000_000_000


def test_frame_intrinsics_rules():
    assert frame_intrinsics(W, H, None, 60.0) == Intrinsics.from_fov(W, H, 60.0)
    with pytest.raises(FrameDropped) as e:
        frame_intrinsics(W, H, None, 0.0)
    assert e.value.reason == "no_camera_info"

    class Info:
        width, height = 2 * W, 2 * H
        k = [2000.0, 0, 63.5, 0, 2000.0, 47.5, 0, 0, 1]

    assert frame_intrinsics(W, H, Info) == INTR  # binned stream: rescaled
    Info.width = 3 * W
    with pytest.raises(FrameDropped) as e:
        frame_intrinsics(W, H, Info)
    assert e.value.reason == "camera_info_size"
    Info.width, Info.k = 2 * W, [0.0] * 9
    with pytest.raises(FrameDropped) as e:
        frame_intrinsics(W, H, Info)
    assert e.value.reason == "bad_camera_info"


def test_nearest_stamp_rule():
    assert nearest_stamp([10, 20, 30], 20, 0) == 20
    assert nearest_stamp([10, 20, 30], 24, 5) == 20
    assert nearest_stamp([10, 20, 30], 25, 5) == 20  # a tie goes to the earlier stamp
    assert nearest_stamp([10, 20, 30], 26, 3) is None
    assert nearest_stamp([], 26, 3) is None


def test_output_camera_info_scales_roi_and_fills_zero_p():
    class Roi:
        x_offset, y_offset, width, height, do_rectify = 8, 4, 32, 24, True

    class Info:
        width, height = 2 * W, 2 * H
        k = [2000.0, 0, 63.5, 0, 2000.0, 47.5, 0, 0, 1]
        p = [0.0] * 12
        d, r = [0.1, 0.0, 0.0, 0.0, 0.0], np.eye(3).reshape(-1)
        distortion_model, binning_x, binning_y, roi = "plumb_bob", 0, 0, Roi

    f = output_camera_info(INTR, Info)
    assert (f.width, f.height) == (W, H) and f.roi == (4, 2, 16, 12, True)
    assert f.p[0] == 1000.0 and f.p[2] == 31.5 and f.p[10] == 1.0
    assert list(f.d) == [0.1, 0.0, 0.0, 0.0, 0.0]


def _write_bag(path):
    """Six frames: 0 ok, 1 camera_info at twice the resolution, 2 another aspect ratio,
    3 unsupported encoding, 4 corrupt pixel data, 5 ROI + all-zero P."""
    ts = make_typestore()
    rng = np.random.default_rng(5)
    with open_writer(path, "mcap") as w:
        ci = w.add_connection(INFO, "sensor_msgs/msg/CameraInfo", typestore=ts)
        im = w.add_connection(IMG, "sensor_msgs/msg/Image", typestore=ts)
        for i in range(6):
            stamp = START_NS + i * 100_000_000
            hdr = bagconv.make_header(ts, stamp, "cam_optical")
            intr = INTR.scaled(2 * W, 2 * H) if i == 1 else INTR
            if i == 2:
                intr = Intrinsics(1000.0, 1000.0, 47.5, 23.5, 96, 48)
            info = bagconv.make_camera_info(ts, hdr, intr)
            if i == 5:
                info.p = np.zeros(12)
                info.roi.x_offset, info.roi.y_offset, info.roi.width, info.roi.height = 8, 4, 32, 24
            w.write(ci, stamp, ts.serialize_cdr(info, "sensor_msgs/msg/CameraInfo"))
            img = bagconv.make_image(ts, hdr, rng.integers(0, 256, (H, W, 3), dtype=np.uint8),
                                     "rgb8")
            if i == 3:
                img.encoding = "yuv422"
            if i == 4:
                img.data = img.data[: len(img.data) // 2]
            w.write(im, stamp + 1, ts.serialize_cdr(img, "sensor_msgs/msg/Image"))


@pytest.fixture
def node_factory(tiny_model_dir):
    from inprocess_node import inprocess_nodes

    with inprocess_nodes(tiny_model_dir, "frame_rules") as make:
        yield make


def test_one_bag_through_node_and_replay_gives_the_same_outputs(tmp_path, tiny_model_dir,
                                                                 node_factory):
    from rclpy.lifecycle import TransitionCallbackReturn
    from rclpy.serialization import deserialize_message
    from sensor_msgs.msg import CameraInfo, Image

    from depthvlm_ros.bags import open_reader
    from depthvlm_ros.ros import convert

    _write_bag(tmp_path / "in")
    pipe = DepthVLMPipeline.from_config(DepthVLMConfig(model_path=str(tiny_model_dir),
                                                       device="cpu", head_backend="torch"))
    summary = replay_bag(tmp_path / "in", tmp_path / "out", pipe,
                         ReplayOptions(image_topic=IMG, camera_info_topic=INFO, points=True,
                                       progress=False))

    # The node, fed the same messages in bag order; each frame runs to completion before the
    # next arrives (as at a frame rate the model keeps up with), so nothing is superseded.
    node = node_factory()
    assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
    published: dict[str, list] = {"depth": [], "info": [], "points": []}
    cam = node._cameras[""]  # the one unnamed camera
    for key in published:
        cam.pubs[key].publish = published[key].append
    cam.pubs["points"].get_subscription_count = lambda: 1
    node._active = True
    node._worker.submit_frame = lambda job: node._run_frame(job) and None
    reader = open_reader(tmp_path / "in")
    try:
        for conn, _, raw in reader.messages():
            if conn.topic == INFO:
                node._on_camera_info(deserialize_message(bytes(raw), CameraInfo), cam)
            else:
                node._on_image(deserialize_message(bytes(raw), Image), cam)
    finally:
        reader.close()
        node._active = False

    # Drop counters under the same names.
    drops = {k: v for k, v in cam.stats.snapshot()["drops"].items() if v}
    assert drops == summary.drops == {"camera_info_size": 1, "bad_encoding": 1, "bad_image": 1}
    assert summary.frames_processed == len(published["depth"]) == 3

    ts = make_typestore()
    out: dict[str, list] = {k: [] for k in ("depth", "camera_info", "points")}
    reader = open_reader(tmp_path / "out")
    try:
        for conn, _, raw in reader.messages():
            for key in out:
                if conn.topic == "/" + OUTPUT_TOPICS[key]:
                    out[key].append(ts.deserialize_cdr(raw, conn.msgtype))
    finally:
        reader.close()
    assert len(out["depth"]) == len(out["camera_info"]) == len(out["points"]) == 3
    for live, bag in zip(published["depth"], out["depth"]):
        assert (live.header.stamp.sec, live.header.stamp.nanosec) == \
            (bag.header.stamp.sec, bag.header.stamp.nanosec)
        np.testing.assert_array_equal(convert.msg_to_depth(live), bagconv.image_depth_m(bag))
    for live, bag in zip(published["info"], out["camera_info"]):
        assert (live.width, live.height) == (bag.width, bag.height)
        np.testing.assert_allclose(live.k, bag.k, rtol=0, atol=1e-9)
        np.testing.assert_allclose(live.p, bag.p, rtol=0, atol=1e-9)
        assert (live.roi.x_offset, live.roi.y_offset, live.roi.width, live.roi.height) == \
            (bag.roi.x_offset, bag.roi.y_offset, bag.roi.width, bag.roi.height)
    # Frame 1's camera_info was at twice the resolution: both publish it scaled to the image.
    assert published["info"][1].k[0] == pytest.approx(1000.0)
    # Frame 5: ROI scaled (here 1:1) and the all-zero P filled from K, on both sides.
    assert published["info"][2].p[0] == pytest.approx(1000.0)
    for live, bag in zip(published["points"], out["points"]):
        assert (live.point_step, live.row_step, live.height, live.width) == \
            (bag.point_step, bag.row_step, bag.height, bag.width)
        assert [(f.name, f.offset) for f in live.fields] == [(f.name, f.offset) for f in bag.fields]
        assert bytes(live.data) == bytes(bag.data)
