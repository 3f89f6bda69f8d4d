"""Live-ROS harness: what the tests, ``depthvlm demo`` and ``depthvlm perf`` share to run
``depthvlm_node`` and talk to it over real DDS.

What it offers:

* :func:`domain_id` -- the one rule for the ROS domain ids these users take: a range per user
  (:data:`DOMAIN_RANGES`, all of them ids Fast DDS maps to safe ports), a starting point that
  differs per process and purpose, and a lock file per id so that two processes on this machine
  never take the same id at the same time.
* :func:`node_command`, :func:`installed_params_file`, :func:`ros_env` -- the installed
  ``depthvlm_node`` launcher, its params file, and the environment of a process on a domain.
* :class:`NodeProcess` -- context manager: ``depthvlm_node`` as a child process with parameters,
  remaps, a log file and a thread cap; :meth:`NodeProcess.wait_active` waits for the lifecycle
  node to reach ACTIVE, :meth:`NodeProcess.stop` signals it and reports the exit code.
* :class:`Client` -- an rclpy node in a Context of its own, spun by an executor thread:
  publishers for the node's inputs (:data:`INPUTS`: ``image``, ``camera_info``, ``query``,
  ``query_text``); recorders for its outputs (:data:`OUTPUTS`) or any other topic; waits
  with timeouts (a condition, N matching messages, a diagnostics report); lifecycle service
  calls.
* :func:`stamp`, :func:`stamp_key`, :func:`image`, :func:`camera_info`,
  :func:`pipeline_values` -- messages built with :mod:`depthvlm_ros.ros.convert` and read back.

QoS comes from :mod:`depthvlm_ros.ros.qos`: camera inputs :data:`~.qos.RELIABLE_IMAGE`,
questions :data:`~.qos.REQUEST_REPLY`, every recorder :data:`~.qos.RECORDER`.
"""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import rclpy
from builtin_interfaces.msg import Time
from lifecycle_msgs.msg import State
from lifecycle_msgs.srv import ChangeState, GetState
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from std_msgs.msg import Header

from . import convert, qos
from ..core.camera import Intrinsics

__all__ = ["DOMAIN_RANGES", "INPUTS", "OUTPUTS", "DEFAULT_TIMEOUT_S", "NodeExited", "domain_id",
           "node_command", "installed_params_file", "ros_env", "NodeProcess", "Client", "stamp",
           "stamp_key", "image", "camera_info", "pipeline_values"]

#: Domain ids per user. Fast DDS puts domain ``d`` on UDP ports from ``7400 + 250 d``: ids up
#: to 101 stay below Linux's ephemeral ports (32768-60999) and 215-232 above them, so no other
#: program's outgoing connection can hold a port of ours. Domain 0, everyone's default, is left
#: to the user's own ROS tools.
DOMAIN_RANGES: dict[str, range] = {"test": range(1, 102), "demo": range(215, 224),
                                   "perf": range(224, 233)}

#: Recorder key -> (topic, message type as package/name) of the node's outputs.
OUTPUTS: dict[str, tuple[str, str]] = {
    "depth": ("depth/image", "sensor_msgs/Image"),
    "info": ("depth/camera_info", "sensor_msgs/CameraInfo"),
    "points": ("points", "sensor_msgs/PointCloud2"),
    "colorized": ("depth/colorized", "sensor_msgs/Image"),
    "answer": ("answer", "depthvlm_ros/SpatialAnswer"),
    "diag": ("/diagnostics", "diagnostic_msgs/DiagnosticArray"),
}

#: Input name -> (topic, message type, QoS) of the node's inputs.
INPUTS: dict[str, tuple[str, str, Any]] = {
    "image": ("image", "sensor_msgs/Image", qos.RELIABLE_IMAGE),
    "camera_info": ("camera_info", "sensor_msgs/CameraInfo", qos.RELIABLE_IMAGE),
    "query": ("query", "depthvlm_ros/SpatialQuery", qos.REQUEST_REPLY),
    "query_text": ("query_text", "std_msgs/String", qos.REQUEST_REPLY),
}

