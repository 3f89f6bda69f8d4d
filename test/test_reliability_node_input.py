"""Bad input and overload over live DDS: every bad image is dropped, counted and warned about
(throttled), every bad question gets exactly one error answer, and a query flood far above the
model's rate is turned away (status busy) with a bounded queue and bounded memory, while good
frames keep coming out.

One node process (this checkout, embedded model, 64x48 frames) serves the whole module; the tests
run in order and each one counts what it sent and checks the node's own counters against it.
"""

from __future__ import annotations

import math
import re
import threading
import time

import numpy as np
import pytest
from ros_support import (camera_info, image, make_scene, reliability_node, rss_kb, settled,
                         stamp, stamp_key)

# After ros_support, which skips this module where ROS or the messages are missing.
from geometry_msgs.msg import Point
from std_msgs.msg import String

from depthvlm_ros.core.camera import Intrinsics
from depthvlm_ros.msg import SpatialAnswer, SpatialQuery
from depthvlm_ros.ros import convert

W, H = 64, 48
THROTTLE_S = 4.0
QUEUE = 8


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    with reliability_node(tmp_path_factory, "reliability_node_input", {
            "query_queue_size": QUEUE, "warn_throttle_s": THROTTLE_S,
            "publish_points": False}) as live_node:
        yield live_node


@pytest.fixture(scope="module")
def scene():
    return make_scene(W, H, seed=3)


# ------------------------------------------------------------------------------------------
# bad images


def _img(rgb, st, **fields):
    msg = image(rgb, st)
    for k, v in fields.items():
        setattr(msg, k, v)
    return msg


def _info(intr, st, **fields):
    msg = camera_info(intr, st)
    for k, v in fields.items():
        setattr(msg, k, v)
    return msg


