#!/usr/bin/env python3
"""Three cameras: one ``depthvlm_node`` serving all three against one node per camera.

Both setups get the same input: three cameras (``front``, ``left``, ``right``) publishing
synthetic frames of the same size at the same rate for the same time, each with its own
camera_info. For each setup it writes the nodes' memory (peak RSS, ``VmHWM``, summed over the
nodes) and, per camera, the frames sent and processed, the processed rate and the mean model
and frame latency over the run, from the nodes' own diagnostics. The one-node setup runs twice: one model
pass per frame, and ``batch_frames`` 3 (the cameras' waiting frames in shared passes). Both setups run the same model on the same
device with the same torch threads per node; on a machine with fewer cores than nodes, the
three nodes share them, as three models on one GPU would share it.

    python scripts/multicamera_check.py --out runs/multicamera.json [--seconds 20] [--rate 5]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from contextlib import ExitStack
from pathlib import Path

from fullsize_node import vm_hwm_bytes  # this folder is on sys.path when run as a script

from depthvlm_ros.core.perf.inputs import synthetic_camera_frame
from depthvlm_ros.ros import harness

CAMERAS = ("front", "left", "right")


def stream(client, seconds: float, rate: float, width: int, height: int) -> dict:
    """Send every camera's frames at ``rate``; returns camera -> frames sent."""
    rgb, intr = synthetic_camera_frame(width, height, 0.9 * width)
    sent = {name: 0 for name in CAMERAS}
    t0 = time.monotonic()
    k = 0
    while time.monotonic() - t0 < seconds:
        due = t0 + k / rate
        time.sleep(max(due - time.monotonic(), 0.0))
        sec, nsec = 100 + k // 100, (k % 100) * 10_000_000
        for name in CAMERAS:
            client.send_frame(rgb, intr, sec, nsec, frame_id=f"{name}_optical", camera=name)
            sent[name] += 1
        k += 1
    return sent


def drive(client, args, status_of, proc_of, connect_timeout: float) -> dict:
    """Stream the three cameras into the node(s) and read, per camera, its diagnostics once
    its frames are all accounted for.

    Args:
        status_of: ``(DiagnosticArray, camera) -> values`` of that camera's status, or None.
        proc_of: camera -> the node process serving it (a wait fails when it exits).
        connect_timeout: seconds for every camera's input to be subscribed (nodes active).
    """
    for name in CAMERAS:
        client.add_camera(name, record=())
    client.wait(lambda: all(client.publishers[f"{n}/image"].get_subscription_count() > 0
                            for n in CAMERAS), "the cameras' inputs", connect_timeout)
    sent = stream(client, args.seconds, args.rate, args.width, args.height)
    out = {}
    for name in CAMERAS:
        def settled(name=name):
            msgs = client.messages("diag")
            for msg in reversed(msgs):
                v = status_of(msg, name)
                if v is not None:
                    done = int(v["frames_processed"]) + int(v["frames_dropped"])
                    return v if done == sent[name] else None
            return None
        v = client.wait(settled, f"{name}'s frames accounted for", 60.0, proc_of(name))
        out[name] = {"sent": sent[name], "processed": int(v["frames_processed"]),
                     "processed_hz": round(int(v["frames_processed"]) / args.seconds, 2),
                     **run_latencies(client.messages("diag"), status_of, name)}
    return out


def run_latencies(messages, status_of, name: str) -> dict:
    """Mean model and frame latency of a camera over the whole run, in ms.

    Each diagnostics message carries the means over its own period; weighting them by the
    frames processed in that period (the growth of ``frames_processed``) gives the run's mean.
    """
    done, sums, count = 0, {"model_latency_ms": 0.0, "frame_latency_ms": 0.0}, 0
    for msg in messages:
        v = status_of(msg, name)
        if v is None:
            continue
        processed = int(v["frames_processed"])
        n, done = processed - done, processed
        if n > 0 and all(v[k] != "nan" for k in sums):
            for k in sums:
                sums[k] += n * float(v[k])
            count += n
    return {k: round(total / count, 1) if count else float("nan") for k, total in sums.items()}


