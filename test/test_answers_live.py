"""Measured answers over DDS: the node's answers agree with the depth it publishes.

A real frame (the Kinect Azure RGB frame, downscaled) goes to the node in its own process;
questions with pixels, written pixels, regions and thresholds come back as answers whose every
number is one of the message's measurements (at the printed precision), whose nearer/farther
verdict agrees with the published depth image at those pixels, and whose region nearest depth
is the minimum of the published depth inside the region. Bad pixels, regions and questions
each get one answer with a reason.
"""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
from kinect_frame import KINECT_K, downscale
from ros_support import WAIT, live_node

# After ros_support, which skips this module where ROS or the messages are missing.
from geometry_msgs.msg import Point
from sensor_msgs.msg import RegionOfInterest
from std_msgs.msg import String

from depthvlm_ros.core.camera import Intrinsics
from depthvlm_ros.core.spatial import sample_depth
from depthvlm_ros.msg import SpatialAnswer, SpatialQuery
from depthvlm_ros.ros import convert

W, H = 480, 270
FRAME_ID = "kinect_rgb_optical_frame"
SEC = 42
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


@pytest.fixture(scope="module")
def answered(tmp_path_factory, kinect_frame):
    """(published depth, {id: answer}) for one frame and the module's questions."""
    rgb = downscale(kinect_frame, W, H)
    intr = Intrinsics(**KINECT_K).scaled(W, H)
    log = tmp_path_factory.mktemp("answers") / "depthvlm_node.log"
    with live_node(log, "answers_live", {"image_qos": "reliable", "query_queue_size": 32},
                   record=("depth", "answer"), frame_id=FRAME_ID) as (client, proc, _):
        client.send_frame(rgb, intr, SEC)
        (depth_msg,) = client.wait_for("depth", count=1, timeout=WAIT, proc=proc)
        for qid, text, pixels, regions in QUESTIONS:
            q = SpatialQuery(id=qid, text=text,
                             pixels=[Point(x=float(u), y=float(v)) for u, v in pixels],
                             regions=[RegionOfInterest(x_offset=x, y_offset=y, width=w, height=h)
                                      for x, y, w, h in regions])
            q.header.stamp.sec = SEC
            client.pub_query.publish(q)
        client.pub_text.publish(String(data="Which is nearer, (u=60, v=200) or (u=400, v=60)?"))
        got = client.wait_for("answer", count=len(QUESTIONS) + 1, timeout=WAIT, proc=proc)
    return convert.msg_to_depth(depth_msg), intr, {a.id: a for a in got}


QUESTIONS = [
    # (id, text, pixels, regions)
    ("one_pixel", "How far is this point?", [(240, 135)], []),
    ("written", "How far is the point at pixel (u=100, v=200) from the camera?", [], []),
    ("three", "How far are these points?", [(20, 20), (240, 135), (470, 260)], []),
    ("region", "How far is the nearest thing in this region?", [], [(100, 50, 120, 80)]),
    ("threshold", "Is anything closer than 1.5 m in this region?", [], [(200, 100, 200, 150)]),
    ("size", "How big is this region?", [], [(300, 60, 100, 100)]),
    ("outside_written", "How far is the point at pixel (u=900, v=10)?", [], []),
    ("outside_region", "How far is this region?", [], [(400, 200, 200, 100)]),
    ("empty_region", "How far is this region?", [], [(10, 10, 0, 5)]),
    ("nan_pixel", "How far is this point?", [(float("nan"), 3.0)], []),
    ("object", "How far away is the chair?", [], []),
]


def _measured_numbers(a: SpatialAnswer) -> set[str]:
    """Every number the message carries, as the answer text may print it."""
    values = [p.x for p in a.pixels] + [p.y for p in a.pixels] + list(a.depths)
    values += [c for p in a.points for c in (p.x, p.y, p.z)]
    for r in a.regions:
        values += [r.roi.x_offset, r.roi.y_offset, r.roi.x_offset + r.roi.width - 1,
                   r.roi.y_offset + r.roi.height - 1, r.nearest_depth, r.median_depth,
                   r.mean_depth, r.width_m, r.height_m, r.nearest_pixel.x, r.nearest_pixel.y]
        values += [r.nearest_point.x, r.nearest_point.y, r.nearest_point.z,
                   r.centroid.x, r.centroid.y, r.centroid.z]
    # Two pixels: the answer also says by how much one is nearer and how far apart they are,
    # both computed from the message's own depths and points.
    if len(a.depths) == 2:
        (p0, p1), (d0, d1) = a.points, a.depths
        values += [abs(d0 - d1), math.dist((p0.x, p0.y, p0.z), (p1.x, p1.y, p1.z))]
    out = set()
    for v in values:
        if math.isfinite(v):
            out |= {f"{v:.2f}", f"{v:g}", str(int(v)) if float(v).is_integer() else f"{v:g}"}
    return out | {"-0.00", "0.00"}