def _bad_kinds(rgb, intr):
    """(name, drop reason, st -> (image or None, camera_info or None)) for every bad input."""
    row = W * 3
    raw = bytes(convert.rgb_to_msg(rgb).data)
    k_nan = [float("nan"), 0.0, intr.cx, 0.0, intr.fy, intr.cy, 0.0, 0.0, 1.0]
    k_inf = [intr.fx, 0.0, intr.cx, 0.0, intr.fy, float("inf"), 0.0, 0.0, 1.0]
    k_neg = [-intr.fx, 0.0, intr.cx, 0.0, intr.fy, intr.cy, 0.0, 0.0, 1.0]
    k_row = [intr.fx, 0.0, intr.cx, 0.0, intr.fy, intr.cy, 0.0, 0.0, 2.0]
    return [
        # Encodings that are not colour (depth, YUV, Bayer) or not an encoding at all.
        ("enc_yuv422", "bad_encoding", lambda s: (_img(rgb, s, encoding="yuv422"), _info(intr, s))),
        ("enc_16UC1", "bad_encoding", lambda s: (_img(rgb, s, encoding="16UC1"), _info(intr, s))),
        ("enc_32FC1", "bad_encoding", lambda s: (_img(rgb, s, encoding="32FC1"), _info(intr, s))),
        ("enc_bayer", "bad_encoding",
         lambda s: (_img(rgb, s, encoding="bayer_rggb8"), _info(intr, s))),
        ("enc_empty", "bad_encoding", lambda s: (_img(rgb, s, encoding=""), _info(intr, s))),
        # Geometry that does not match the bytes.
        ("step_too_small", "bad_image", lambda s: (_img(rgb, s, step=row - 1), _info(intr, s))),
        ("truncated", "bad_image", lambda s: (_img(rgb, s, data=raw[: len(raw) // 2]),
                                               _info(intr, s))),
        ("empty", "bad_image", lambda s: (_img(rgb, s, width=0, height=0, step=0, data=b""),
                                           _info(intr, s))),
        # A corrupt header claiming a huge frame must not make the node allocate it.
        ("claims_16k", "bad_image", lambda s: (_img(rgb, s, width=16384, height=16384,
                                                    step=16384 * 3), _info(intr, s))),
        ("over_limit", "bad_image", lambda s: (_img(rgb, s, width=20000, height=1, step=60000),
                                                _info(intr, s))),
        ("huge_step", "bad_image", lambda s: (_img(rgb, s, step=10 ** 8), _info(intr, s))),
        # Calibration that cannot be used.
        ("k_zero", "bad_camera_info", lambda s: (_img(rgb, s), _info(intr, s, k=[0.0] * 9))),
        ("k_nan", "bad_camera_info", lambda s: (_img(rgb, s), _info(intr, s, k=k_nan))),
        ("k_inf", "bad_camera_info", lambda s: (_img(rgb, s), _info(intr, s, k=k_inf))),
        ("k_negative", "bad_camera_info", lambda s: (_img(rgb, s), _info(intr, s, k=k_neg))),
        ("k_bottom_row", "bad_camera_info", lambda s: (_img(rgb, s), _info(intr, s, k=k_row))),
        ("info_zero_size", "bad_camera_info",
         lambda s: (_img(rgb, s), _info(intr, s, width=0, height=0))),
        # A camera_info of another camera (another aspect ratio) is not silently rescaled.
        ("info_square", "camera_info_size",
         lambda s: (_img(rgb, s), camera_info(Intrinsics(90.0, 90.0, 49.5, 49.5, 100, 100), s))),
        ("info_portrait", "camera_info_size",
         lambda s: (_img(rgb, s), camera_info(Intrinsics(60.0, 60.0, 23.5, 31.5, H, W), s))),
        # No camera_info with this stamp ever: given up once a newer image is paired.
        ("no_camera_info", "no_camera_info", lambda s: (_img(rgb, s), None)),
    ]


def test_bad_images_interleaved_are_counted_throttled_and_good_frames_flow(live, scene):
    client, proc, log = live
    rgb, intr = scene
    kinds = _bad_kinds(rgb, intr)
    rounds = 3
    expected: dict[str, int] = {}
    good: list[tuple[int, int]] = []
    bad: list[tuple[int, int]] = []
    received = 0
    sec = 10_000
    t_start = time.monotonic()
    for _ in range(rounds):
        for name, reason, build in kinds:
            sec += 1
            st = stamp(sec, 7)
            img, info = build(st)
            after = time.time()
            if info is not None:
                client.pub_info.publish(info)
            client.pub_image.publish(img)
            received += 1
            bad.append(stamp_key(img.header))
            expected[reason] = expected.get(reason, 0) + 1
            # Wait until the node has accounted for this image before the next one: otherwise
            # the latest-frame policy may legitimately supersede it and the counts blur.
            client.wait_diag(settled(received), after, proc=proc)

            sec += 1
            st = stamp(sec, 7)
            client.pub_info.publish(camera_info(intr, st))
            client.pub_image.publish(image(rgb, st))
            received += 1
            good.append((sec, 7))
            client.wait(lambda: (sec, 7) in [(d[0], d[1]) for d in client.messages("depth")],
                        f"depth for good frame after {name}", proc=proc)
    elapsed = time.monotonic() - t_start
    vals = client.wait_diag(settled(received), time.time(), proc=proc)

    # Counters: every bad image dropped for its own reason, nothing else dropped.
    n_bad = rounds * len(kinds)
    assert int(vals["frames_received"]) == received == 2 * n_bad
    assert int(vals["frames_processed"]) == len(good) == n_bad
    assert int(vals["frames_dropped"]) == n_bad
    got = {k[len("dropped_"):]: int(v) for k, v in vals.items() if k.startswith("dropped_")}
    assert got == expected, (got, expected)

    # Outputs: exactly the good frames, in order, at the input size.
    depth = client.messages("depth")
    assert [(d[0], d[1]) for d in depth] == good
    assert all((d[2], d[3]) == (W, H) for d in depth)
    assert not set(bad) & set(client.messages("info"))

    # Warnings: throttled per reason. N bad frames of a reason give at most one warning per
    # throttle period (plus the first), far fewer than N.
    text = log.read_text()
    warned = {r: len(re.findall(rf"dropped image \({r}\)", text)) for r in expected}
    limit = 1 + math.ceil(elapsed / THROTTLE_S)
    for reason, n in warned.items():
        assert 1 <= n <= limit, (reason, n, limit, elapsed)
    assert sum(warned.values()) * 3 <= n_bad, (warned, n_bad)
    assert "Traceback" not in text and proc.poll() is None
    print(f"\n{n_bad} bad images ({len(kinds)} kinds x {rounds}) interleaved with {len(good)} "
          f"good ones in {elapsed:.1f} s; drops {got}; warnings {warned} (limit {limit} each)")


# ------------------------------------------------------------------------------------------
# bad questions


def _query(qid, text, pixels=()):
    q = SpatialQuery()
    q.id, q.text = qid, text
    q.pixels = [Point(x=float(u), y=float(v)) for u, v in pixels]
    return q


def test_bad_questions_each_get_one_answer(live, scene):
    client, proc, _ = live
    rgb, intr = scene
    # A frame to ask about.
    st = stamp(20_000)
    client.pub_info.publish(camera_info(intr, st))
    client.pub_image.publish(image(rgb, st))
    client.wait(lambda: (20_000, 0) in [(d[0], d[1]) for d in client.messages("depth")],
                "depth for the question frame", proc=proc)
    before = len(client.messages("answer"))
    grid = [(u % W, (u // W) % H) for u in range(4096)]
    ok, err = SpatialAnswer.STATUS_OK, SpatialAnswer.STATUS_ERROR
    cases = [  # id, text, pixels, status, reason fragment, number of depths
        ("empty", "", (), err, "empty", 0),
        ("blank", " \t\n ", (), err, "empty", 0),
        ("at-limit", "x" * 512, (), ok, "", 0),
        ("over-limit", "x" * 513, (), err, "limit", 0),
        ("huge-text", "y" * 200_000, (), err, "limit", 0),
        ("nan-pixel", "How far?", [(1.0, float("nan"))], err, "non-finite", 0),
        ("inf-pixel", "How far?", [(float("inf"), 1.0)], err, "non-finite", 0),
        ("negative", "How far?", [(-5.0, -5.0), (-0.4, 0.0)], ok, "", 2),
        ("outside", "How far?", [(W, 0.0), (1e9, 1e9), (0.0, H + 0.6)], ok, "", 3),
        ("max-pixels", "How far?", grid, ok, "", 4096),
        ("too-many", "How far?", grid + [(0.0, 0.0)], err, "limit", 0),
        ("flood-pixels", "How far?", [(1.0, 1.0)] * 100_000, err, "limit", 0),
    ]
    for qid, text, pixels, *_ in cases:
        client.pub_query.publish(_query(qid, text, pixels))
    # Plain-text questions take the same checks.
    client.pub_text.publish(String(data=""))
    client.pub_text.publish(String(data="z" * 100_000))
    n = len(cases) + 2
    client.wait(lambda: len(client.messages("answer")) >= before + n, f"{n} answers",
                proc=proc)
    time.sleep(0.5)  # a second answer to anything would show up now
    answers = client.messages("answer")[before:]
    assert len(answers) == n
    by_id = {a.id: a for a in answers if a.id}
    assert sorted(by_id) == sorted(c[0] for c in cases)
    for qid, text, pixels, status, fragment, n_depths in cases:
        a = by_id[qid]
        assert a.status == status, (qid, a.status, a.status_reason)
        assert fragment in a.status_reason, (qid, a.status_reason)
        assert len(a.depths) == len(a.points) == n_depths, qid
        if status == err:
            assert a.answer == "" and list(a.depths) == []
    assert math.isnan(by_id["negative"].depths[0]) and math.isfinite(by_id["negative"].depths[1])
    assert all(math.isnan(d) for d in by_id["outside"].depths)
    assert np.isfinite(by_id["max-pixels"].depths).sum() == 4096  # every pixel is in the image
    plain = [a for a in answers if not a.id]
    assert len(plain) == 2 and all(a.status == err for a in plain)
    assert sorted(a.status_reason.split(",")[0] for a in plain) == sorted(
        ["question is empty", "question has 100000 characters"])
    assert proc.poll() is None


# ------------------------------------------------------------------------------------------
# flood


def test_query_flood_is_bounded_in_queue_and_memory(live, scene):
    client, proc, log = live
    rgb, intr = scene
    n_flood, window = 5000, 600  # window < the 1000-deep reliable query/answer histories
    # Warm up the paths a flood takes (busy answers and model answers) before the baseline.
    for i in range(40):
        client.pub_query.publish(_query(f"warm-{i}", "Is the path clear?", [(3.0, 4.0)]))
    client.wait(lambda: sum(a.id.startswith("warm-") for a in client.messages("answer")) == 40,
                "warm-up answers", proc=proc)
    base = client.messages("answer")
    n_base = len(base)
    rss0 = rss_kb(proc.pid)
    samples = [rss0]
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            try:
                samples.append(rss_kb(proc.pid))
            except (OSError, AssertionError):
                return
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    t0 = time.monotonic()
    after = time.time()
    try:
        for i in range(n_flood):
            # Pace only to stay inside the DDS history depth; the node still sees a backlog of
            # hundreds of questions, far above the model's rate (tens per second).
            while i - (len(client.messages("answer")) - n_base) > window:
                assert proc.poll() is None, "node died during the flood"
                assert time.monotonic() - t0 < 120, "flood stalled"
                time.sleep(0.002)
            client.pub_query.publish(_query(f"flood-{i}", "Is the path clear?", [(3.0, 4.0)]))
        client.wait(lambda: len(client.messages("answer")) >= n_base + n_flood,
                    f"{n_flood} flood answers", timeout=120, proc=proc)
    finally:
        stop.set()
        sampler.join(2)
    duration = time.monotonic() - t0
    time.sleep(0.5)
    answers = client.messages("answer")[n_base:]
    ids = [a.id for a in answers]
    assert len(ids) == n_flood and set(ids) == {f"flood-{i}" for i in range(n_flood)}
    status = [a.status for a in answers]
    n_ok, n_busy = status.count(SpatialAnswer.STATUS_OK), status.count(SpatialAnswer.STATUS_BUSY)
    assert n_ok + n_busy == n_flood, "no error answers in a flood of valid questions"
    assert n_busy >= n_flood // 2, (n_ok, n_busy)  # most are turned away at once...
    assert n_ok >= QUEUE  # ... while the model keeps answering
    busy_lat = [a.latency for a in answers if a.status == SpatialAnswer.STATUS_BUSY]
    assert max(busy_lat) < 5.0  # busy means "now", not after waiting behind the model

    # The queue never grew beyond its bound, and the node accounted for every question.
    flood_diag = [client.diag_values(m) for m in client.messages("diag")
                  if m.header.stamp.sec + m.header.stamp.nanosec * 1e-9 > after]
    assert flood_diag and max(int(v["queries_pending"]) for v in flood_diag) <= QUEUE
    vals = client.wait_diag(lambda v: int(v["queries_pending"]) == 0, time.time(), proc=proc)
    all_answers = client.messages("answer")
    assert int(vals["queries_received"]) == len(all_answers)
    assert int(vals["queries_busy"]) == sum(a.status == SpatialAnswer.STATUS_BUSY
                                            for a in all_answers)

    # Memory stays flat: the backlog lives in bounded buffers, not in the node's heap.
    growth_mb = (max(samples) - rss0) / 1024
    assert growth_mb < 40, f"RSS grew by {growth_mb:.1f} MB during the flood"

    # And frames still flow afterwards.
    st = stamp(30_000)
    client.pub_info.publish(camera_info(intr, st))
    client.pub_image.publish(image(rgb, st))
    client.wait(lambda: (30_000, 0) in [(d[0], d[1]) for d in client.messages("depth")],
                "depth after the flood", proc=proc)
    print(f"\nflood: {n_flood} queries in {duration:.1f} s ({n_flood / duration:.0f}/s): "
          f"{n_ok} answered, {n_busy} busy; RSS {rss0 / 1024:.0f} MB -> max "
          f"{max(samples) / 1024:.0f} MB ({len(samples)} samples)")