#: How long a wait gives the node by default: generous, for 2 shared cores and a CPU model.
DEFAULT_TIMEOUT_S = 30.0

_NODE = "/depthvlm_node"
_taken: dict[tuple[str, str], int] = {}
_locks: dict[int, Any] = {}  # open lock files: the reservation lasts as long as this process


class NodeExited(RuntimeError):
    """``depthvlm_node`` exited while something was waiting for it."""


# ------------------------------------------------------------------------------------------
# domain ids


def domain_id(purpose: str, user: str = "test") -> int:
    """The ROS domain id of ``purpose`` for one of the :data:`DOMAIN_RANGES` users.

    The first candidate is ``first + (pid + crc32(purpose)) % size`` of the user's range; the
    next ones follow it round the range until one is free. An id is taken with a lock file in
    the temp folder, held until this process exits, so processes on this machine (parallel test
    runs, a demo beside them) never share one; within a process each purpose gets its own and
    keeps it. When every id is taken (or nothing can be locked) the first candidate is used.

    Args:
        purpose: what the id is for (e.g. a test module); the same purpose gives the same id.
        user: ``test``, ``demo`` or ``perf``.
    """
    key = (user, str(purpose))
    if key not in _taken:
        ids = DOMAIN_RANGES[user]
        start = (os.getpid() + zlib.crc32(key[1].encode())) % len(ids)
        candidates = [ids[(start + i) % len(ids)] for i in range(len(ids))]
        _taken[key] = next((d for d in candidates if _reserve(d)), candidates[0])
    return _taken[key]


def _reserve(domain: int) -> bool:
    if domain in _locks:
        return False  # another purpose of this process has it
    folder = Path(tempfile.gettempdir()) / "depthvlm_ros_domains"
    try:
        folder.mkdir(exist_ok=True)
        fh = open(folder / f"{domain}.lock", "a")  # noqa: SIM115 - kept open: it is the lock
    except OSError:
        return True  # nowhere to coordinate: the formula alone decides
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        fh.close()
        return False
    _locks[domain] = fh
    return True


# ------------------------------------------------------------------------------------------
# the node process


def _install_prefix() -> Path:
    from ament_index_python.packages import PackageNotFoundError, get_package_prefix

    try:
        return Path(get_package_prefix("depthvlm_ros"))
    except PackageNotFoundError:
        raise FileNotFoundError("depthvlm_ros install space is not on AMENT_PREFIX_PATH "
                                "(build with scripts/build_ros.sh, then source "
                                "scripts/ros_env.sh)") from None


def node_command() -> list[str]:
    """The installed ``depthvlm_node`` launcher, run with this interpreter.

    Raises:
        FileNotFoundError: the install space is not on ``AMENT_PREFIX_PATH`` or is incomplete.
    """
    exe = _install_prefix() / "lib" / "depthvlm_ros" / "depthvlm_node"
    if not exe.is_file():
        raise FileNotFoundError(f"{exe} is missing: rebuild with scripts/build_ros.sh")
    return [sys.executable, str(exe)]


def installed_params_file() -> Path:
    """The params file the package installs (``share/depthvlm_ros/config/depthvlm.yaml``).

    Raises:
        FileNotFoundError: not installed.
    """
    path = _install_prefix() / "share" / "depthvlm_ros" / "config" / "depthvlm.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: rebuild with scripts/build_ros.sh")
    return path


def ros_env(domain: int, threads: int | None = None) -> dict[str, str]:
    """Environment of a child process (node, player) on ``domain``, this host only.

    The package this process imported goes first on ``PYTHONPATH``, so the child runs the same
    code (``depthvlm_ros`` extends its own ``__path__``, so the messages still come from the
    install space). ``threads`` caps torch's threads (``OMP_NUM_THREADS``); None inherits.
    """
    import depthvlm_ros

    root = str(Path(depthvlm_ros.__file__).resolve().parent.parent)
    path = os.environ.get("PYTHONPATH", "")
    env = dict(os.environ, ROS_DOMAIN_ID=str(domain), PYTHONUNBUFFERED="1",
               ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST", RCUTILS_COLORIZED_OUTPUT="0",
               PYTHONPATH=root + (os.pathsep + path if path else ""))
    if threads is not None:
        env["OMP_NUM_THREADS"] = str(threads)
    return env


