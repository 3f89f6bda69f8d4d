"""What the live-node tests share on top of :mod:`depthvlm_ros.ros.harness` (no tests here).

Every node under test is the installed ``depthvlm_node`` launcher running the code of this
checkout (the harness puts it first on PYTHONPATH; ``depthvlm_ros.msg`` still comes from the
colcon install space, ``scripts/ros_env.sh``), with the embedded model on the CPU, one torch
thread, and a ROS domain id of its own (:func:`~depthvlm_ros.ros.harness.domain_id`).
Importing this module skips the test module when ROS or the messages are not there.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np
import pytest

pytest.importorskip("rclpy")
try:
    from depthvlm_ros.msg import SpatialAnswer  # noqa: F401
except ImportError:
    pytest.skip("depthvlm_ros.msg is not built: run scripts/build_ros.sh and source "
                "scripts/ros_env.sh", allow_module_level=True)

from depthvlm_ros.core.camera import Intrinsics  # noqa: E402
from depthvlm_ros.ros import harness  # noqa: E402
from depthvlm_ros.ros.harness import stamp, stamp_key  # noqa: E402,F401 - re-exported

__all__ = ["WAIT", "FRAME_ID", "TEST_PARAMS", "ACCOUNTING", "COMPACT", "live_node",
           "reliability_node", "stamp", "stamp_key", "image", "camera_info", "make_scene",
           "settled", "rss_kb"]

WAIT = harness.DEFAULT_TIMEOUT_S
FRAME_ID = "cam_optical"

#: Parameters of every node under test.
TEST_PARAMS = {"model_path": "embedded", "head_backend": "torch", "device": "cpu"}
#: The reliability tests' node: best effort loses fragmented samples on this machine's Fast DDS,
#: reliable makes the tests' accounting exact (every image sent is received); frequent reports.
ACCOUNTING = {"image_qos": "reliable", "diagnostics_period_s": 0.1}
#: Compact recorders: depth images as (sec, nanosec, width, height), camera_info and clouds as
#: stamps, so that a soak of thousands of frames does not make the *test* process the one
#: that grows.
COMPACT: dict[str, Callable[[Any], Any]] = {
    "depth": lambda m: (*stamp_key(m.header), m.width, m.height),
    "info": lambda m: stamp_key(m.header),
    "points": lambda m: stamp_key(m.header),
}


@contextmanager
def live_node(log: Path, purpose: str, params: Mapping[str, Any] | None = None,
              ros_args: Sequence[str] = (), *, params_file: bool = False,
              record: Iterable[str] = ("depth", "info", "answer", "diag"),
              keep: Mapping[str, Callable[[Any], Any]] | None = None,
              frame_id: str = FRAME_ID, connect: bool = True, active_timeout: float = 120.0):
    """Yield ``(client, proc, log)`` for a node that is active and discovered.

    Args:
        log: the node's log file.
        purpose: names the ROS domain (one per test module or test).
        params: parameters on top of :data:`TEST_PARAMS`.
        ros_args: more ``--ros-args`` (remaps).
        params_file: load the installed params file first.
        record, keep, frame_id: of the :class:`~depthvlm_ros.ros.harness.Client`.
        connect: wait until the node's inputs and outputs are discovered (False when its
            inputs are remapped away from the client's publishers).
        active_timeout: seconds for autostart to reach ACTIVE.

    The client is closed, and the node stopped with SIGINT (killed if it hangs), on exit;
    ``DEPTHVLM_SHOW_NODE_LOG=1`` prints the node's log then.
    """
    domain = harness.domain_id(purpose)
    try:
        node = harness.NodeProcess(
            domain, params={**TEST_PARAMS, **(params or {})}, ros_args=ros_args, log=log,
            params_file=harness.installed_params_file() if params_file else None)
    except FileNotFoundError as exc:
        pytest.skip(str(exc))
    try:
        with node, harness.Client(domain, name="depthvlm_test_client", record=record,
                                  keep=keep, frame_id=frame_id) as client:
            try:
                node.wait_active(client, active_timeout)
            except (harness.NodeExited, TimeoutError) as exc:
                raise type(exc)(f"{exc}\n{node.log_text()[-3000:]}") from None
            if connect:
                client.wait_connected()
            yield client, node.proc, log
    finally:
        if os.environ.get("DEPTHVLM_SHOW_NODE_LOG"):
            print(node.log_text())


def reliability_node(tmp_path_factory, purpose: str, params: Mapping[str, Any],
                     points: bool = False):
    """:func:`live_node` as the reliability tests run it: :data:`ACCOUNTING` parameters and
    :data:`COMPACT` recorders (clouds only with ``points``)."""
    record = ("depth", "info", "answer", "diag") + (("points",) if points else ())
    return live_node(tmp_path_factory.mktemp("node") / "depthvlm_node.log", purpose,
                     {**ACCOUNTING, **params}, record=record, keep=COMPACT)


def image(rgb: np.ndarray, st):
    return harness.image(rgb, st, FRAME_ID)


def camera_info(intr: Intrinsics, st, frame_id: str = FRAME_ID):
    return harness.camera_info(intr, st, frame_id)


def make_scene(width: int, height: int, seed: int = 0) -> tuple[np.ndarray, Intrinsics]:
    """A random but fixed RGB frame and plausible intrinsics (60 deg horizontal FOV)."""
    rgb = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return rgb, Intrinsics.from_fov(width, height, 60.0)


def settled(expected_received: int) -> Callable[[dict], bool]:
    """Diagnostics predicate: every image sent so far is received and accounted for."""
    def pred(v: dict) -> bool:
        return int(v["frames_received"]) == expected_received and \
            int(v["frames_received"]) == int(v["frames_processed"]) + \
            int(v["frames_dropped"]) + int(v["frames_waiting_camera_info"])
    return pred


def rss_kb(pid: int) -> int:
    """Resident set size of a process, from /proc (kB)."""
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError(f"no VmRSS for pid {pid}")
