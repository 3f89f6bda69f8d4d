"""Stopping the node: lifecycle transitions and signals end in bounded time, and every question
the node has taken gets its one answer, also when the node goes down under it.

* deactivate with questions queued (some waiting 5 s for a frame that will never come, some
  about the latest frame): the transition returns at once and each question is answered (OK, or
  an error saying the node was deactivated);
* cleanup and a fresh configure/activate (the model is loaded again) work after that;
* the shutdown transition from active does the same and leaves the node finalized;
* SIGINT and SIGTERM while frames and questions are streaming in: exit 0 within seconds, no
  traceback, no error logged.
"""

from __future__ import annotations

import signal
import subprocess
import threading
import time

import pytest
from ros_support import camera_info, image, make_scene, reliability_node, stamp

# After ros_support, which skips this module where ROS or the messages are missing.
from lifecycle_msgs.msg import State, Transition

from depthvlm_ros.msg import SpatialAnswer, SpatialQuery
from depthvlm_ros.ros.harness import domain_id

W, H = 64, 48
EXIT_S = 15.0       # generous bound for a clean exit on 2 shared cores
TRANSITION_S = 3.0  # a transition must not wait for the 5 s frame wait of queued questions


def _query(qid: str, sec: int = 0) -> SpatialQuery:
    q = SpatialQuery()
    q.id, q.text = qid, "How far is the door?"
    q.header.stamp = stamp(sec)
    return q


def _transition(client, tid: int) -> float:
    t0 = time.monotonic()
    assert client.transition(tid), f"transition {tid} failed"
    return time.monotonic() - t0


def _frame(client, proc, rgb, intr, sec: int) -> None:
    st = stamp(sec)
    client.pub_info.publish(camera_info(intr, st))
    client.pub_image.publish(image(rgb, st))
    client.wait(lambda: any(d[0] == sec for d in client.messages("depth")), f"depth {sec}",
                proc=proc)


def _queue_questions(client, proc, tag: str, n_future: int, n_latest: int) -> list[str]:
    """Send questions and wait until the node has taken them all (its counter says so)."""
    # A report made from now on: the last one received may predate a cleanup/configure,
    # which starts the node's counters afresh, and would overstate the baseline.
    before = int(client.wait_diag(lambda v: True, time.time(), proc=proc)["queries_received"])
    ids = []
    for i in range(n_future):  # about a frame that never comes: they wait in the queue
        ids.append(f"{tag}-future-{i}")
        client.pub_query.publish(_query(ids[-1], sec=900_000 + i))
    for i in range(n_latest):  # about the latest frame: answered by the model, or cut off
        ids.append(f"{tag}-latest-{i}")
        client.pub_query.publish(_query(ids[-1]))
    client.wait_diag(lambda v: int(v["queries_received"]) >= before + len(ids),
                     time.time(), proc=proc)
    return ids


def _answers_for(client, ids) -> dict:
    got: dict = {}
    for a in client.messages("answer"):
        if a.id in ids:
            assert a.id not in got, f"{a.id} answered twice"
            got[a.id] = a
    return got


