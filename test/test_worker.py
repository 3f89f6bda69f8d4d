"""depthvlm_ros.core.scheduling without ROS: latest frame, bounded and waiting queries, pairing."""

from __future__ import annotations

import threading
import time

import numpy as np

from depthvlm_ros.core.scheduling import (Counters, FrameJob, HeldFrame, LatestFrameWorker, QueryJob,
                                     StampPairer)


class Recorder:
    """Stands in for the node: frames take ``frame_s``; everything is logged in order."""

    def __init__(self, frame_s=0.0, gate: threading.Event | None = None):
        self.log = []
        self.batches = []
        self.frame_s = frame_s
        self.gate = gate
        self.done = threading.Event()

    def run_frame(self, jobs):
        if self.gate is not None:
            self.gate.wait(5)
        time.sleep(self.frame_s)
        self.batches.append([(job.camera, job.stamp_ns) for job in jobs])
        held = []
        for job in jobs:
            self.log.append(("frame", job.stamp_ns) if not job.camera else
                            ("frame", job.camera, job.stamp_ns))
            held.append(HeldFrame(job.stamp_ns, None, None, np.zeros((1, 1)), None,
                                  camera=job.camera))
        return held

    def run_query(self, job, frame, error):
        self.log.append(("query", job.qid, frame.stamp_ns if frame else None, error))


def _wait(cond, timeout=5.0):
    t0 = time.monotonic()
    while not cond():
        assert time.monotonic() - t0 < timeout, "timed out"
        time.sleep(0.005)


def _q(qid, stamp=0, **kw):
    return QueryJob(stamp, qid, "q?", np.zeros((0, 2)), **kw)


def test_newer_frame_replaces_waiting_one():
    gate = threading.Event()
    rec = Recorder(gate=gate)
    w = LatestFrameWorker(rec.run_frame, rec.run_query, 4, 4)
    w.start()
    assert w.submit_frame(FrameJob(1, None, None)) is None
    _wait(lambda: w.waiting_frames() == 0)          # frame 1 is running (blocked on the gate)
    assert w.submit_frame(FrameJob(2, None, None)) is None
    replaced = w.submit_frame(FrameJob(3, None, None))
    assert replaced is not None and replaced.stamp_ns == 2
    gate.set()
    _wait(lambda: len(rec.log) == 2)
    assert rec.log == [("frame", 1), ("frame", 3)]
    w.stop()


def test_query_queue_is_bounded_and_stop_returns_leftovers():
    w = LatestFrameWorker(lambda jobs: [None] * len(jobs), lambda *a: None, 2, 4, frame_wait_s=60)
    # Not started: queries only accumulate.
    assert w.submit_query(_q("a")) and w.submit_query(_q("b"))
    assert not w.submit_query(_q("c"))
    left, frames = w.stop()
    assert [q.qid for q in left] == ["a", "b"] and frames == []


def test_query_before_any_frame_waits_then_is_answered():
    rec = Recorder()
    w = LatestFrameWorker(rec.run_frame, rec.run_query, 4, 4, frame_wait_s=5)
    w.start()
    w.submit_query(_q("early"))
    time.sleep(0.1)
    assert rec.log == []
    w.submit_frame(FrameJob(7, None, None))
    _wait(lambda: len(rec.log) == 2)
    assert rec.log == [("frame", 7), ("query", "early", 7, None)]
    w.stop()


def test_query_wait_is_bounded():
    rec = Recorder()
    w = LatestFrameWorker(rec.run_frame, rec.run_query, 4, 4, frame_wait_s=0.2)
    w.start()
    w.submit_query(_q("lonely"))
    _wait(lambda: rec.log)
    (_, qid, frame, error), = rec.log
    assert qid == "lonely" and frame is None and "no frame" in error
    w.stop()


def test_stamped_queries_use_history_or_explain():
    rec = Recorder()
    w = LatestFrameWorker(rec.run_frame, rec.run_query, 8, 2, frame_wait_s=0.3)
    w.start()
    for s in (10, 20, 30):
        w.submit_frame(FrameJob(s, None, None))
        _wait(lambda: ("frame", s) in rec.log)
    w.submit_query(_q("held", 20))
    w.submit_query(_q("latest", 0))
    w.submit_query(_q("gone", 10))           # history is 2: only 20 and 30 are held
    w.submit_query(_q("future", 40))         # waits, then errors
    _wait(lambda: len([e for e in rec.log if e[0] == "query"]) == 4)
    answers = {e[1]: e[2:] for e in rec.log if e[0] == "query"}
    assert answers["held"] == (20, None)
    assert answers["latest"] == (30, None)
    assert answers["gone"][0] is None and "not held" in answers["gone"][1]
    assert answers["future"][0] is None and "within" in answers["future"][1]
    w.stop()