def one_node(args, log_dir: Path, batch_frames: int = 1) -> dict:
    domain = harness.domain_id(f"multicamera_one_{batch_frames}", user="perf")
    params = {"model_path": args.model, "device": "cpu", "head_backend": "torch",
              "image_qos": "reliable", "cameras": ",".join(CAMERAS), "publish_points": False,
              "diagnostics_period_s": 0.2, "batch_frames": batch_frames}
    with harness.NodeProcess(domain, params=params,
                             log=log_dir / f"one_node_batch{batch_frames}.log",
                             threads=args.threads) as node, \
            harness.Client(domain, name="multicamera_client", record=("diag",),
                           inputs=()) as client:
        node.wait_active(client, 120.0)
        cams = drive(client, args, harness.pipeline_values, lambda n: node.proc, 30.0)
        peak = vm_hwm_bytes(node.proc.pid)
        node.stop()
    return {"nodes": 1, "batch_frames": batch_frames, "peak_rss_bytes": peak, "cameras": cams}


def node_per_camera(args, log_dir: Path) -> dict:
    domain = harness.domain_id("multicamera_three", user="perf")
    params = {"model_path": args.model, "device": "cpu", "head_backend": "torch",
              "image_qos": "reliable", "publish_points": False, "diagnostics_period_s": 0.2}
    with ExitStack() as stack:
        nodes = {}
        for name in CAMERAS:
            # Each node in its camera's namespace: its topics are the same as the
            # one-node setup's (front/image, ...), and its diagnostics name it.
            nodes[name] = stack.enter_context(harness.NodeProcess(
                domain, params=params, log=log_dir / f"node_{name}.log", threads=args.threads,
                ros_args=["-r", f"__ns:=/{name}"]))
        client = stack.enter_context(harness.Client(
            domain, name="multicamera_client", record=("diag",), inputs=(),
            node=f"/{CAMERAS[0]}/depthvlm_node"))

        def status_of(msg, name):
            for status in msg.status:
                if status.name.startswith(f"/{name}/") and status.name.endswith("pipeline"):
                    return {kv.key: kv.value for kv in status.values}
            return None
        # Subscribed inputs mean every node is loaded and active before the stream starts.
        cams = drive(client, args, status_of, lambda n: nodes[n].proc, 180.0)
        peaks = {n: vm_hwm_bytes(nodes[n].proc.pid) for n in CAMERAS}
        for node in nodes.values():
            node.stop()
    return {"nodes": 3, "peak_rss_bytes": sum(peaks.values()), "peak_rss_per_node": peaks,
            "cameras": cams}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="embedded")
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--rate", type=float, default=5.0, help="frames per second per camera")
    p.add_argument("--width", type=int, default=320)
    p.add_argument("--height", type=int, default=240)
    p.add_argument("--threads", type=int, default=1, help="torch threads per node")
    p.add_argument("--out", default="runs/multicamera.json")
    args = p.parse_args(argv)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    log_dir = out.with_suffix("")
    log_dir.mkdir(exist_ok=True)
    result = {"settings": vars(args)}
    setups = (("one_node", one_node),
              ("one_node_batched", lambda a, d: one_node(a, d, batch_frames=len(CAMERAS))),
              ("node_per_camera", node_per_camera))
    for key, run in setups:
        print(f"== {key}", flush=True)
        result[key] = run(args, log_dir)
        r = result[key]
        print(f"{r['nodes']} node(s): peak RSS {r['peak_rss_bytes'] / 1e6:.0f} MB", flush=True)
        for name, c in r["cameras"].items():
            print(f"  {name}: {c['processed']}/{c['sent']} frames ({c['processed_hz']} Hz), "
                  f"model {c['model_latency_ms']:.1f} ms, frame {c['frame_latency_ms']:.1f} ms",
                  flush=True)
    one, three = result["one_node"]["peak_rss_bytes"], result["node_per_camera"]["peak_rss_bytes"]
    result["rss_ratio_node_per_camera_over_one_node"] = round(three / one, 3)
    print(f"memory, one node per camera / one node for all: {three / one:.2f}")
    cams = result["one_node"]["cameras"], result["one_node_batched"]["cameras"]
    result["frame_latency_one_pass_each_over_batched"] = round(
        sum(c["frame_latency_ms"] for c in cams[0].values())
        / sum(c["frame_latency_ms"] for c in cams[1].values()), 3)
    print("mean frame latency, one pass per camera / batched passes: "
          f"{result['frame_latency_one_pass_each_over_batched']:.2f}")
    out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
