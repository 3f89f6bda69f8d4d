"""config/depthvlm.yaml, launch/depthvlm.launch.xml and the node's parameter declarations all
follow DepthVLMConfig, the single source of defaults.

The launch file is checked structurally (launch / launch_ros are not installable from PyPI); the
live test starts the node with the same params file, so rclpy's own YAML parser reads it there.
"""

from __future__ import annotations

import dataclasses
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml

from depthvlm_ros.core.config import DepthVLMConfig, field_specs

ROOT = Path(__file__).resolve().parents[1]
YAML_PATH = ROOT / "config" / "depthvlm.yaml"
LAUNCH_PATH = ROOT / "launch" / "depthvlm.launch.xml"


# ------------------------------------------------------------------------------------------
# YAML


def _yaml_params() -> dict:
    doc = yaml.safe_load(YAML_PATH.read_text())
    assert list(doc) == ["/**"], "parameters must apply to any node name (/**)"
    assert list(doc["/**"]) == ["ros__parameters"]
    return doc["/**"]["ros__parameters"]


def test_yaml_has_every_field_with_its_default_and_type():
    params = _yaml_params()
    specs = {s.name: s for s in field_specs()}
    assert set(params) == set(specs), (
        f"missing in YAML: {sorted(set(specs) - set(params))}; "
        f"unknown in YAML: {sorted(set(params) - set(specs))}")
    for name, value in params.items():
        spec = specs[name]
        # ROS parameters are statically typed: 1000 for a double parameter is rejected at
        # start-up, so the YAML must spell floats as floats (and bools as bools).
        assert type(value) is spec.type, f"{name}: {value!r} is {type(value).__name__}, " \
                                         f"the dataclass says {spec.type.__name__}"
        assert value == spec.default, f"{name}: YAML {value!r} != default {spec.default!r}"


def test_yaml_order_follows_the_dataclass_and_builds_a_valid_config():
    params = _yaml_params()
    assert list(params) == [f.name for f in dataclasses.fields(DepthVLMConfig)]
    assert DepthVLMConfig.from_mapping(params) == DepthVLMConfig()


def test_yaml_comments_carry_the_descriptions():
    text = YAML_PATH.read_text()
    flat = re.sub(r"\s*\n\s*#\s*", " ", text)
    for spec in field_specs():
        assert spec.description.split(".")[0][:40] in flat, spec.name


# ------------------------------------------------------------------------------------------
# launch file


@pytest.fixture(scope="module")
def launch_root():
    return ET.parse(LAUNCH_PATH).getroot()


def _args(root) -> dict[str, ET.Element]:
    return {a.get("name"): a for a in root.findall("arg")}


def test_launch_declares_the_documented_arguments(launch_root):
    args = _args(launch_root)
    for name in ("model_path", "namespace", "image", "camera_info", "query", "query_text",
                 "use_sim_time", "params_file"):
        assert name in args, name
        assert args[name].get("description"), f"arg {name} needs a description"
    assert args["model_path"].get("default") == DepthVLMConfig().model_path
    assert args["use_sim_time"].get("default") == "false"
    assert args["params_file"].get("default") == \
        "$(find-pkg-share depthvlm_ros)/config/depthvlm.yaml"


def test_launch_node_uses_every_argument(launch_root):
    nodes = launch_root.findall("node")
    assert len(nodes) == 1
    node = nodes[0]
    assert node.get("pkg") == "depthvlm_ros" and node.get("exec") == "depthvlm_node"
    assert node.get("namespace") == "$(var namespace)"
    text = ET.tostring(launch_root, encoding="unicode")
    for name in _args(launch_root):
        assert f"$(var {name})" in text, f"launch arg {name} is declared but not used"
    params = node.findall("param")
    assert params[0].get("from") == "$(var params_file)", "the params file must come first so " \
        "that the explicit params after it override it"
    named = {p.get("name"): p.get("value") for p in params[1:]}
    assert named == {"model_path": "$(var model_path)", "use_sim_time": "$(var use_sim_time)"}
    remaps = {r.get("from"): r.get("to") for r in node.findall("remap")}
    # The node's relative topic names (DESIGN.md contract), each remappable from an argument.
    inputs = {t: f"$(var {t})" for t in ("image", "camera_info", "query", "query_text")}
    outputs = {t: f"$(var {t.replace('/', '_')})" for t in (
        "depth/image", "depth/camera_info", "points", "answer", "depth/colorized")}
    assert remaps == {**inputs, **outputs}


def test_launch_and_config_are_installed():
    cmake = (ROOT / "CMakeLists.txt").read_text()
    assert "launch config" in cmake and "share/${PROJECT_NAME}" in cmake
    assert YAML_PATH.is_file() and LAUNCH_PATH.is_file()


# ------------------------------------------------------------------------------------------
# the node's declarations (in-process, no model load, no DDS traffic needed)

rclpy = pytest.importorskip("rclpy")
try:
    from depthvlm_ros.msg import SpatialAnswer  # noqa: F401  (built by colcon)
    _HAVE_MSGS = True
except ImportError:
    _HAVE_MSGS = False

needs_msgs = pytest.mark.skipif(not _HAVE_MSGS, reason="depthvlm_ros.msg not built: run "
                                "scripts/build_ros.sh and source scripts/ros_env.sh")


