"""Checks of the colcon install space made by scripts/build_ros.sh.

Skipped until install/ exists (run `bash scripts/build_ros.sh`). Every check runs in a fresh
bash that sources scripts/ros_env.sh, the way a user would, so a stale interpreter state in the
test process cannot hide a broken environment script.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# DEPTHVLM_BUILD_SUFFIX selects a second install space (install-jazzy/, see scripts/build_ros.sh).
INSTALL = REPO / ("install" + os.environ.get("DEPTHVLM_BUILD_SUFFIX", ""))
PKG_PREFIX = INSTALL / "depthvlm_ros"

pytestmark = pytest.mark.skipif(
    not (INSTALL / "setup.bash").is_file() or not PKG_PREFIX.is_dir(),
    reason="no colcon install space; build it with: bash scripts/build_ros.sh",
)


def _run_in_env(code: str, cwd: Path = Path("/"), extra_env: dict | None = None,
                timeout: float = 120.0) -> dict:
    """Run Python ``code`` after `source scripts/ros_env.sh`; it must print one JSON line last."""
    env = {k: v for k, v in os.environ.items()
           # A clean slate: the test runner's own Python/ROS paths must not leak in.
           if k not in ("PYTHONPATH", "AMENT_PREFIX_PATH", "CMAKE_PREFIX_PATH", "COLCON_PREFIX_PATH",
                        "_ROS_WHEELS_BOOTSTRAP_COMPLETE")}
    env.update(extra_env or {})
    script = f'source "{REPO}/scripts/ros_env.sh" && cd "{cwd}" && exec python - '
    proc = subprocess.run(["bash", "-c", script], input=code, text=True, capture_output=True,
                          env=env, timeout=timeout)
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


FIELD_CHECK = r"""
import json, math
import depthvlm_ros
from depthvlm_ros.msg import SpatialAnswer, SpatialQuery
from geometry_msgs.msg import Point
from rclpy.serialization import deserialize_message, serialize_message

q = SpatialQuery(id="q1", text="how far is the door?", pixels=[Point(x=10.5, y=20.0)])
q.header.stamp.sec = 7
q.header.frame_id = "cam"
q2 = deserialize_message(serialize_message(q), SpatialQuery)
a = SpatialAnswer(id="q1", question=q.text, answer="2.4 m", depths=[2.4, float("nan")],
                  points=[Point(x=0.1, y=0.2, z=2.4), Point(x=math.nan, y=math.nan, z=math.nan)],
                  status=SpatialAnswer.STATUS_BUSY, status_reason="busy", latency=0.25)
