"""``batch_frames``: three same-size cameras through one ``depthvlm_node`` in shared model passes.

Frames that arrive together share a pass; every camera's published depth must still be that
camera's own (equal to the model run on its frame alone), and questions about each camera are
answered from that camera's frame.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
from ros_support import ACCOUNTING, TEST_PARAMS, live_node, make_scene, settled, stamp_key

from geometry_msgs.msg import Point

from depthvlm_ros.core.config import DepthVLMConfig
from depthvlm_ros.core.spatial import sample_depth
from depthvlm_ros.msg import SpatialAnswer, SpatialQuery
from depthvlm_ros.ros import convert

CAMERAS = ("front", "left", "right")
ROUNDS = 6
WIDTH, HEIGHT = 64, 48


@pytest.fixture(scope="module")
def scenes():
    return {name: make_scene(WIDTH, HEIGHT, seed=10 + i) for i, name in enumerate(CAMERAS)}


@pytest.fixture(scope="module")
def live(tmp_path_factory, scenes):
    log = tmp_path_factory.mktemp("node") / "depthvlm_node.log"
    keep = {"depth": lambda m: (stamp_key(m.header), convert.msg_to_depth(m))}
    params = {**ACCOUNTING, "cameras": ",".join(CAMERAS), "batch_frames": 3,
              "publish_points": False}
    with live_node(log, "batch_frames_live", params, record=("answer", "diag"),
                   connect=False) as (client, proc, log):
        for name in CAMERAS:
            client.add_camera(name, record=("depth",), keep=keep)
        client.wait(lambda: all(client.publishers[f"{n}/{t}"].get_subscription_count() > 0
                                for n in CAMERAS for t in ("image", "camera_info")) and
                    client.pub_query.get_subscription_count() > 0 and
                    all(client.node.count_publishers(f"{n}/depth/image") > 0 for n in CAMERAS),
                    "the cameras' topics to be discovered")
        for k in range(ROUNDS):
            # All cameras at once, as synchronised cameras are: their frames wait together.
            for name in CAMERAS:
                rgb, intr = scenes[name]
                client.send_frame(rgb, intr, 200 + k, 0, frame_id=f"{name}_optical",
                                  camera=name)
            time.sleep(0.25)
        for name in CAMERAS:
            client.wait_diag(settled(ROUNDS), proc=proc, camera=name)
        yield client, proc, log


@pytest.fixture(scope="module")
def alone(scenes):
    """Each scene's depth from the same model run in this process, one frame at a time."""
    from depthvlm_ros.core.pipeline import DepthVLMPipeline

    pipe = DepthVLMPipeline.from_config(DepthVLMConfig.from_mapping(TEST_PARAMS))
    return {name: pipe.process_frame(*scenes[name], keep_context=False).depth
            for name in CAMERAS}


def test_cameras_share_passes_and_keep_their_own_depth(live, alone):
    client, _, _ = live
    last = client.messages("diag")[-1]
    batched = 0
    for name in CAMERAS:
        depth = client.messages(f"{name}/depth")
        assert depth, f"{name}: no depth"
        for _, d in depth:
            np.testing.assert_allclose(d, alone[name], rtol=1e-4, atol=1e-5,
                                       err_msg=f"{name}: depth is not its own frame's")
        values = client.diag_values(last, name)
        assert int(values["frames_processed"]) == len(depth)
        batched += int(values["frames_batched"])
    assert batched >= 2, "frames that arrived together never shared a model pass"


def test_questions_about_batched_frames_use_their_own_camera(live):
    client, proc, _ = live
    for name in CAMERAS:
        q = SpatialQuery()
        q.id, q.text, q.camera = f"ask-{name}", "How far is the point at this pixel?", name
        q.pixels = [Point(x=10.0, y=12.0)]
        client.pub_query.publish(q)
    for name in CAMERAS:
        (ans,) = client.wait_for("answer", lambda m, name=name: m.id == f"ask-{name}", proc=proc)
        assert ans.status == SpatialAnswer.STATUS_OK, ans.status_reason
        assert ans.camera == name
        # The measured depth is the window median of that camera's published depth there.
        frames = dict(client.messages(f"{name}/depth"))
        assert ans.depths[0] == pytest.approx(
            sample_depth(frames[stamp_key(ans.header)], 10.0, 12.0), rel=1e-5)