def test_lifecycle_transitions_answer_what_was_taken(tmp_path_factory):
    with reliability_node(tmp_path_factory, "reliability_lifecycle",
                          {"query_queue_size": 16}) as (client, proc, log):
        rgb, intr = make_scene(W, H, seed=5)
        _frame(client, proc, rgb, intr, 1)

        # --- deactivate with 6 questions waiting and 4 about the latest frame
        ids = _queue_questions(client, proc, "deact", 6, 4)
        dt = _transition(client, Transition.TRANSITION_DEACTIVATE)
        assert dt < TRANSITION_S, f"deactivate took {dt:.1f} s"
        assert client.state() == State.PRIMARY_STATE_INACTIVE
        client.wait(lambda: len(_answers_for(client, ids)) == len(ids), "answers", proc=proc)
        got = _answers_for(client, ids)
        for qid, a in got.items():
            if "future" in qid:
                assert a.status == SpatialAnswer.STATUS_ERROR and "deactivated" in a.status_reason
            else:
                assert a.status == SpatialAnswer.STATUS_OK or "deactivated" in a.status_reason
        n_ok = sum(a.status == SpatialAnswer.STATUS_OK for a in got.values())

        # Inactive: inputs are not read, nothing is published.
        n_depth = len(client.messages("depth"))
        client.pub_info.publish(camera_info(intr, stamp(2)))
        client.pub_image.publish(image(rgb, stamp(2)))
        time.sleep(0.5)
        assert len(client.messages("depth")) == n_depth

        # --- cleanup, then configure + activate again (the model is loaded afresh)
        assert _transition(client, Transition.TRANSITION_CLEANUP) < TRANSITION_S
        assert client.state() == State.PRIMARY_STATE_UNCONFIGURED
        _transition(client, Transition.TRANSITION_CONFIGURE)
        _transition(client, Transition.TRANSITION_ACTIVATE)
        assert client.state() == State.PRIMARY_STATE_ACTIVE
        client.wait_connected()
        _frame(client, proc, rgb, intr, 3)

        # --- shutdown straight from active, questions still queued
        ids2 = _queue_questions(client, proc, "shut", 5, 0)
        dt = _transition(client, Transition.TRANSITION_ACTIVE_SHUTDOWN)
        assert dt < TRANSITION_S, f"shutdown took {dt:.1f} s"
        assert client.state() == State.PRIMARY_STATE_FINALIZED
        client.wait(lambda: len(_answers_for(client, ids2)) == len(ids2), "answers", proc=proc)
        assert all(a.status == SpatialAnswer.STATUS_ERROR and "deactivated" in a.status_reason
                   for a in _answers_for(client, ids2).values())

        # A finalized node still exits cleanly on Ctrl-C.
        proc.send_signal(signal.SIGINT)
        t0 = time.monotonic()
        try:
            rc = proc.wait(EXIT_S)
        except subprocess.TimeoutExpired:
            # Seen once in CI (the node then exited 0 on the cleanup's SIGTERM): keep what
            # it logged, to tell where it waited.
            pytest.fail(f"finalized node still running {EXIT_S} s after SIGINT; its log "
                        f"ends:\n{log.read_text()[-3000:]}")
        text = log.read_text()
        assert rc == 0, text[-3000:]
        assert "Traceback" not in text and "[ERROR]" not in text, text[-3000:]
        print(f"\nlifecycle: deactivate answered {len(ids)} queued questions ({n_ok} OK), "
              f"shutdown answered {len(ids2)}; exit {time.monotonic() - t0:.2f} s after SIGINT")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_under_load_exits_cleanly(tmp_path_factory, sig):
    stop = threading.Event()
    sent = {"frames": 0, "queries": 0}
    with reliability_node(tmp_path_factory, f"reliability_{sig.name}",
                          {"query_queue_size": 4}) as (client, proc, log):
        try:
            rgb, intr = make_scene(W, H, seed=6)
            _frame(client, proc, rgb, intr, 1)

            def load():
                # Frames and questions far faster than the model: the worker is always busy, the
                # query queue full, when the signal comes.
                i = 0
                while not stop.is_set():
                    i += 1
                    st = stamp(10 + i // 100, (i % 100) * 10_000_000)
                    client.pub_info.publish(camera_info(intr, st))
                    client.pub_image.publish(image(rgb, st))
                    client.pub_query.publish(_query(f"load-{i}"))
                    sent["frames"] += 1
                    sent["queries"] += 1
                    time.sleep(0.002)

            loader = threading.Thread(target=load, daemon=True)
            loader.start()
            client.wait(lambda: len(client.messages("answer")) >= 20 and
                        len(client.messages("depth")) >= 5, "node under load", proc=proc)
            proc.send_signal(sig)
            t0 = time.monotonic()
            try:
                rc = proc.wait(EXIT_S)
            except subprocess.TimeoutExpired:
                pytest.fail(f"node still running {EXIT_S} s after {sig.name}")
            exit_s = time.monotonic() - t0
            stop.set()
            loader.join(2)
            text = log.read_text()
            assert rc == 0, text[-3000:]
            assert "Traceback" not in text and "[ERROR]" not in text, text[-3000:]
            # Answers are never duplicated, even around the shutdown.
            ids = [a.id for a in client.messages("answer")]
            assert len(ids) == len(set(ids))
            print(f"\n{sig.name}: exit after {exit_s:.2f} s under load ({sent['frames']} frames, "
                  f"{sent['queries']} questions sent, {len(ids)} answered)")
        finally:
            stop.set()


def test_shutdown_racing_the_executor_is_a_clean_exit(monkeypatch):
    """rclpy's signal handler can shut the context down while the executor builds its next
    wait set (rcl raises RCLError, "context is not valid"; seen once in CI under SIGTERM) or
    inside a subscription's take (pybind11 raises RuntimeError; seen once under SIGINT),
    instead of ExternalShutdownException. main() must exit 0 then, and still raise a
    RuntimeError that happens with the context valid."""
    import rclpy
    from rclpy.impl.implementation_singleton import rclpy_implementation

    from depthvlm_ros.ros import node as node_module

    RCLError = rclpy_implementation.RCLError
    monkeypatch.setenv("ROS_DOMAIN_ID", str(domain_id("reliability_executor_race")))
    args = ["--ros-args", "-p", "autostart:=false"]

    # What rcl raises when the shutdown lands while the wait set is built, and what pybind11
    # raises when it lands inside a subscription's take (seen once in CI under SIGINT).
    for raised in (RCLError("failed to initialize wait set: the given context is not valid"),
                   RuntimeError("Unable to convert call argument '0' to Python object")):
        def spin_after_signal(self, raised=raised):
            # What the signal handler does, from another thread, a moment after the exception.
            threading.Timer(0.2, rclpy.shutdown).start()
            raise raised

        monkeypatch.setattr(node_module.SingleThreadedExecutor, "spin", spin_after_signal)
        assert node_module.main(args) == 0, raised
        assert not rclpy.ok()

    for failure in (RCLError, RuntimeError):
        def spin_fails(self, failure=failure):
            raise failure("a real failure")

        monkeypatch.setattr(node_module.SingleThreadedExecutor, "spin", spin_fails)
        with pytest.raises(failure, match="a real failure"):
            node_module.main(args)
        assert not rclpy.ok()  # main still cleaned up