def test_queries_have_priority_but_cannot_starve_frames():
    gate = threading.Event()
    rec = Recorder(gate=gate)
    w = LatestFrameWorker(rec.run_frame, rec.run_query, 3, 4)
    w.start()
    w.submit_frame(FrameJob(1, None, None))
    _wait(lambda: w.waiting_frames() == 0)
    w.submit_frame(FrameJob(2, None, None))
    for i in range(3):
        assert w.submit_query(_q(f"q{i}"))
    gate.set()
    _wait(lambda: len(rec.log) == 5)
    # The queries go before the waiting frame (their frame 1 is done), within the cap of 3.
    assert [e[0] for e in rec.log] == ["frame", "query", "query", "query", "frame"]
    w.stop()


def test_worker_survives_exceptions():
    errors = []

    def bad_frame(jobs):
        raise RuntimeError("boom")

    w = LatestFrameWorker(bad_frame, lambda *a: None, 2, 2,
                          on_error=lambda where, exc, job: errors.append((where, str(exc))))
    w.start()
    w.submit_frame(FrameJob(1, None, None))
    w.submit_frame(FrameJob(2, None, None))
    _wait(lambda: len(errors) >= 1)
    w.submit_frame(FrameJob(3, None, None))
    _wait(lambda: len(errors) >= 2)
    assert errors[0] == ("frame", "boom")
    w.stop()


def test_pairer_matches_by_stamp_in_either_order():
    p = StampPairer(info_buffer=3, tolerance_ns=0)
    assert p.add_image(5, "img5") == (None, 0)              # image first: pending
    paired, dropped = p.add_info(5, "info5")
    assert paired == (5, "img5", "info5") and dropped == 0
    assert p.add_image(5, "again") == ("info5", 0)          # info first: immediate
    assert p.add_image(6, "img6")[0] is None                # tolerance 0: exact only
    p.tolerance_ns = 2
    assert p.add_image(6, "img6b")[0] == "info5"


def test_pairer_gives_up_older_pending_images():
    p = StampPairer(info_buffer=2, tolerance_ns=0, max_pending=2)
    p.add_image(1, "a")
    p.add_image(2, "b")
    assert p.add_image(3, "c") == (None, 1)                 # 'a' pushed out
    paired, dropped = p.add_info(3, "i3")
    assert paired == (3, "c", "i3") and dropped == 1        # 'b' is older than the pair
    assert not p.pending
    p.add_image(4, "d")
    p.add_image(6, "f")
    p.add_info(5, "i5")
    assert p.add_image(5, "e") == ("i5", 1)                 # 'd' (older, unpaired) given up
    assert [x[0] for x in p.pending] == [6]
    for s in range(10):
        p.add_info(100 + s, s)
    assert len(p.infos) == 2


def test_counters_snapshot_rates_and_reset():
    c = Counters()
    c.inc("frames_received", 4)
    c.drop("superseded", 2)
    c.latency("model", 0.5)
    c.latency("model", 1.5)
    snap = c.snapshot()
    assert snap["totals"]["frames_received"] == 4 and snap["totals"]["frames_dropped"] == 2
    assert snap["drops"] == {"superseded": 2}
    assert snap["latency_mean"]["model"] == 1.0 and snap["rates"]["frames_received"] > 0
    snap2 = c.snapshot()
    assert snap2["period"] == {} and snap2["totals"]["frames_received"] == 4
    assert snap2["latency_last"]["model"] == 1.5


def test_cameras_take_turns_so_a_slow_camera_is_not_starved():
    """A camera sending a frame before every model run next to one sending rarely: the rare
    camera's frame runs next, not after the busy camera's stream."""
    rec = Recorder(frame_s=0.01)
    w = LatestFrameWorker(rec.run_frame, rec.run_query, 4, 4)
    # Not started yet: both cameras have a frame waiting; 'fast' asked first.
    w.submit_frame(FrameJob(1, None, None, camera="fast"))
    w.submit_frame(FrameJob(100, None, None, camera="slow"))
    w.start()
    _wait(lambda: len(rec.log) == 2)
    # The busy camera keeps a frame waiting at every pick; the slow one sends one more.
    for stamp in range(2, 8):
        w.submit_frame(FrameJob(stamp, None, None, camera="fast"))
        if stamp == 4:
            w.submit_frame(FrameJob(101, None, None, camera="slow"))
        _wait(lambda: w.waiting_frames() == 0)
    w.stop()
    slow = [i for i, e in enumerate(rec.log) if e[1] == "slow"]
    assert [rec.log[i][2] for i in slow] == [100, 101]
    assert slow[1] - slow[0] <= 3, rec.log  # served within one round of its arrival
    fast = [e[2] for e in rec.log if e[1] == "fast"]
    assert fast == sorted(fast) and fast[0] == 1  # in order, each camera on its own


