"""Soak: thousands of frames through the live node, with questions mixed in.

The client publishes small frames (64x48, embedded model) as fast as the node takes them: it
keeps a few frames in flight, so the model never idles and the latest-frame policy gets to
supersede some. It checks that resident memory after warm-up stays flat (< 50 MB growth), that
no output goes backwards in time (depth, camera_info and points stamps strictly increasing), and
that the node's counters account for every frame and question.
"""

from __future__ import annotations

import os
import statistics
import time

import pytest
from ros_support import camera_info, image, make_scene, reliability_node, rss_kb, settled, stamp

# After ros_support, which skips this module where ROS or the messages are missing.
from geometry_msgs.msg import Point

from depthvlm_ros.msg import SpatialAnswer, SpatialQuery

W, H = 64, 48
FRAMES = int(os.environ.get("DEPTHVLM_SOAK_FRAMES", "3000"))
WARMUP = 300
IN_FLIGHT = 3  # frames published ahead of the newest depth image
QUERY_EVERY = 25


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    with reliability_node(tmp_path_factory, "reliability_soak", {
            "query_queue_size": 4, "publish_points": True, "diagnostics_period_s": 0.5},
            points=True) as live_node:
        yield live_node


def _newest(client) -> int:
    """Index of the newest frame that came out as a depth image (-1: none yet)."""
    depth = client.messages("depth")
    if not depth:
        return -1
    sec, nsec = depth[-1][0], depth[-1][1]
    return (sec - 100_000) * 10 + nsec // 100_000_000


def _strictly_increasing(keys) -> bool:
    return all(a < b for a, b in zip(keys, keys[1:]))


def test_soak_memory_flat_and_outputs_in_order(live):
    client, proc, log = live
    # A few different frames, so the model does not see one constant input.
    scenes = [make_scene(W, H, seed=s) for s in range(4)]
    rss = []
    queries = 0
    t0 = time.monotonic()
    for i in range(FRAMES):
        sec, nsec = 100_000 + i // 10, (i % 10) * 100_000_000
        # Flow control: the newest frame sent is never superseded, so it always comes out;
        # wait until at most IN_FLIGHT frames are ahead of the newest depth image.
        t_wait = time.monotonic()
        while i - _newest(client) > IN_FLIGHT:
            assert proc.poll() is None, "node died during the soak"
            assert time.monotonic() - t_wait < 15, f"no depth output for 15 s at frame {i}"
            time.sleep(0.001)
        rgb, intr = scenes[i % len(scenes)]
        st = stamp(sec, nsec)
        client.pub_info.publish(camera_info(intr, st))
        client.pub_image.publish(image(rgb, st))
        if i % QUERY_EVERY == QUERY_EVERY - 1:
            q = SpatialQuery()
            q.id, q.text = f"soak-{i}", "How far is the wall?"
            q.pixels = [Point(x=10.0, y=20.0)]
            client.pub_query.publish(q)
            queries += 1
        if i % 20 == 0:
            rss.append((rss_kb(proc.pid), i))
    publish_s = time.monotonic() - t0
    vals = client.wait_diag(lambda v: settled(FRAMES)(v) and int(v["queries_pending"]) == 0,
                            time.time(), timeout=60, proc=proc)
    client.wait(lambda: len(client.messages("answer")) >= queries, f"{queries} answers",
                proc=proc)
    rss.append((rss_kb(proc.pid), FRAMES))

    # Accounting: every frame processed or dropped for the latest-frame policy, nothing lost.
    processed, dropped = int(vals["frames_processed"]), int(vals["frames_dropped"])
    assert int(vals["frames_received"]) == FRAMES == processed + dropped
    assert dropped == int(vals.get("dropped_superseded", 0)), vals  # no other drop reason
    # With IN_FLIGHT frames queued in DDS the node supersedes some, but the model never idles.
    assert processed >= FRAMES // 5, vals
    time.sleep(0.3)
    depth = client.messages("depth")
    info = client.messages("info")
    points = client.messages("points")
    assert len(depth) == processed and len(info) == processed

    # Order: no output ever goes back in time.
    keys = [(d[0], d[1]) for d in depth]
    assert _strictly_increasing(keys), "depth images out of order"
    assert _strictly_increasing(info), "depth/camera_info out of order"
    assert _strictly_increasing(points), "points out of order"
    # The node keeps 2 clouds for a slow reader (qos.PREVIEW_OUT): it may miss a few.
    assert len(points) >= processed * 0.9

    # Questions: each answered once, and every one OK or busy (never an error).
    answers = [a for a in client.messages("answer") if a.id.startswith("soak-")]
    assert len(answers) == queries == len({a.id for a in answers})
    assert all(a.status in (SpatialAnswer.STATUS_OK, SpatialAnswer.STATUS_BUSY) for a in answers)
    assert sum(a.status == SpatialAnswer.STATUS_OK for a in answers) >= queries // 2

    # Memory: flat after warm-up. Single RSS readings swing by tens of MB as torch and malloc
    # take and give back buffers, so compare the typical level (median) of the first and the
    # last third of the post-warm-up samples: a leak moves it, a transient does not. Spikes
    # must stay bounded too.
    post = [r for r, j in rss if j >= WARMUP]
    third = max(1, len(post) // 3)
    early, late = statistics.median(post[:third]), statistics.median(post[-third:])
    growth_mb = (late - early) / 1024
    spike_mb = (max(post) - early) / 1024
    assert growth_mb < 50, f"RSS grew by {growth_mb:.1f} MB after warm-up: {post}"
    assert spike_mb < 150, f"RSS spiked {spike_mb:.1f} MB above its warm level: {post}"
    text = log.read_text()
    assert "Traceback" not in text and "[ERROR]" not in text
    print(f"\nsoak: {FRAMES} frames in {publish_s:.1f} s ({FRAMES / publish_s:.1f}/s), "
          f"{processed} processed, {dropped} superseded, {queries} questions; RSS median "
          f"{early / 1024:.0f} MB after warm-up -> {late / 1024:.0f} MB at the end "
          f"({growth_mb:+.1f} MB; highest reading {spike_mb:+.1f} MB; {len(post)} samples)")