def _param(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


class NodeProcess:
    """``depthvlm_node`` as a child process; a context manager that starts and stops it.

    Args:
        domain: its ROS_DOMAIN_ID.
        params: ROS parameters (``name: value``), after ``params_file``.
        ros_args: more ``--ros-args`` arguments (remaps such as ``-r image:=/cam/image``).
        log: file for its stdout and stderr (None: discarded).
        threads: torch threads (``OMP_NUM_THREADS``); None inherits this process's setting.
        params_file: a ``--params-file`` to load first.
        stop_signal: what :meth:`stop` sends by default (the node shuts down cleanly on both
            SIGINT and SIGTERM).
        stop_timeout: seconds :meth:`stop` waits before it kills the node.
    """

    def __init__(self, domain: int, params: Mapping[str, Any] | None = None,
                 ros_args: Sequence[str] = (), log: str | os.PathLike | None = None,
                 threads: int | None = 1, params_file: str | os.PathLike | None = None,
                 stop_signal: int = signal.SIGINT, stop_timeout: float = 15.0) -> None:
        self.domain, self.log, self.threads = domain, (Path(log) if log else None), threads
        self.stop_signal, self.stop_timeout = stop_signal, stop_timeout
        self.command = node_command() + ["--ros-args"]
        if params_file is not None:
            self.command += ["--params-file", str(params_file)]
        for name, value in (params or {}).items():
            self.command += ["-p", f"{name}:={_param(value)}"]
        self.command += list(ros_args)
        self.proc: subprocess.Popen | None = None
        self.started_at = 0.0

    def start(self) -> "NodeProcess":
        out = open(self.log, "w") if self.log else subprocess.DEVNULL  # noqa: SIM115
        try:
            self.proc = subprocess.Popen(self.command, stdout=out, stderr=subprocess.STDOUT,
                                         env=ros_env(self.domain, self.threads))
        finally:
            if out is not subprocess.DEVNULL:
                out.close()  # the child holds its own copy
        self.started_at = time.monotonic()
        return self

    def __enter__(self) -> "NodeProcess":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def returncode(self) -> int | None:
        return self.proc.returncode if self.proc else None

    def poll(self) -> int | None:
        return self.proc.poll()

    def uptime(self) -> float:
        """Seconds since the process was started."""
        return time.monotonic() - self.started_at

    def log_text(self) -> str:
        return self.log.read_text() if self.log and self.log.is_file() else ""

    def _exited(self, what: str) -> NodeExited:
        where = f" (log: {self.log})" if self.log else ""
        return NodeExited(f"depthvlm_node exited with {self.proc.returncode} while {what}{where}")

    def wait_active(self, client: "Client", timeout: float = 120.0) -> float:
        """Wait until the lifecycle node is ACTIVE (autostart: it loads its model and activates
        itself); returns the seconds since the process started.

        Raises:
            NodeExited: the process ended first.
            TimeoutError: not active within ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        while True:
            if self.poll() is not None:
                raise self._exited("starting")
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"depthvlm_node did not become active in {timeout:.0f} s")
            if client.get_state.wait_for_service(timeout_sec=min(0.5, left)):
                # A node busy loading its model answers late: ask again rather than fail.
                reply = client.try_call(client.get_state, GetState.Request(), min(5.0, left))
                if reply is not None and reply.current_state.id == State.PRIMARY_STATE_ACTIVE:
                    return self.uptime()
                time.sleep(0.1)

    def stop(self, sig: int | None = None, timeout: float | None = None) -> int | None:
        """Signal the node (default :attr:`stop_signal`) and wait for it; kill it after
        ``timeout`` (default :attr:`stop_timeout`). Returns its exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(self.stop_signal if sig is None else sig)
            try:
                self.proc.wait(self.stop_timeout if timeout is None else timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode


# ------------------------------------------------------------------------------------------
# messages


def stamp(sec: int, nanosec: int = 0) -> Time:
    return Time(sec=int(sec), nanosec=int(nanosec))


def stamp_key(header) -> tuple[int, int]:
    """``(sec, nanosec)`` of a message header."""
    return int(header.stamp.sec), int(header.stamp.nanosec)


def image(rgb, st: Time, frame_id: str = "", encoding: str = "rgb8"):
    """A ``sensor_msgs/Image`` of ``rgb`` stamped ``st`` (see :func:`.convert.rgb_to_msg`)."""
    return convert.rgb_to_msg(rgb, Header(stamp=st, frame_id=frame_id), encoding=encoding)


def camera_info(intr: Intrinsics, st: Time, frame_id: str = ""):
    """A distortion-free ``sensor_msgs/CameraInfo`` of ``intr`` stamped ``st``."""
    return convert.intrinsics_to_camera_info(intr, Header(stamp=st, frame_id=frame_id))


def pipeline_values(msg, camera: str = "") -> dict[str, str] | None:
    """The key/values of the depth-pipeline status of ``camera`` ('' = the unnamed camera) in
    a ``DiagnosticArray`` (or None)."""
    suffix = "depth pipeline" + (f" {camera}" if camera else "")
    for status in msg.status:
        if status.name.endswith(suffix):
            return {kv.key: kv.value for kv in status.values}
    return None


def _message_type(name: str):
    import importlib

    package, cls = name.split("/")
    return getattr(importlib.import_module(f"{package}.msg"), cls)


# ------------------------------------------------------------------------------------------
# the client


class Client:
    """This process's rclpy node: inputs for ``depthvlm_node`` and recorders of its outputs.

    A context manager (closes on exit). Recorders run in the executor thread; each stores
    ``keep(message)`` (the message itself by default), computed before any lock is taken, so
    an arrival time taken in ``keep`` is not delayed by a waiting reader.

    Args:
        domain: ROS domain id.
        name: name of this rclpy node.
        record: :data:`OUTPUTS` keys to record from the start (more with :meth:`record`).
        keep: per key, what to store of each message.
        raw: subscribe to serialized messages (``keep`` then gets CDR bytes).
        inputs: which of the four input publishers to create.
        node: fully qualified name of the ``depthvlm_node`` to call lifecycle services on.
        frame_id: frame of the messages :meth:`send_frame` builds.
    """

    def __init__(self, domain: int, name: str = "depthvlm_client",
                 record: Iterable[str] = ("depth", "info", "answer", "diag"),
                 keep: Mapping[str, Callable[[Any], Any]] | None = None, raw: bool = False,
                 inputs: Iterable[str] = ("image", "camera_info", "query", "query_text"),
                 node: str = _NODE, frame_id: str = "") -> None:
        self.frame_id = frame_id
        self.ctx = Context()
        rclpy.init(context=self.ctx, domain_id=domain)
        self.node = rclpy.create_node(name, context=self.ctx)
        self._cond = threading.Condition(threading.RLock())
        self._got: dict[str, list] = {}
        for key in record:
            self.record(key, keep=(keep or {}).get(key), raw=raw)
        n = self.node
        #: Input name -> publisher (also as ``pub_image``, ``pub_info``, ``pub_query``,
        #: ``pub_text``).
        self.publishers = {name: n.create_publisher(_message_type(INPUTS[name][1]),
                                                    INPUTS[name][0], INPUTS[name][2])
                           for name in inputs}
        self.pub_image = self.publishers.get("image")
        self.pub_info = self.publishers.get("camera_info")
        self.pub_query = self.publishers.get("query")
        self.pub_text = self.publishers.get("query_text")
        self.get_state = n.create_client(GetState, f"{node}/get_state")
        self.change_state = n.create_client(ChangeState, f"{node}/change_state")
        self.executor = SingleThreadedExecutor(context=self.ctx)
        self.executor.add_node(n)
        self.thread = threading.Thread(target=self._spin, daemon=True)
        self.thread.start()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _spin(self) -> None:
        try:
            self.executor.spin()
        except Exception:  # noqa: BLE001 - the context is shut down under the spinning thread
            pass

    def close(self) -> None:
        self.executor.shutdown(timeout_sec=1.0)
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.ctx)

    # -- recording

    def record(self, key: str, keep: Callable[[Any], Any] | None = None, raw: bool = False,
               topic: str | None = None, msg_type: Any = None) -> None:
        """Record ``topic`` (default: the :data:`OUTPUTS` topic of ``key``) under ``key``."""
        if topic is None:
            topic, type_name = OUTPUTS[key]
            msg_type = _message_type(type_name)
        store = keep or (lambda m: m)
        with self._cond:
            self._got.setdefault(key, [])

        def on_message(msg) -> None:
            item = store(msg)
            with self._cond:
                self._got[key].append(item)
                self._cond.notify_all()

        self.node.create_subscription(msg_type, topic, on_message, qos.RECORDER, raw=raw)

    def messages(self, key: str) -> list:
        """A copy of what was recorded under ``key``, oldest first."""
        with self._cond:
            return list(self._got[key])

    def clear(self, key: str) -> None:
        with self._cond:
            self._got[key].clear()

    # -- waiting

    def wait(self, cond: Callable[[], Any], what: str, timeout: float = DEFAULT_TIMEOUT_S,
             proc=None) -> Any:
        """Wait until ``cond()`` is truthy and return its value.

        ``cond`` runs under the recorders' lock (it may read :meth:`messages`) each time a
        message is recorded, and at least every 50 ms.

        Raises:
            NodeExited: ``proc`` (anything with ``poll()``) ended first.
            TimeoutError: not within ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                value = cond()
                if value:
                    return value
                if proc is not None and proc.poll() is not None:
                    raise NodeExited(f"depthvlm_node exited with {proc.returncode} while "
                                     f"waiting for {what}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}")
                self._cond.wait(min(left, 0.05))

    def wait_for(self, key: str, pred: Callable[[Any], bool] = lambda m: True, count: int = 1,
                 timeout: float = DEFAULT_TIMEOUT_S, proc=None) -> list:
        """Wait for ``count`` recorded ``key`` messages with ``pred``; returns all such."""
        def hits():
            found = [m for m in self.messages(key) if pred(m)]
            return found if len(found) >= count else None
        try:
            return self.wait(hits, f"{count} {key} message(s)", timeout, proc)
        except TimeoutError:
            got = len([m for m in self.messages(key) if pred(m)])
            raise TimeoutError(f"timed out after {timeout:g} s waiting for {count} {key} "
                               f"message(s); got {got}") from None

    def diag_values(self, msg=None, camera: str = "") -> dict[str, str]:
        """The depth-pipeline values of ``camera`` in a recorded diagnostics message (default:
        the last)."""
        if msg is None:
            msgs = self.messages("diag")
            assert msgs, "no diagnostics received"
            msg = msgs[-1]
        values = pipeline_values(msg, camera)
        assert values is not None, f"no depth pipeline status in {msg}"
        return values

    def wait_diag(self, pred: Callable[[dict], bool], after: float | None = None,
                  timeout: float = DEFAULT_TIMEOUT_S, proc=None,
                  camera: str = "") -> dict[str, str]:
        """The newest diagnostics report of ``camera`` with ``pred(values)``, among those
        stamped after ``after`` (wall time; None: any). Needs ``diag`` recorded as whole
        messages."""
        def newest_match():
            for m in reversed(self.messages("diag")):
                if after is not None and \
                        m.header.stamp.sec + m.header.stamp.nanosec * 1e-9 <= after:
                    return None
                values = self.diag_values(m, camera)
                if pred(values):
                    return values
            return None
        try:
            return self.wait(newest_match, "matching diagnostics", timeout, proc)
        except TimeoutError:
            last = self.messages("diag")
            raise TimeoutError(f"diagnostics never matched; last: "
                               f"{self.diag_values(last[-1], camera) if last else None}"
                               ) from None

    def wait_connected(self, inputs: Iterable[str] | None = None,
                       outputs: Iterable[str] = ("depth/image", "answer"),
                       timeout: float = DEFAULT_TIMEOUT_S) -> None:
        """Wait until the node subscribes to our ``inputs`` (default: all four; it does only
        while active) and publishes ``outputs``, so that nothing sent or published is missed."""
        pubs = [self.publishers[k] for k in (self.publishers if inputs is None else inputs)]
        outputs = tuple(outputs)
        self.wait(lambda: all(p.get_subscription_count() > 0 for p in pubs) and
                  all(self.node.count_publishers(t) > 0 for t in outputs),
                  "the node's topics to be discovered", timeout)

    # -- cameras of a multi-camera node

    def add_camera(self, name: str, record: Iterable[str] = ("depth",),
                   keep: Mapping[str, Callable[[Any], Any]] | None = None) -> None:
        """Talk to camera ``name`` of a node serving several cameras: publishers of its inputs
        (``<name>/image``, ``<name>/camera_info``, ``<name>/query``, ``<name>/query_text``,
        under those keys in :attr:`publishers`) and recorders of its :data:`OUTPUTS` ``record``
        (under ``<name>/<key>``)."""
        for key in ("image", "camera_info", "query", "query_text"):
            topic, type_name, profile = INPUTS[key]
            self.publishers[f"{name}/{key}"] = self.node.create_publisher(
                _message_type(type_name), f"{name}/{topic}", profile)
        for key in record:
            topic, type_name = OUTPUTS[key]
            self.record(f"{name}/{key}", keep=(keep or {}).get(key), topic=f"{name}/{topic}",
                        msg_type=_message_type(type_name))

    # -- sending

    def send_frame(self, rgb, intr_or_info, sec: int, nanosec: int = 0, encoding: str = "rgb8",
                   info_first: bool = True, frame_id: str | None = None, camera: str = ""):
        """Publish an image and its camera_info (built from intrinsics, or a CameraInfo that
        gets the image's header; None sends none); returns the image message.

        ``info_first=False`` sends the camera_info 0.3 s after the image. ``camera`` names a
        camera added with :meth:`add_camera` ('' = the plain ``image`` / ``camera_info``).
        """
        pub_image = self.publishers[f"{camera}/image"] if camera else self.pub_image
        pub_info = self.publishers[f"{camera}/camera_info"] if camera else self.pub_info
        st, frame = stamp(sec, nanosec), self.frame_id if frame_id is None else frame_id
        img = image(rgb, st, frame, encoding)
        info = (camera_info(intr_or_info, st, frame) if isinstance(intr_or_info, Intrinsics)
                else intr_or_info)
        if info is not None:
            info.header.stamp, info.header.frame_id = st, frame
        if info_first and info is not None:
            pub_info.publish(info)
        pub_image.publish(img)
        if not info_first and info is not None:
            time.sleep(0.3)
            pub_info.publish(info)
        return img

    # -- lifecycle services

    def try_call(self, client, request, timeout: float):
        """Call a service; its reply, or None when none came within ``timeout`` seconds."""
        fut = client.call_async(request)
        deadline = time.monotonic() + timeout
        while not fut.done():
            if time.monotonic() > deadline:
                return None
            time.sleep(0.01)
        return fut.result()

    def call(self, client, request, timeout: float = DEFAULT_TIMEOUT_S):
        """Call a service and return its reply.

        Raises:
            TimeoutError: the service is missing or did not reply within ``timeout`` seconds.
        """
        if not client.wait_for_service(timeout_sec=timeout):
            raise TimeoutError(f"service {client.srv_name} missing")
        reply = self.try_call(client, request, timeout)
        if reply is None:
            raise TimeoutError(f"service {client.srv_name} timed out")
        return reply

    def state(self, timeout: float = DEFAULT_TIMEOUT_S) -> int:
        """The node's lifecycle state id (``lifecycle_msgs/State``)."""
        return self.call(self.get_state, GetState.Request(), timeout).current_state.id

    def transition(self, transition_id: int, timeout: float = DEFAULT_TIMEOUT_S) -> bool:
        """Ask for a lifecycle transition (``lifecycle_msgs/Transition`` id); its success."""
        req = ChangeState.Request()
        req.transition.id = transition_id
        return bool(self.call(self.change_state, req, timeout).success)