def test_a_superseded_frame_is_replaced_only_by_its_own_camera():
    w = LatestFrameWorker(lambda jobs: [None] * len(jobs), lambda *a: None, 2, 4)
    assert w.submit_frame(FrameJob(1, None, None, camera="a")) is None
    assert w.submit_frame(FrameJob(2, None, None, camera="b")) is None
    replaced = w.submit_frame(FrameJob(3, None, None, camera="a"))
    assert replaced.stamp_ns == 1
    _, frames = w.stop()
    assert sorted((f.camera, f.stamp_ns) for f in frames) == [("a", 3), ("b", 2)]


def test_queries_are_answered_from_the_frames_of_their_own_camera():
    rec = Recorder()
    w = LatestFrameWorker(rec.run_frame, rec.run_query, 8, 2, frame_wait_s=0.3)
    w.start()
    w.submit_frame(FrameJob(10, None, None, camera="left"))
    _wait(lambda: w.latest("left") is not None)
    w.submit_frame(FrameJob(20, None, None, camera="right"))
    _wait(lambda: w.latest("right") is not None)
    w.submit_query(_q("latest-left", camera="left"))
    w.submit_query(_q("stamped-right", stamp=20, camera="right"))
    w.submit_query(_q("left-stamp-on-right", stamp=10, camera="right"))
    _wait(lambda: len([e for e in rec.log if e[0] == "query"]) == 3, timeout=3)
    w.stop()
    answers = {e[1]: e[2:] for e in rec.log if e[0] == "query"}
    assert answers["latest-left"] == (10, None)
    assert answers["stamped-right"] == (20, None)
    # Stamp 10 belongs to the left camera: never answered from it when the right one is asked.
    assert answers["left-stamp-on-right"][0] is None and "not held" in \
        answers["left-stamp-on-right"][1]
    assert [f.stamp_ns for f in w.history("left")] == [10]


def test_batches_take_one_waiting_frame_per_camera_in_turn():
    """With batch_frames 2 and three cameras waiting, the two served longest ago run together,
    the third next (with whichever camera has a new frame by then); no batch waits to fill."""
    rec = Recorder()
    w = LatestFrameWorker(rec.run_frame, rec.run_query, 4, 4, batch_frames=2)
    for stamp, camera in ((1, "a"), (2, "b"), (3, "c")):
        w.submit_frame(FrameJob(stamp, None, None, camera=camera))
    w.start()
    _wait(lambda: len(rec.log) == 3)
    assert rec.batches[0] == [("a", 1), ("b", 2)]
    assert rec.batches[1] == [("c", 3)]  # alone: nothing else was waiting
    w.submit_frame(FrameJob(4, None, None, camera="c"))
    _wait(lambda: len(rec.log) == 4)
    assert rec.batches[2] == [("c", 4)]
    assert [f.stamp_ns for f in w.history("a")] == [1]
    assert [f.stamp_ns for f in w.history("c")] == [3, 4]
    w.stop()


def test_a_failed_batch_reports_every_frame_in_it():
    errors = []

    def bad_frames(jobs):
        raise RuntimeError("boom")

    w = LatestFrameWorker(bad_frames, lambda *a: None, 2, 2, batch_frames=3,
                          on_error=lambda where, exc, job: errors.append((where, job.camera)))
    w.submit_frame(FrameJob(1, None, None, camera="a"))
    w.submit_frame(FrameJob(2, None, None, camera="b"))
    w.start()
    _wait(lambda: len(errors) == 2)
    assert sorted(errors) == [("frame", "a"), ("frame", "b")]
    w.stop()


def test_batch_frames_must_be_positive():
    import pytest

    with pytest.raises(ValueError, match="batch_frames"):
        LatestFrameWorker(lambda jobs: [], lambda *a: None, 2, 2, batch_frames=0)
