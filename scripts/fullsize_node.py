#!/usr/bin/env python3
"""The full-size model in ``depthvlm_node``: one frame in over DDS, depth and an answer out.

Starts the node (its own process, this checkout's code) on a model folder, sends one synthetic
camera frame and one question with the test harness's client, and writes a JSON of: time to
ACTIVE (configure = validation + the model load), time to the depth image and to the answer,
the node's peak RSS (``VmHWM`` of its process) against the weights' size, the answer and the
depth statistics. ``scripts/fullsize_check.sh`` runs it after the predict step.

    python scripts/fullsize_node.py /work/fullsize --dtype bfloat16 --out runs/fullsize/node.json
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

from fullsize_predict import frame_arguments  # this folder is on sys.path when run as a script

from depthvlm_ros.core.check import validate_model_folder
from depthvlm_ros.core.perf.inputs import synthetic_camera_frame
from depthvlm_ros.ros import harness
from depthvlm_ros.ros.convert import msg_to_depth


def vm_hwm_bytes(pid: int) -> int:
    """Peak resident memory of a live process (``VmHWM`` in /proc/<pid>/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def main(argv: list[str] | None = None) -> int:
    p = frame_arguments(__doc__.splitlines()[0])
    p.add_argument("--timeout", type=float, default=900.0, help="seconds for each wait")
    args = p.parse_args(argv)

    report = validate_model_folder(args.model, dtype=args.dtype, device="cpu")
    print(report.format(), flush=True)
    weights = report.memory.weights if report.memory else None
    rgb, intr = synthetic_camera_frame(args.width, args.height, args.fx)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    domain = harness.domain_id("fullsize_node", user="perf")
    params = {"model_path": str(Path(args.model).resolve()), "device": "cpu",
              "dtype": args.dtype, "head_backend": "torch", "image_qos": "reliable",
              "max_new_tokens": 16}
    t0 = time.monotonic()
    with harness.NodeProcess(domain, params=params, log=out.with_suffix(".log"),
                             threads=args.threads) as node, \
            harness.Client(domain, name="fullsize_client",
                           record=("depth", "answer")) as client:
        active_s = node.wait_active(client, args.timeout)
        print(f"node active after {active_s:.1f} s", flush=True)
        client.wait_connected()
        t_frame = time.monotonic()
        client.send_frame(rgb, intr, 100)
        (depth_msg,) = client.wait_for("depth", count=1, timeout=args.timeout, proc=node.proc)
        depth_s = time.monotonic() - t_frame
        t_q = time.monotonic()
        from std_msgs.msg import String

        client.pub_text.publish(String(data=args.question))
        (answer,) = client.wait_for("answer", count=1, timeout=args.timeout, proc=node.proc)
        answer_s = time.monotonic() - t_q
        peak = vm_hwm_bytes(node.proc.pid)
        code = node.stop()
    depth = msg_to_depth(depth_msg)
    valid = np.isfinite(depth)
    result = {
        "model": args.model, "dtype": args.dtype, "frame": [args.width, args.height],
        "active_s": round(active_s, 1), "depth_s": round(depth_s, 1),
        "answer_s": round(answer_s, 1), "total_s": round(time.monotonic() - t0, 1),
        "node_peak_rss_bytes": peak, "weights_bytes": weights,
        "peak_rss_over_weights": round(peak / weights, 3) if weights else None,
        "depth_valid_fraction": float(valid.mean()),
        "depth_median_m": float(np.median(depth[valid])) if valid.any() else None,
        "answer": answer.answer, "model_answer": answer.model_answer,
        "answer_source": int(answer.source), "answer_status": int(answer.status),
        "node_exit_code": code,
    }
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    ok = answer.status == 0 and valid.any() and code == 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
