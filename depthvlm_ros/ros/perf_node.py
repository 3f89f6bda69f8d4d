"""Node-overhead and point-cloud benchmarks (the part of ``depthvlm perf`` that needs ROS).

:func:`bench_node_overhead` starts ``depthvlm_node`` as its own process through
:mod:`depthvlm_ros.ros.harness` (as the live tests do), publishes one camera frame at a time
over real DDS and times camera message in -> ``depth/image`` out. The node's own compute is
subtracted two ways: the model latency the node reports on ``/diagnostics`` for that frame,
and a direct :meth:`~depthvlm_ros.core.pipeline.DepthVLMPipeline.process_frame` on the same
frame in this process, interleaved with the node frames so both see the same machine load.
What is left is the node's overhead: serialisation, DDS transport both ways, message
conversion, queueing.

:func:`bench_point_cloud` times building the organized ``PointCloud2``
(:func:`~depthvlm_ros.ros.convert.depth_to_pointcloud2`) against the model time of the frame.
"""

from __future__ import annotations

import os
import signal
import time
from typing import Any, Callable

import numpy as np

from ..core.camera import Intrinsics
from ..core.perf import ratio_of_medians, summarize

__all__ = ["node_unavailable_reason", "cloud_unavailable_reason", "node_command",
           "bench_node_overhead", "bench_point_cloud", "TARGET_OVERHEAD"]

#: Overhead budget of the node relative to the model's own time.
TARGET_OVERHEAD = 0.10

_FRAME_ID = "perf_camera_optical_frame"


def node_unavailable_reason() -> str | None:
    """Why the node benchmark cannot run here (None when it can)."""
    try:
        import rclpy  # noqa: F401
        from depthvlm_ros.msg import SpatialAnswer  # noqa: F401
    except ImportError as exc:
        return f"ROS is not importable ({exc}); build and source: scripts/build_ros.sh, " \
               "scripts/ros_env.sh"
    try:
        node_command()
    except FileNotFoundError as exc:
        return str(exc)
    return None


def cloud_unavailable_reason() -> str | None:
    """Why the point-cloud benchmark cannot run here (None when it can)."""
    try:
        import sensor_msgs.msg  # noqa: F401 - the cloud is a sensor_msgs/PointCloud2
    except ImportError as exc:
        return f"sensor_msgs is not importable ({exc}): source scripts/ros_env.sh"
    return None


def node_command() -> list[str]:
    """The installed ``depthvlm_node`` launcher, run with this interpreter.

    Raises:
        FileNotFoundError: the install space is not on ``AMENT_PREFIX_PATH`` or is incomplete.
    """
    from .harness import node_command as installed_node

    return installed_node()


