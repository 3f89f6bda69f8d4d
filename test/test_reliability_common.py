"""Shared helpers for the reliability tests (no tests here).

The reliability tests start ``depthvlm_node`` as a separate process from the *source tree*
(``python -m depthvlm_ros.ros.node`` with the repository first on PYTHONPATH), so that what they
prove is about the code in this checkout, not a possibly stale copy in ``install/``. The message
package ``depthvlm_ros.msg`` still comes from the colcon install space (``scripts/ros_env.sh``).

Each test module gets its own ROS_DOMAIN_ID so modules never see each other's traffic.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
WAIT = 30.0  # generous: 2 shared CPU cores and a training job in the background

rclpy = pytest.importorskip("rclpy")
try:
    from depthvlm_ros.msg import SpatialAnswer, SpatialQuery  # noqa: F401
except ImportError:
    pytest.skip("depthvlm_ros.msg is not built: run scripts/build_ros.sh and source "
                "scripts/ros_env.sh", allow_module_level=True)

from builtin_interfaces.msg import Time  # noqa: E402
from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from lifecycle_msgs.msg import State  # noqa: E402
from lifecycle_msgs.srv import ChangeState, GetState  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import CameraInfo, Image, PointCloud2  # noqa: E402
from std_msgs.msg import String  # noqa: E402

from depthvlm_ros.core.camera import Intrinsics  # noqa: E402
from depthvlm_ros.ros import convert  # noqa: E402

NODE = "/depthvlm_node"
FRAME_ID = "cam_optical"


def domain_id(offset: int) -> int:
    # 0..232 is the range Fast DDS can map to ports; stay clear of test_node_live's 100..199.
    return 200 + (os.getpid() + offset) % 30


def stamp(sec: int, nanosec: int = 0) -> Time:
    return Time(sec=int(sec), nanosec=int(nanosec))


def stamp_key(header) -> tuple[int, int]:
    return (int(header.stamp.sec), int(header.stamp.nanosec))


def camera_info(intr: Intrinsics, st: Time, frame_id: str = FRAME_ID) -> CameraInfo:
    ci = CameraInfo()
    ci.header.stamp, ci.header.frame_id = st, frame_id
    ci.width, ci.height = intr.width, intr.height
    ci.distortion_model = "plumb_bob"
    ci.d = [0.0] * 5
    ci.k = [intr.fx, 0.0, intr.cx, 0.0, intr.fy, intr.cy, 0.0, 0.0, 1.0]
    ci.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    ci.p = [intr.fx, 0.0, intr.cx, 0.0, 0.0, intr.fy, intr.cy, 0.0, 0.0, 0.0, 1.0, 0.0]
    return ci


def image(rgb: np.ndarray, st: Time) -> Image:
    img = convert.rgb_to_msg(rgb)
    img.header.stamp, img.header.frame_id = st, FRAME_ID
    return img


def make_scene(width: int, height: int, seed: int = 0) -> tuple[np.ndarray, Intrinsics]:
    """A random but fixed RGB frame and plausible intrinsics (60 deg horizontal FOV)."""
    rgb = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return rgb, Intrinsics.from_fov(width, height, 60.0)



def rss_kb(pid: int) -> int:
    """Resident set size of a process, from /proc (kB)."""
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError(f"no VmRSS for pid {pid}")


# ------------------------------------------------------------------------------------------
# the node process


def node_env(dom: int) -> dict[str, str]:
    env = dict(os.environ, ROS_DOMAIN_ID=str(dom), PYTHONUNBUFFERED="1",
               ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST", RCUTILS_COLORIZED_OUTPUT="0",
               OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH")
                                     else "")
    return env


def start_node(log: Path, dom: int, params: dict[str, str]) -> subprocess.Popen:
    """Start the node from the source tree with the embedded model and ``params`` overrides."""
    base = {"model_path": "embedded", "head_backend": "torch", "device": "cpu",
            # Best effort loses fragmented samples on this machine's Fast DDS; reliable makes
            # the test's accounting exact (every image sent is received).
            "image_qos": "reliable", "diagnostics_period_s": "0.1"}
    base.update(params)
    cmd = [sys.executable, "-m", "depthvlm_ros.ros.node", "--ros-args"]
    for k, v in base.items():
        cmd += ["-p", f"{k}:={v}"]
    with open(log, "w") as out:
        return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=node_env(dom),
                                cwd=str(REPO))


def stop_node(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait(10)


class Client:
    """The test's own rclpy node: input publishers and light-weight output recorders.

    Depth images are recorded as (stamp, width, height) only, so a soak of thousands of frames
    does not make the *test* process the one that grows.
    """

    def __init__(self, dom: int, points: bool = False) -> None:
        from rclpy.context import Context

        self.ctx = Context()
        rclpy.init(context=self.ctx, domain_id=dom)
        self.node = rclpy.create_node("depthvlm_reliability_test", context=self.ctx)
        self.lock = threading.Lock()
        self.depth: list[tuple[int, int, int, int]] = []  # sec, nanosec, width, height
        self.info: list[tuple[int, int]] = []
        self.points: list[tuple[int, int]] = []
        self.answers: list = []
        self.diag: list = []
        n = self.node
        rel = QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE)
        n.create_subscription(Image, "depth/image", self._on_depth, QoSProfile(depth=50))
        n.create_subscription(CameraInfo, "depth/camera_info", self._on_info, QoSProfile(depth=50))
        if points:
            n.create_subscription(PointCloud2, "points", self._on_points, QoSProfile(depth=10))
        n.create_subscription(SpatialAnswer, "answer", self._on_answer, rel)
        n.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, QoSProfile(depth=50))
        self.pub_image = n.create_publisher(Image, "image", QoSProfile(depth=10))
        self.pub_info = n.create_publisher(CameraInfo, "camera_info", QoSProfile(depth=10))
        self.pub_query = n.create_publisher(SpatialQuery, "query", rel)
        self.pub_text = n.create_publisher(String, "query_text", rel)
        self.get_state = n.create_client(GetState, f"{NODE}/get_state")
        self.change_state = n.create_client(ChangeState, f"{NODE}/change_state")
        self.executor = SingleThreadedExecutor(context=self.ctx)
        self.executor.add_node(n)
        self.thread = threading.Thread(target=self._spin, daemon=True)
        self.thread.start()

    def _spin(self) -> None:
        try:
            self.executor.spin()
        except Exception:  # noqa: BLE001 - the context is shut down at teardown
            pass

    def _on_depth(self, m) -> None:
        with self.lock:
            self.depth.append((m.header.stamp.sec, m.header.stamp.nanosec, m.width, m.height))

    def _on_info(self, m) -> None:
        with self.lock:
            self.info.append(stamp_key(m.header))

    def _on_points(self, m) -> None:
        with self.lock:
            self.points.append(stamp_key(m.header))

    def _on_answer(self, m) -> None:
        with self.lock:
            self.answers.append(m)

    def _on_diag(self, m) -> None:
        with self.lock:
            self.diag.append(m)

    def snapshot(self, attr: str) -> list:
        with self.lock:
            return list(getattr(self, attr))

    def wait(self, cond: Callable[[], bool], what: str, timeout: float = WAIT,
             proc: Optional[subprocess.Popen] = None) -> None:
        t0 = time.monotonic()
        while not cond():
            if proc is not None and proc.poll() is not None:
                raise AssertionError(f"node exited ({proc.returncode}) while waiting for {what}")
            if time.monotonic() - t0 > timeout:
                raise AssertionError(f"timed out after {timeout} s waiting for {what}")
            time.sleep(0.01)

    def diag_values(self, msg) -> dict[str, str]:
        (status,) = msg.status
        return {kv.key: kv.value for kv in status.values}

    def wait_diag(self, pred, after: float, timeout: float = WAIT, proc=None) -> dict[str, str]:
        """The first diagnostics report stamped after ``after`` (wall time) with ``pred(vals)``."""
        found: dict = {}

        def cond() -> bool:
            for m in reversed(self.snapshot("diag")):
                t = m.header.stamp.sec + m.header.stamp.nanosec * 1e-9
                if t <= after:
                    return False
                vals = self.diag_values(m)
                if pred(vals):
                    found.update(vals)
                    return True
            return False

        try:
            self.wait(cond, "matching diagnostics", timeout, proc)
        except AssertionError:
            last = self.snapshot("diag")
            raise AssertionError(f"diagnostics never matched; last: "
                                 f"{self.diag_values(last[-1]) if last else None}") from None
        return found

    def call(self, client, request, timeout: float = WAIT):
        assert client.wait_for_service(timeout_sec=timeout), f"service {client.srv_name} missing"
        fut = client.call_async(request)
        t0 = time.monotonic()
        while not fut.done():
            assert time.monotonic() - t0 < timeout, f"service {client.srv_name} timed out"
            time.sleep(0.01)
        return fut.result()

    def state(self, timeout: float = WAIT) -> int:
        return self.call(self.get_state, GetState.Request(), timeout).current_state.id

    def wait_active(self, proc: subprocess.Popen, log: Path, timeout: float = 120.0) -> None:
        """Wait for autostart to reach ACTIVE and for the node's inputs to be discovered."""
        t0 = time.monotonic()
        while True:
            assert proc.poll() is None, f"node exited early:\n{log.read_text()[-3000:]}"
            if self.get_state.wait_for_service(timeout_sec=0.5) and \
                    self.state() == State.PRIMARY_STATE_ACTIVE:
                break
            assert time.monotonic() - t0 < timeout, f"node never became active:\n{log.read_text()}"
        self.wait_inputs()

    def wait_inputs(self, timeout: float = WAIT) -> None:
        pubs = (self.pub_image, self.pub_info, self.pub_query, self.pub_text)
        t0 = time.monotonic()
        while not all(p.get_subscription_count() > 0 for p in pubs):
            assert time.monotonic() - t0 < timeout, "node inputs were never discovered"
            time.sleep(0.05)
        # Our output subscriptions must be matched too, or the first outputs could be missed.
        t0 = time.monotonic()
        while self.node.count_publishers("depth/image") == 0 or \
                self.node.count_publishers("answer") == 0:
            assert time.monotonic() - t0 < timeout, "node outputs were never discovered"
            time.sleep(0.05)

    def close(self) -> None:
        self.executor.shutdown(timeout_sec=1.0)
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.ctx)


def settled(expected_received: int) -> Callable[[dict], bool]:
    """Diagnostics predicate: every image sent so far is received and accounted for."""
    def pred(v: dict) -> bool:
        return int(v["frames_received"]) == expected_received and \
            int(v["frames_received"]) == int(v["frames_processed"]) + \
            int(v["frames_dropped"]) + int(v["frames_waiting_camera_info"])
    return pred


def launch(tmp_path_factory, offset: int, params: dict[str, str], points: bool = False):
    """(client, proc, log) for a fresh active node; the caller must call ``teardown``."""
    dom = domain_id(offset)
    log = tmp_path_factory.mktemp("node") / "depthvlm_node.log"
    proc = start_node(log, dom, params)
    client = Client(dom, points=points)
    try:
        client.wait_active(proc, log)
    except BaseException:
        teardown(client, proc, log)
        raise
    return client, proc, log


def teardown(client: Client, proc: subprocess.Popen, log: Path) -> None:
    client.close()
    stop_node(proc)
    if os.environ.get("DEPTHVLM_SHOW_NODE_LOG"):
        print(log.read_text())