@pytest.fixture
def make_node():
    from rclpy.context import Context
    from rclpy.parameter import Parameter

    from depthvlm_ros.ros.harness import domain_id
    from depthvlm_ros.ros.node import DepthVLMNode

    ctx = Context()
    # A private domain: nothing here should meet other tests' traffic.
    rclpy.init(context=ctx, domain_id=domain_id("config_yaml_launch"))
    made = []

    def factory(**overrides):
        params = [Parameter("autostart", value=False)] + \
            [Parameter(k, value=v) for k, v in overrides.items()]
        node = DepthVLMNode(context=ctx, parameter_overrides=params)
        made.append(node)
        return node

    yield factory
    for node in made:
        node.destroy_node()
    rclpy.shutdown(context=ctx)


@needs_msgs
def test_node_declares_one_parameter_per_field(make_node):
    from rcl_interfaces.msg import ParameterType

    node = make_node()
    kinds = {bool: ParameterType.PARAMETER_BOOL, int: ParameterType.PARAMETER_INTEGER,
             float: ParameterType.PARAMETER_DOUBLE, str: ParameterType.PARAMETER_STRING}
    for spec in field_specs():
        assert node.has_parameter(spec.name), spec.name
        desc = node.describe_parameter(spec.name)
        assert desc.description == spec.description
        assert desc.type == kinds[spec.type], spec.name
        if spec.name != "autostart":
            assert node.get_parameter(spec.name).value == spec.default
        if spec.range and spec.type is float:
            (r,) = desc.floating_point_range
            assert (r.from_value, r.to_value) == spec.range
        elif spec.range and spec.type is int:
            (r,) = desc.integer_range
            assert (r.from_value, r.to_value, r.step) == (*spec.range, 1)
        if spec.choices:
            assert all(c in desc.additional_constraints for c in spec.choices)
    assert node.describe_parameter("autostart").read_only


@needs_msgs
def test_bad_override_fails_configure_without_crashing(make_node):
    from rclpy.lifecycle import TransitionCallbackReturn

    # Wrong type (int for a double) and out of range: the node is constructed with defaults,
    # and configure fails naming the parameters.
    node = make_node(max_depth=5, frame_history=1000)
    assert node.get_parameter("max_depth").value == 100.0
    assert node.trigger_configure() == TransitionCallbackReturn.FAILURE
    # Fixing them clears the errors; an inconsistent pair is still caught by validate().
    from rclpy.parameter import Parameter

    res = node.set_parameters([Parameter("max_depth", value=0.001)])
    assert not res[0].successful and "min_depth" in res[0].reason
    res = node.set_parameters([Parameter("max_depth", value=5.0),
                               Parameter("frame_history", value=8)])
    assert all(r.successful for r in res)
    assert not node._param_errors


@needs_msgs
def test_inconsistent_values_fail_configure(make_node):
    from rclpy.lifecycle import TransitionCallbackReturn

    node = make_node(min_depth=50.0, max_depth=10.0, dtype="float64")
    assert node.trigger_configure() == TransitionCallbackReturn.FAILURE


@needs_msgs
def test_ranges_are_enforced_by_ros(make_node):
    from rclpy.parameter import Parameter

    node = make_node()
    for name, bad in (("query_queue_size", 0), ("fallback_hfov_deg", 180.0),
                      ("image_qos", "fast"), ("device", "tpu")):
        (res,) = node.set_parameters([Parameter(name, value=bad)])
        assert not res.successful, name
    (res,) = node.set_parameters([Parameter("autostart", value=True)])
    assert not res.successful and "read-only" in res.reason


@needs_msgs
def test_pipeline_failure_still_answers_the_question(make_node):
    """An exception that is not an InputError (CUDA out of memory, a runtime failure in the
    model) must still give the question its one answer, with the reason, and be counted."""
    import numpy as np
    from rclpy.lifecycle import TransitionCallbackReturn
    from std_msgs.msg import Header

    from depthvlm_ros.msg import SpatialAnswer
    from depthvlm_ros.core.camera import Intrinsics
    from depthvlm_ros.core.scheduling import HeldFrame, QueryJob

    node = make_node()
    assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
    sent = []
    node._pubs["answer"].publish = sent.append

    class OutOfMemory(RuntimeError):
        pass

    class FailingPipeline:
        def answer(self, *args, **kwargs):
            raise OutOfMemory("CUDA out of memory. Tried to allocate 2.00 GiB")

    node._pipeline = FailingPipeline()
    header = Header(frame_id="cam")
    header.stamp.sec = 7
    frame = HeldFrame(7_000_000_000, header, None, np.ones((4, 4), np.float32),
                      Intrinsics(2.0, 2.0, 1.5, 1.5, 4, 4))
    job = QueryJob(0, "q1", "How far?", np.zeros((0, 2)))
    node._run_query(job, frame, None)
    (msg,) = sent
    assert msg.id == "q1" and msg.status == SpatialAnswer.STATUS_ERROR
    assert "OutOfMemory" in msg.status_reason and "out of memory" in msg.status_reason
    assert msg.header.stamp.sec == 7 and msg.header.frame_id == "cam"
    assert node._stats.snapshot()["totals"]["queries_error"] == 1