a2 = deserialize_message(serialize_message(a), SpatialAnswer)
print(json.dumps({
    "init_file": depthvlm_ros.__file__,
    "init_extends_path": "extend_path" in open(depthvlm_ros.__file__).read(),
    "path": list(depthvlm_ros.__path__),
    "msg_file": __import__("depthvlm_ros.msg", fromlist=["x"]).__file__,
    "query_fields": SpatialQuery.get_fields_and_field_types(),
    "answer_fields": SpatialAnswer.get_fields_and_field_types(),
    "constants": [SpatialAnswer.STATUS_OK, SpatialAnswer.STATUS_BUSY, SpatialAnswer.STATUS_ERROR],
    "query_back": [q2.id, q2.text, q2.pixels[0].x, q2.pixels[0].y, q2.header.stamp.sec, q2.header.frame_id],
    "answer_back": [a2.id, a2.question, a2.answer, list(a2.depths)[0], math.isnan(a2.depths[1]),
                    a2.points[0].z, math.isnan(a2.points[1].x), a2.status, a2.status_reason,
                    a2.latency],
    "rmw": __import__("os").environ.get("RMW_IMPLEMENTATION"),
}))
"""


def test_interfaces_from_install_space_alone():
    out = _run_in_env(FIELD_CHECK)
    site = str(PKG_PREFIX / "lib")
    assert out["init_file"].startswith(site), out["init_file"]
    assert out["msg_file"].startswith(site)
    assert out["init_extends_path"], "the installed depthvlm_ros/__init__.py is not ours"
    assert out["query_fields"] == {"header": "std_msgs/Header", "id": "string", "text": "string",
                                   "pixels": "sequence<geometry_msgs/Point>",
                                   "regions": "sequence<sensor_msgs/RegionOfInterest>",
                                   "camera": "string"}
    assert out["answer_fields"] == {
        "header": "std_msgs/Header", "id": "string", "question": "string", "answer": "string",
        "source": "uint8", "model_answer": "string", "pixels": "sequence<geometry_msgs/Point>",
        "depths": "sequence<float>", "points": "sequence<geometry_msgs/Point>",
        "regions": "sequence<depthvlm_ros/RegionMeasurement>", "status": "uint8",
        "status_reason": "string", "latency": "float", "camera": "string"}
    assert out["constants"] == [0, 1, 2]
    assert out["query_back"] == ["q1", "how far is the door?", 10.5, 20.0, 7, "cam"]
    assert out["answer_back"][:3] == ["q1", "how far is the door?", "2.4 m"]
    assert abs(out["answer_back"][3] - 2.4) < 1e-6 and out["answer_back"][4]
    assert out["answer_back"][5:] == [2.4, True, 1, "busy", 0.25]
    assert out["rmw"] == "rmw_fastrtps_cpp"


def test_interfaces_with_source_tree_first():
    """Developer layout: live sources first on sys.path, generated messages from install/."""
    out = _run_in_env(FIELD_CHECK, extra_env={"DEPTHVLM_ROS_SOURCE": "1"})
    assert out["init_file"] == str(REPO / "depthvlm_ros" / "__init__.py")
    assert out["msg_file"].startswith(str(PKG_PREFIX / "lib"))
    assert out["path"][0] == str(REPO / "depthvlm_ros") and len(out["path"]) >= 2
    core = _run_in_env("import json, depthvlm_ros.core.camera as c; print(json.dumps(c.__file__))",
                       extra_env={"DEPTHVLM_ROS_SOURCE": "1"})
    assert core == str(REPO / "depthvlm_ros" / "core" / "camera.py")


PUBSUB = r"""
import json, time
import rclpy
from depthvlm_ros.msg import SpatialQuery
from geometry_msgs.msg import Point

rclpy.init()
node = rclpy.create_node("depthvlm_build_check")
got = []
node.create_subscription(SpatialQuery, "build_check_query", got.append, 10)
pub = node.create_publisher(SpatialQuery, "build_check_query", 10)
deadline = time.monotonic() + 20.0
while not got and time.monotonic() < deadline:
    pub.publish(SpatialQuery(id="ping", text="t", pixels=[Point(x=1.0, y=2.0)]))
    rclpy.spin_once(node, timeout_sec=0.1)
node.destroy_node()
rclpy.shutdown()
print(json.dumps([m.id for m in got[:1]] + [m.pixels[0].y for m in got[:1]]))
"""


def test_generated_type_support_works_over_rmw():
    """The compiled C type support loads and carries a message through the middleware."""
    from depthvlm_ros.ros.harness import domain_id

    env = {"ROS_DOMAIN_ID": str(domain_id("ros_build")),
           "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"}
    assert _run_in_env(PUBSUB, extra_env=env) == ["ping", 2.0]


def test_installed_files():
    node = PKG_PREFIX / "lib" / "depthvlm_ros" / "depthvlm_node"
    assert node.is_file() and os.access(node, os.X_OK)
    text = node.read_text()
    assert "depthvlm_ros.ros.node" in text
    interpreter = text.splitlines()[0][2:].strip()
    assert text.startswith("#!") and os.access(interpreter, os.X_OK), interpreter
    share = PKG_PREFIX / "share" / "depthvlm_ros"
    assert (share / "package.xml").is_file()
    assert (share / "msg" / "SpatialQuery.msg").is_file()
    assert (share / "msg" / "SpatialAnswer.msg").is_file()
    for folder in ("launch", "config"):
        src = REPO / folder
        if src.is_dir() and any(src.iterdir()):
            names = {p.name for p in src.iterdir() if p.is_file()}
            assert names <= {p.name for p in (share / folder).iterdir()}, folder
    index = PKG_PREFIX / "share" / "ament_index" / "resource_index"
    assert (index / "packages" / "depthvlm_ros").is_file()
    interfaces = (index / "rosidl_interfaces" / "depthvlm_ros").read_text().split()
    assert {"msg/SpatialQuery.msg", "msg/SpatialAnswer.msg"} <= set(interfaces)
