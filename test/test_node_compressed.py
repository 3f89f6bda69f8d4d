"""depthvlm_node on a compressed camera: image_transport:=compressed, JPEG / PNG decoded on the
worker thread, bad streams counted as drops; 16UC1 depth output and cloud decimation / range;
depthvlm play republishing a robot bag's CompressedImage topics as recorded.

The in-process tests drive the node's own callbacks (no DDS); the live test runs the installed
node over DDS with the harness (``ros_support``), fed a compressed stream by the harness client.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from inprocess_node import inprocess_nodes
from ros_support import WAIT, live_node, stamp

# After ros_support, which skips this module where ROS or the messages are missing.
from sensor_msgs.msg import CameraInfo, CompressedImage  # noqa: E402
from std_msgs.msg import Header  # noqa: E402

from depthvlm_ros.core import codecs  # noqa: E402
from depthvlm_ros.core.camera import Intrinsics  # noqa: E402
from depthvlm_ros.ros import convert, qos  # noqa: E402
from depthvlm_ros.ros.harness import camera_info as info_msg  # noqa: E402

W, H = 64, 48
INTR = Intrinsics(1000.0, 1000.0, 31.5, 23.5, W, H)  # near the canonical focal: fast frames
RGB = np.random.default_rng(7).integers(0, 256, (H, W, 3), dtype=np.uint8)


def _compressed(sec: int, codec: str = "jpeg", fmt: str | None = None,
                data: bytes | None = None) -> CompressedImage:
    f, d = codecs.encode_color(RGB, codec)
    return convert.compressed_image_msg(fmt if fmt is not None else f,
                                        data if data is not None else d,
                                        Header(stamp=stamp(sec), frame_id="cam_optical"))


def _bad_streams() -> dict[str, tuple[CompressedImage, str]]:
    jpeg = codecs.encode_color(RGB, "jpeg")[1]
    png = codecs.encode_color(RGB, "png")[1]
    return {
        "truncated jpeg": (_compressed(2, data=jpeg[: len(jpeg) // 2]), "bad_image"),
        "corrupt png": (_compressed(3, "png", data=png[:40] + bytes(100) + png[140:]),
                        "bad_image"),
        "unknown format": (_compressed(4, fmt="rgb8; webp compressed bgr8"), "bad_encoding"),
        "depth format": (_compressed(5, fmt="16UC1; compressedDepth png"), "bad_encoding"),
    }


# ------------------------------------------------------------------------------------------
# in process: the node's callbacks, its worker's frame function


@pytest.fixture
def make_node(tiny_model_dir):
    with inprocess_nodes(tiny_model_dir, "node_compressed_inprocess") as make:
        yield make


def test_compressed_subscription_follows_the_remapped_image_topic(make_node):
    from depthvlm_ros.ros.node import _Camera

    unnamed, front = _Camera("", None), _Camera("front", None)
    node = make_node(remaps=["image:=/camera/camera/color/image_raw"])
    assert node._image_input("compressed", unnamed) == (
        CompressedImage, "/camera/camera/color/image_raw/compressed")
    assert node._image_input("raw", unnamed)[1] == "image"
    assert make_node()._image_input("compressed", unnamed)[1] == "/image/compressed"
    # A named camera's base topic is remapped like any other.
    node = make_node(remaps=["front/image:=/cams/front/color"])
    assert node._image_input("compressed", front)[1] == "/cams/front/color/compressed"
    assert node._image_input("raw", front)[1] == "front/image"


def test_executor_only_stores_and_the_worker_decodes_and_drops(make_node):
    from rclpy.lifecycle import TransitionCallbackReturn

    node = make_node(image_transport="compressed", depth_encoding="16UC1", points_stride=2,
                     points_max_range=5.0, points_rgb=False)
    assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
    published: dict[str, list] = {"depth": [], "points": []}
    cam = node._cameras[""]  # the one unnamed camera
    for key in published:
        cam.pubs[key].publish = published[key].append
    cam.pubs["points"].get_subscription_count = lambda: 1
    node._active = True
    jobs = []
    node._worker.submit_frame = lambda job: jobs.append(job)  # what the executor hands over
    bad = _bad_streams()
    stream = [_compressed(1)] + [m for m, _ in bad.values()] + [_compressed(6, "png")]
    try:
        for msg in stream:
            info = info_msg(INTR, msg.header.stamp, "cam_optical")
            node._on_camera_info(info, cam)
            node._on_image(msg, cam)
        # The executor thread decoded nothing: every message is a job, no drop counted yet.
        assert [j.image for j in jobs] == stream
        assert not any(cam.stats.snapshot()["drops"].values())
        for job in jobs:
            node._run_frame(job)
    finally:
        node._active = False
    drops = {k: v for k, v in cam.stats.snapshot()["drops"].items() if v}
    assert drops == {"bad_image": 2, "bad_encoding": 2}
    assert [m.header.stamp.sec for m in published["depth"]] == [1, 6]
    depth = published["depth"][0]
    assert (depth.encoding, depth.step, depth.width) == ("16UC1", 2 * W, W)
    mm = np.frombuffer(bytes(depth.data), "<u2").reshape(H, W)
    assert mm.max() > 0  # millimetres, 0 = invalid
    cloud = published["points"][0]
    assert (cloud.height, cloud.width) == (H // 2, W // 2)
    assert [f.name for f in cloud.fields] == ["x", "y", "z"]
    xyz = convert.pointcloud2_to_array(cloud).points
    dist = np.linalg.norm(xyz, axis=-1)
    assert np.all(np.isnan(dist) | (dist <= 5.0 + 1e-5))


# ------------------------------------------------------------------------------------------
# live: the installed node over DDS


def test_live_node_takes_a_compressed_stream(tmp_path):
    params = {"image_transport": "compressed", "image_qos": "reliable",
              "diagnostics_period_s": 0.1, "warn_throttle_s": 0.0}
    with live_node(tmp_path / "node.log", "node_compressed_live", params,
                   connect=False) as (client, proc, log):
        pub = client.node.create_publisher(CompressedImage, "image/compressed",
                                           qos.RELIABLE_IMAGE)
        client.wait(lambda: pub.get_subscription_count() > 0 and
                    client.pub_info.get_subscription_count() > 0 and
                    client.node.count_publishers("depth/image") > 0,
                    "the node's compressed subscription", WAIT)
        bad = _bad_streams()
        stream = [_compressed(1)] + [m for m, _ in bad.values()] + [_compressed(6, "png")]
        for i, msg in enumerate(stream, 1):
            client.pub_info.publish(info_msg(INTR, msg.header.stamp, "cam_optical"))
            pub.publish(msg)
            # One at a time: each frame is done before the next, so nothing is superseded.
            client.wait_diag(lambda v, n=i: int(v["frames_received"]) == n and
                             int(v["frames_processed"]) + int(v["frames_dropped"]) == n,
                             proc=proc)
        depth = client.wait_for("depth", count=2, proc=proc)
        values = client.diag_values()
    assert [m.header.stamp.sec for m in depth] == [1, 6]
    assert depth[0].encoding == "32FC1" and (depth[0].width, depth[0].height) == (W, H)
    assert values["dropped_bad_image"] == "2" and values["dropped_bad_encoding"] == "2"
    assert "compressed images on /image/compressed" in log.read_text()


# ------------------------------------------------------------------------------------------
# depthvlm play


def test_play_republishes_compressed_topics_as_recorded(tmp_path):
    from depthvlm_ros.bags import SampleFrame
    from depthvlm_ros.bags.sample import write_robot_bag
    from depthvlm_ros.ros import harness

    depth = np.full((H, W), 2.0, np.float32)
    frames = [SampleFrame(RGB, INTR, depth, 1_700_000_000 * 10**9 + i * 50_000_000)
              for i in range(3)]
    topics = write_robot_bag(tmp_path / "bag", frames, "realsense", color="jpeg", depth="rvl")
    names = [topics["image"], topics["gt_depth"], topics["camera_info"]]
    domain = harness.domain_id("play_compressed")
    with harness.Client(domain, name="play_compressed_listener", record=(),
                        inputs=()) as client:
        client.record("image", topic=names[0], msg_type=CompressedImage)
        client.record("depth", topic=names[1], msg_type=CompressedImage)
        client.record("info", topic=names[2], msg_type=CameraInfo)
        proc = subprocess.Popen(
            [sys.executable, "-m", "depthvlm_ros.cli", "play", str(tmp_path / "bag"), "--rate",
             "4", "--wait-for-subscribers", "20", "--topics", *names],
            env=harness.ros_env(domain), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True)
        try:
            out = proc.communicate(timeout=60)[0]
        finally:
            if proc.poll() is None:
                proc.kill()
        client.wait(lambda: all(len(client.messages(k)) >= 3 for k in ("image", "depth",
                                                                       "info")),
                    "the played messages", 2.0)
        images, depths = client.messages("image"), client.messages("depth")
    assert proc.returncode == 0 and "published 9 messages" in out and "skipping" not in out, out
    assert images[0].format == "rgb8; jpeg compressed bgr8"
    assert bytes(images[0].data) == codecs.encode_color(RGB, "jpeg")[1]
    np.testing.assert_array_equal(convert.msg_to_depth(depths[0]), depth)