def _numbers_in_text(a: SpatialAnswer, extra: tuple[str, ...] = ()) -> None:
    allowed = _measured_numbers(a) | set(extra)
    for n in _NUMBER.findall(a.answer):
        assert n in allowed or n.lstrip("-") in allowed, (n, a.answer)


def test_pixel_and_region_answers_are_the_published_depth(answered):
    depth, intr, ans = answered
    measured = ("one_pixel", "written", "three", "region", "threshold", "size")
    for qid in measured:
        a = ans[qid]
        assert a.status == SpatialAnswer.STATUS_OK, (qid, a.status_reason)
        assert a.source == SpatialAnswer.SOURCE_MEASURED, qid
        assert a.header.stamp.sec == SEC and a.header.frame_id == FRAME_ID
        # The model's own text is kept beside; it may be empty (a model may reply with its
        # end token at once), so the field is checked to be wired below, not per question.
        assert isinstance(a.model_answer, str)
        _numbers_in_text(a, ("1.5",))
        # Per-pixel depths are the published map's, read with the node's own sampling rule.
        for p, d in zip(a.pixels, a.depths):
            assert d == pytest.approx(sample_depth(depth, p.x, p.y), rel=1e-6)
    assert any(ans[qid].model_answer for qid in measured)
    assert [(p.x, p.y) for p in ans["written"].pixels] == [(100.0, 200.0)]
    assert len(ans["three"].depths) == 3 and ans["three"].answer.count(" m from the camera") == 3
    # A region's nearest depth is the minimum of the published depth inside it.
    for qid in ("region", "threshold", "size"):
        (r,) = ans[qid].regions
        inside = depth[r.roi.y_offset:r.roi.y_offset + r.roi.height,
                       r.roi.x_offset:r.roi.x_offset + r.roi.width]
        assert r.nearest_depth == pytest.approx(float(np.nanmin(inside)), rel=1e-6)
        u, v = int(r.nearest_pixel.x), int(r.nearest_pixel.y)
        assert depth[v, u] == pytest.approx(r.nearest_depth, rel=1e-6)
        assert r.median_depth == pytest.approx(float(np.nanmedian(inside)), rel=1e-5)
    r = ans["threshold"].regions[0]
    assert ans["threshold"].answer.startswith("Yes" if r.nearest_depth < 1.5 else "No")


def test_nearer_verdict_agrees_with_the_published_depth(answered):
    depth, _, ans = answered
    a = ans[""]  # query_text answers carry no id
    assert a.status == SpatialAnswer.STATUS_OK and a.source == SpatialAnswer.SOURCE_MEASURED
    (p0, p1) = a.pixels
    d0, d1 = sample_depth(depth, p0.x, p0.y), sample_depth(depth, p1.x, p1.y)
    nearer = p0 if d0 < d1 else p1
    assert a.answer.startswith(f"The point at pixel ({nearer.x:g}, {nearer.y:g}) is nearer"), \
        a.answer
    _numbers_in_text(a)


def test_bad_pixels_regions_and_objects_get_one_answer_each(answered):
    _, _, ans = answered
    assert len(ans) == len(QUESTIONS) + 1  # every question exactly one answer
    for qid, needle in (("outside_written", "(u=900, v=10), outside"), ("outside_region", "region"),
                        ("empty_region", "empty"), ("nan_pixel", "finite")):
        a = ans[qid]
        assert a.status == SpatialAnswer.STATUS_ERROR, (qid, a.answer)
        assert needle in a.status_reason, (qid, a.status_reason)
        assert a.source == SpatialAnswer.SOURCE_NONE and not a.answer
    # A named object: measured inside what the model locates, or, when it locates nothing,
    # an answer that says so and states no number. Either way one measured answer.
    a = ans["object"]
    assert a.status == SpatialAnswer.STATUS_OK and a.source == SpatialAnswer.SOURCE_MEASURED
    if a.regions or a.pixels:
        assert all(r.origin == r.ORIGIN_LOCATED for r in a.regions), a.regions
        assert _NUMBER.findall(a.answer), a.answer
    else:
        assert "could not locate" in a.answer and not _NUMBER.findall(a.answer)