def bench_node_overhead(model_path: str, rgb: np.ndarray, intrinsics: Intrinsics, pipe,
                        frames: int = 10, warmup: int = 2, threads: int = 1,
                        log_path: str | os.PathLike | None = None, timeout: float = 120.0,
                        node_params: dict[str, Any] | None = None,
                        progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Camera message in -> depth message out through ``depthvlm_node`` over real DDS.

    Frames are sent one at a time (each after the previous depth arrived), so no time is spent
    waiting behind another frame. Diagnostics come every 0.5 s: often enough to read each
    frame's model latency, rarely enough not to load the node's executor. After each node frame the same frame runs through ``pipe``
    in this process. Images use reliable QoS: this machine's Fast DDS drops best-effort samples
    that need fragmenting, which a 640 x 480 image does.

    Args:
        model_path: model folder or ``embedded`` for the node (should be ``pipe``'s model).
        rgb: (H, W, 3) uint8 frame.
        intrinsics: its intrinsics (sent as camera_info with the same stamp).
        pipe: an in-process pipeline of the same model for the direct timing.
        frames: timed frames.
        warmup: untimed frames first.
        threads: torch threads of the node (``OMP_NUM_THREADS``).
        log_path: where the node's output goes (default: discarded).
        timeout: seconds to wait for the node to start, and for each frame.
        node_params: more node parameters (``name: value``), e.g. the token budget ``pipe`` uses.
        progress: callback for progress lines.

    Returns:
        Medians of end-to-end, node-reported model and direct pipeline times; overhead both ways
        and its ratio to the model time, against :data:`TARGET_OVERHEAD`.
    """
    from . import convert
    from .harness import Client, NodeProcess, domain_id, pipeline_values, stamp_key

    say = progress or (lambda _t: None)
    domain = domain_id("node_overhead", user="perf")
    params = {"model_path": model_path, "device": "cpu", "dtype": "float32",
              "head_backend": "torch", "image_qos": "reliable", "publish_points": False,
              "diagnostics_period_s": 0.5, "warn_throttle_s": 60.0, **(node_params or {})}
    # Arrival time first thing in the callback: it is the measurement.
    keep = {"depth": lambda m: (time.perf_counter(), stamp_key(m.header)),
            "diag": pipeline_values}
    # SIGTERM: the node's own clean shutdown. Same thread count as the in-process pipeline,
    # for a fair subtraction.
    with NodeProcess(domain, params=params, log=log_path, threads=threads,
                     stop_signal=signal.SIGTERM) as node, \
            Client(domain, name="depthvlm_perf_client", record=("depth", "diag"), keep=keep,
                   inputs=("image", "camera_info")) as client:
        node.wait_active(client, timeout)  # autostart: the node loads its model, activates
        client.wait_connected(outputs=("depth/image",), timeout=timeout)
        say(f"    node active after {node.uptime():.1f} s")

        def arrival(key):
            return next((t for t, k in client.messages("depth") if k == key), None)

        e2e, node_model, direct = [], [], []
        for i in range(warmup + frames):
            img = convert.rgb_to_msg(rgb, None)  # the camera driver's work, not the node's
            info = convert.intrinsics_to_camera_info(intrinsics)
            stamp = (1000 + i, 0)
            for msg in (img, info):
                msg.header.stamp.sec, msg.header.stamp.nanosec = stamp
                msg.header.frame_id = _FRAME_ID
            client.pub_info.publish(info)  # info first: the image pairs on arrival
            sent = time.perf_counter()
            client.pub_image.publish(img)
            got = client.wait(lambda s=stamp: arrival(s), f"depth of frame {i + 1}", timeout,
                              node)
            done = i + 1
            # The first report counting this frame carries its model latency ("last").
            vals = client.wait(lambda: next(
                (d for d in client.messages("diag")
                 if d and int(d.get("frames_processed", 0)) >= done), None),
                f"diagnostics of frame {i + 1}", timeout, node)
            client.clear("diag")
            # Direct timing of the same frame, right after, under the same load.
            t_direct = time.perf_counter()
            pipe.process_frame(rgb, intrinsics, keep_context=True)
            direct_s = time.perf_counter() - t_direct
            if i < warmup:
                continue
            e2e.append(got - sent)
            node_model.append(float(vals["model_latency_last_ms"]) / 1e3)
            direct.append(direct_s)
            say(f"    frame {i + 1 - warmup}/{frames}: in->out {e2e[-1] * 1e3:.1f} ms, "
                f"node model {node_model[-1] * 1e3:.1f} ms, direct {direct_s * 1e3:.1f} ms")
    parts = _message_costs(rgb, pipe.process_frame(rgb, intrinsics, keep_context=False).depth,
                           repeats=max(3, frames))
    over_node = [a - b for a, b in zip(e2e, node_model)]
    over_direct = [a - b for a, b in zip(e2e, direct)]
    ratio_node = ratio_of_medians(over_node, node_model) if over_node else float("nan")
    # Overheads are small differences of noisy times: the median of the differences can be
    # slightly negative on a loaded machine; reported as measured.
    return {
        "image": [int(rgb.shape[1]), int(rgb.shape[0])],
        "frames": frames,
        "threads": threads,
        "image_qos": "reliable",
        "in_to_out": summarize(e2e),
        "node_model": summarize(node_model),
        "direct_pipeline": summarize(direct),
        "overhead_vs_node_model": summarize(over_node),
        "overhead_vs_direct": summarize(over_direct),
        "ratio_overhead_vs_model": ratio_node,
        "ratio_overhead_vs_direct": ratio_of_medians(over_direct, direct),
        "ratio_in_to_out_vs_model": ratio_of_medians(e2e, node_model),
        "target_ratio_overhead": TARGET_OVERHEAD,
        "meets_target": bool(ratio_node <= TARGET_OVERHEAD),
        "message_costs": parts,
    }


def _message_costs(rgb: np.ndarray, depth: np.ndarray, repeats: int) -> dict[str, Any]:
    """In-process medians of the per-frame message work around the model (part of the overhead).

    Conversions the node does (image -> array, depth -> 32FC1 message) and the CDR
    (de)serialisation each side of DDS does for both messages. What the end-to-end overhead
    holds beyond their sum is transport and thread wake-ups.
    """
    from rclpy.serialization import deserialize_message, serialize_message
    from sensor_msgs.msg import Image

    from . import convert

    img = convert.rgb_to_msg(rgb, None)
    depth_msg = convert.depth_to_msg(depth, None)
    img_raw, depth_raw = serialize_message(img), serialize_message(depth_msg)
    steps: dict[str, Callable[[], Any]] = {
        "serialize_image": lambda: serialize_message(img),
        "deserialize_image": lambda: deserialize_message(img_raw, Image),
        "image_to_rgb": lambda: convert.image_to_rgb(img),
        "depth_to_msg": lambda: convert.depth_to_msg(depth, None),
        "serialize_depth": lambda: serialize_message(depth_msg),
        "deserialize_depth": lambda: deserialize_message(depth_raw, Image),
    }
    times: dict[str, list[float]] = {k: [] for k in steps}
    for _ in range(repeats):
        for name, step in steps.items():  # interleaved, like everything else here
            t0 = time.perf_counter()
            step()
            times[name].append(time.perf_counter() - t0)
    out = {k: summarize(v)["median_ms"] for k, v in times.items()}
    out["sum_ms"] = float(sum(out.values()))
    out["image_bytes"], out["depth_bytes"] = len(img_raw), len(depth_raw)
    return out


def bench_point_cloud(pipe, rgb: np.ndarray, intrinsics: Intrinsics, repeats: int = 10,
                      progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Point-cloud build per frame against the model's time for that frame, interleaved.

    Each repeat runs the frame through the pipeline, then builds the organized cloud from its
    depth (back-projection + PointCloud2 with packed rgb, as the node publishes it).
    """
    from . import convert

    frame = pipe.process_frame(rgb, intrinsics, keep_context=False)  # warm-up
    convert.depth_to_pointcloud2(frame.depth, intrinsics, None, rgb)
    model_s, cloud_s, cloud_xyz_s = [], [], []
    for i in range(repeats):
        t0 = time.perf_counter()
        frame = pipe.process_frame(rgb, intrinsics, keep_context=False)
        model_s.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        cloud = convert.depth_to_pointcloud2(frame.depth, intrinsics, None, rgb)
        cloud_s.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        convert.depth_to_pointcloud2(frame.depth, intrinsics, None, None)
        cloud_xyz_s.append(time.perf_counter() - t0)
        if progress:
            progress(f"    repeat {i + 1}/{repeats}: cloud {cloud_s[-1] * 1e3:.1f} ms, "
                     f"model {model_s[-1] * 1e3:.0f} ms")
    return {
        "image": [int(rgb.shape[1]), int(rgb.shape[0])],
        "points": int(cloud.width * cloud.height),
        "bytes": len(cloud.data),
        "model": summarize(model_s),
        "cloud_rgb": summarize(cloud_s),
        "cloud_xyz": summarize(cloud_xyz_s),
        "ratio_cloud_vs_model": ratio_of_medians(cloud_s, model_s),
        "ratio_cloud_xyz_vs_model": ratio_of_medians(cloud_xyz_s, model_s),
    }
