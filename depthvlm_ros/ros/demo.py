"""The end-to-end demo: the real node, a played bag, a recording, questions, a summary.

Runs with no GPU and no download on the embedded model:

1. writes a bag of synthetic frames (RGB, camera_info, GT depth) from the benchmark generator;
2. starts ``depthvlm_node`` as its own process (lifecycle, autostart);
3. records everything the node publishes (raw CDR, as rosbag2 does) into an MCAP bag;
4. plays the bag into the node with its timing;
5. asks spatial questions on ``query`` (with pixels) and ``query_text``;
6. scores every published depth against the bag's GT, writes ``summary.json`` and a report.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..core.errors import DepthVLMError

__all__ = ["DemoOptions", "run_demo"]

#: Outputs of the node recorded into the bag (keys of :data:`.harness.OUTPUTS`).
_RECORDED = ("depth", "info", "points", "answer", "diag")
_NODE_REMAPS = ["-r", "__node:=depthvlm_node",
                "-r", "image:=/camera/image_raw", "-r", "camera_info:=/camera/camera_info"]
#: (text, pixels, regions) asked about the latest frame of the 320x240 sample bag: pixels given
#: with the query, pixels written in the question, a region, a threshold over a region, and an
#: object named in words (measured inside what the model locates, or, when it locates
#: nothing, an answer that says so).
_QUESTIONS = [
    ("How far is the point at pixel (u=160, v=120) from the camera?", [(160, 120)], []),
    ("Which is nearer, (u=60, v=200) or (u=260, v=60)?", [], []),
    ("What is the distance in metres between the points (u=40, v=180) and (u=280, v=180)?",
     [], []),
    ("How far is the nearest thing in this region?", [], [(100, 140, 120, 90)]),
    ("Is anything closer than 2 m in this region?", [], [(0, 120, 320, 120)]),
    ("How far away is the red box?", [], []),
]


@dataclass
class DemoOptions:
    """Settings of :func:`run_demo` (defaults finish in a few minutes on 2 CPU cores)."""

    out: Path
    model_path: str = "embedded"
    frames: int = 16
    width: int = 320
    height: int = 240
    rate: float = 0.5
    seed: int = 7
    domain_id: int = 0
    node_timeout_s: float = 120.0
    log: Callable[[str], None] = print


@dataclass
class _Recording:
    counts: dict[str, int] = field(default_factory=dict)
    depth_stamps: list[int] = field(default_factory=list)
    depths: dict[int, np.ndarray] = field(default_factory=dict)
    answers: list[Any] = field(default_factory=list)
    diagnostics: dict[str, str] = field(default_factory=dict)
    model_latency_ms: list[float] = field(default_factory=list)


def _require_ros() -> None:
    try:
        import rclpy  # noqa: F401
        from depthvlm_ros.msg import SpatialAnswer  # noqa: F401
    except ImportError as exc:
        raise DepthVLMError(f"the ROS 2 environment is not set up ({exc}); run "
                            "scripts/setup.sh, then '. scripts/ros_env.sh'") from None


def _node_params(opts: DemoOptions) -> dict[str, Any]:
    return {"model_path": opts.model_path, "device": "cpu",
            # Reliable, so that the played frames are not lost to best-effort fragmentation.
            "image_qos": "reliable", "diagnostics_period_s": 0.5, "max_new_tokens": 24}


def run_demo(opts: DemoOptions) -> dict[str, Any]:
    """Run the demo and return its summary (also written to ``out/summary.json``)."""
    _require_ros()
    from geometry_msgs.msg import Point
    from sensor_msgs.msg import RegionOfInterest
    from std_msgs.msg import String
    from depthvlm_ros.msg import SpatialQuery

    from ..bags import make_typestore, open_writer, write_sample_bag
    from .harness import OUTPUTS, Client, NodeExited, NodeProcess, domain_id
    from .play import play_bag

    log = opts.log
    out = Path(opts.out)
    if out.exists() and any(out.iterdir()):
        raise DepthVLMError(f"{out} exists and is not empty; choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    in_bag, rec_bag = out / "input_bag", out / "recorded_bag"
    log(f"[demo] 1/6 writing {opts.frames} synthetic frames (indoor + outdoor) to {in_bag}")
    write_sample_bag(in_bag, frames=opts.frames, width=opts.width, height=opts.height,
                     seed=opts.seed)

    domain = opts.domain_id or domain_id("demo", user="demo")
    # The player runs in this process and takes its domain from the environment.
    os.environ.update(ROS_DOMAIN_ID=str(domain), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST")
    node_log = out / "depthvlm_node.log"
    log(f"[demo] 2/6 starting depthvlm_node (model {opts.model_path}, ROS_DOMAIN_ID={domain}); "
        f"log: {node_log}")
    try:
        node = NodeProcess(domain, params=_node_params(opts), ros_args=_NODE_REMAPS,
                           log=node_log, threads=None)
    except FileNotFoundError as exc:  # no installed launcher
        raise DepthVLMError(str(exc)) from None
    summary: dict[str, Any] = {}
    with node:
        writer = open_writer(rec_bag, "mcap")
        writer.open()
        try:
            keep = _bag_recorders(writer, make_typestore(), OUTPUTS)
            with Client(domain, name="depthvlm_demo", record=_RECORDED, keep=keep, raw=True,
                        inputs=("query", "query_text")) as client:
                try:
                    t_active = node.wait_active(client, opts.node_timeout_s)
                except NodeExited:
                    raise DepthVLMError(f"depthvlm_node exited early (code {node.returncode}); "
                                        f"see {node_log}") from None
                except TimeoutError:
                    raise DepthVLMError(f"depthvlm_node did not become active in "
                                        f"{opts.node_timeout_s:.0f} s; see {node_log}") from None
                log(f"[demo]     node active after {t_active:.1f} s")

                log(f"[demo] 3/6 recording node outputs to {rec_bag}")
                log(f"[demo] 4/6 playing {in_bag} at rate {opts.rate}")
                t_play = time.monotonic()
                stats = play_bag(in_bag, rate=opts.rate,
                                 topics=["/camera/image_raw", "/camera/camera_info"],
                                 wait_for_subscribers_s=20.0, log=None)
                deadline = time.monotonic() + 30.0
                while time.monotonic() < deadline:  # let the last frame finish
                    busy = _last_diagnostics(client).get("frames_waiting_camera_info", "0") != "0"
                    n_depth = len(client.messages("depth"))
                    time.sleep(1.0)
                    if len(client.messages("depth")) == n_depth and not busy:
                        break
                play_s = time.monotonic() - t_play

                log("[demo] 5/6 asking spatial questions about the latest frame")
                try:
                    client.wait_connected(inputs=("query", "query_text"), outputs=(),
                                          timeout=10.0)
                except TimeoutError:
                    pass  # ask anyway: the wait for the answers says when the node is gone
                for i, (text, pixels, regions) in enumerate(_QUESTIONS):
                    q = SpatialQuery()
                    q.id, q.text = f"demo-{i}", text
                    q.pixels = [Point(x=float(u), y=float(v), z=0.0) for u, v in pixels]
                    q.regions = [RegionOfInterest(x_offset=x, y_offset=y, width=w, height=h)
                                 for x, y, w, h in regions]
                    client.pub_query.publish(q)
                client.pub_text.publish(String(data="Is the scene indoors or outdoors?"))
                try:
                    client.wait(lambda: len(client.messages("answer")) >= len(_QUESTIONS) + 1,
                                "the answers", 120.0, node)
                except NodeExited:
                    raise DepthVLMError(f"depthvlm_node exited (code {node.returncode}); "
                                        f"see {node_log}") from None
                except TimeoutError:
                    pass  # the summary lists the answers that came
                time.sleep(1.0)  # one more diagnostics period
                log("[demo] 6/6 scoring and writing the report")
                summary = _summarise(opts, in_bag, rec_bag, _recording(client), stats, play_s,
                                     node_log)
        finally:
            writer.close()
    summary["node_exit_code"] = node.returncode
    _write_report(out, summary)  # takes the sample arrays out of the summary
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    return summary


def _bag_recorders(writer, typestore, outputs) -> dict[str, Callable[[bytes], Any]]:
    """Per recorded output, a recorder that writes the raw CDR into the bag (as rosbag2 does)
    and keeps what the summary needs: (stamp, depth array), the answer, diagnostics values."""
    from rclpy.serialization import deserialize_message

    from .convert import msg_to_depth
    from .harness import pipeline_values
    from .play import message_class

    def depth(msg):
        return msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec, msg_to_depth(msg)

    decoders = {"depth": depth, "answer": lambda msg: msg, "diag": pipeline_values}

    def recorder(key: str) -> Callable[[bytes], Any]:
        topic, type_name = outputs[key]
        package, name = type_name.split("/")
        msgtype = f"{package}/msg/{name}"
        conn = writer.add_connection(topic if topic.startswith("/") else "/" + topic, msgtype,
                                     typestore=typestore)
        cls, decode = message_class(msgtype), decoders.get(key)

        def keep(raw: bytes) -> Any:
            writer.write(conn, time.time_ns(), raw)
            return decode(deserialize_message(raw, cls)) if decode else None
        return keep

    return {key: recorder(key) for key in _RECORDED}


def _last_diagnostics(client) -> dict[str, str]:
    reports = [d for d in client.messages("diag") if d is not None]
    return reports[-1] if reports else {}


def _recording(client) -> _Recording:
    depths = client.messages("depth")
    reports = [d for d in client.messages("diag") if d is not None]
    # The node reports a windowed mean; keep every finite one.
    latencies = [_to_float(d.get("model_latency_ms")) for d in reports]
    return _Recording(counts={key: len(client.messages(key)) for key in _RECORDED},
                      depth_stamps=[stamp for stamp, _ in depths], depths=dict(depths),
                      answers=client.messages("answer"),
                      diagnostics=reports[-1] if reports else {},
                      model_latency_ms=[v for v in latencies if v is not None])


def _read_topic(bag: Path, topic: str):
    from rosbags.rosbag2 import Reader

    from ..bags import make_typestore

    ts = make_typestore()
    with Reader(bag) as reader:
        conns = [c for c in reader.connections if c.topic == topic]
        for conn, log_ns, raw in reader.messages(connections=conns):
            yield ts.deserialize_cdr(raw, conn.msgtype)


def _summarise(opts, in_bag, rec_bag, rec: _Recording, stats, play_s, node_log) -> dict:
    from ..core.bench.metrics import aggregate, image_metrics
    from ..bags.messages import image_depth_m, stamp_ns

    gts = {stamp_ns(m.header.stamp): image_depth_m(m) for m in _read_topic(in_bag, "/camera/depth_gt")}
    scores, order_ok = [], all(a < b for a, b in zip(rec.depth_stamps, rec.depth_stamps[1:]))
    depth_by_stamp = rec.depths
    for s, pred in sorted(depth_by_stamp.items()):
        gt = gts.get(s)
        if gt is not None:
            p = np.where(np.isfinite(pred), pred, 0.0).astype(np.float32)
            g = np.where(np.isfinite(gt), gt, 0.0).astype(np.float32)
            scores.append(image_metrics(p, g))
    agg = aggregate(scores) if scores else None
    d = rec.diagnostics

    def num(key):
        return _to_float(d.get(key))

    answers = [_answer_summary(a, gts.get(stamp_ns(a.header.stamp))) for a in rec.answers]
    sample = None
    if depth_by_stamp:
        # The frame the questions were answered about (the latest), else the middle one.
        asked = {stamp_ns(a.header.stamp) for a in rec.answers} & set(depth_by_stamp)
        s = max(asked) if asked else sorted(depth_by_stamp)[len(depth_by_stamp) // 2]
        sample = (s, depth_by_stamp[s], gts.get(s))
    summary = {
        "model": opts.model_path,
        "frames_in_bag": opts.frames,
        "frames_played": stats.per_topic.get("/camera/image_raw", 0),
        "depth_published": rec.counts.get("depth", 0),
        "camera_info_published": rec.counts.get("info", 0),
        "points_published": rec.counts.get("points", 0),
        "answers": answers,
        "stamps_in_order": order_ok,
        "frames_scored": len(scores),
        "delta1": agg.delta1 if agg else None,
        "abs_rel": agg.abs_rel if agg else None,
        "model_latency_ms": (round(float(np.median(rec.model_latency_ms)), 1)
                             if rec.model_latency_ms else num("model_latency_last_ms")),
        "frames_dropped": num("frames_dropped"),
        "diagnostics": d,
        "play_seconds": round(play_s, 1),
        "input_bag": str(in_bag), "recorded_bag": str(rec_bag), "node_log": str(node_log),
    }
    summary["_sample"] = sample
    return summary


_SOURCES = {0: "none", 1: "measured", 2: "model"}


def _error_pct(value: float, truth: float | None) -> float | None:
    if truth is None or not np.isfinite(truth) or truth <= 0 or not np.isfinite(value):
        return None
    return round(100.0 * (value - truth) / truth, 1)


def _answer_summary(a, gt: np.ndarray | None) -> dict:
    """One answer for the summary: its texts, source, measurements and the bag's GT there."""
    from ..core.spatial import sample_depth

    g = None if gt is None else np.where(np.isfinite(gt) & (gt > 0), gt, np.nan)
    pixels = []
    for p, d in zip(a.pixels, a.depths):
        truth = None if g is None else float(sample_depth(g, p.x, p.y))
        pixels.append({"u": p.x, "v": p.y, "depth_m": round(float(d), 3),
                       "gt_m": None if truth is None or not np.isfinite(truth)
                       else round(truth, 3), "error_pct": _error_pct(float(d), truth)})
    regions = []
    for r in a.regions:
        box = None if g is None else g[r.roi.y_offset:r.roi.y_offset + r.roi.height,
                                       r.roi.x_offset:r.roi.x_offset + r.roi.width]
        truth = (float(np.nanmin(box)) if box is not None and np.isfinite(box).any()
                 else None)
        regions.append({"roi": [r.roi.x_offset, r.roi.y_offset, r.roi.width, r.roi.height],
                        "origin": "located" if r.origin else "query", "label": r.label,
                        "nearest_m": round(float(r.nearest_depth), 3),
                        "median_m": round(float(r.median_depth), 3),
                        "gt_nearest_m": None if truth is None else round(truth, 3),
                        "error_pct": _error_pct(float(r.nearest_depth), truth)})
    return {"id": a.id, "question": a.question, "answer": a.answer,
            "model_answer": a.model_answer, "source": _SOURCES.get(int(a.source), a.source),
            "status": int(a.status), "status_reason": a.status_reason,
            "pixels": pixels, "regions": regions,
            "stamp": f"{a.header.stamp.sec}.{a.header.stamp.nanosec:09d}",
            "latency_s": round(float(a.latency), 3)}


def answer_lines(a: dict) -> list[str]:
    """An answer as the demo prints and reports it: text, source, measurements vs GT."""
    out = [f"Q: {a['question']}",
           f"A: {a['answer'] or a['status_reason']!r} [{a['source']}; model said "
           f"{a['model_answer']!r}]"]
    for p in a["pixels"]:
        out.append(f"   pixel ({p['u']:g}, {p['v']:g}): {_m(p['depth_m'])}, GT {_m(p['gt_m'])}, "
                   f"error {_pct(p['error_pct'])}")
    for r in a["regions"]:
        out.append(f"   region {r['roi']} ({r['origin']}{' ' + r['label'] if r['label'] else ''})"
                   f": nearest {_m(r['nearest_m'])}, GT nearest {_m(r['gt_nearest_m'])}, "
                   f"error {_pct(r['error_pct'])}")
    return out


def _m(v) -> str:
    return "n/a" if v is None else f"{v:.3f} m"


def _pct(v) -> str:
    return "n/a" if v is None else f"{v:+.1f} %"


def _write_report(out: Path, summary: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..core.visualize import colorize_depth

    sample = summary.pop("_sample", None)
    lines = ["# depthvlm demo", "",
             f"- model: `{summary['model']}`",
             f"- frames played / depth published: {summary['frames_played']} / "
             f"{summary['depth_published']} (latest-frame policy drops frames the CPU cannot keep up with)",
             f"- δ1 / AbsRel vs bag GT over {summary['frames_scored']} frames: "
             f"{_fmt(summary['delta1'])} / {_fmt(summary['abs_rel'])}",
             f"- model latency: {_fmt(summary['model_latency_ms'])} ms per frame",
             f"- stamps in order: {summary['stamps_in_order']}",
             f"- recorded bag (MCAP): `{summary['recorded_bag']}`", "", "## Answers", ""]
    for a in summary["answers"]:
        text = answer_lines(a)
        lines += [f"- **{text[0][3:]}**", f"  - {text[1][3:]}"] + \
            [f"  - {t.strip()}" for t in text[2:]]
    if sample is not None:
        stamp, pred, gt = sample
        fig, axes = plt.subplots(1, 2 if gt is not None else 1, figsize=(9, 3.4), squeeze=False)
        valid = pred[np.isfinite(pred)]
        vmin, vmax = (np.percentile(valid, [2, 98]) if valid.size else (0, 1))
        if gt is not None and np.isfinite(gt).any() and (gt > 0).any():
            g = gt[np.isfinite(gt) & (gt > 0)]
            vmin, vmax = np.percentile(g, [2, 98])
        axes[0][0].imshow(colorize_depth(pred, vmin, vmax))
        axes[0][0].set_title("published depth")
        if gt is not None:
            axes[0][1].imshow(colorize_depth(np.where(gt > 0, gt, np.nan), vmin, vmax))
            axes[0][1].set_title("ground truth")
        _mark_measurements(axes[0], summary["answers"], stamp)
        for ax in axes[0]:
            ax.axis("off")
        fig.suptitle(f"frame stamp {stamp / 1e9:.1f} s (turbo: near red, far blue; colour range "
                     f"{vmin:.1f}-{vmax:.1f} m); measured pixels and regions of the answers")
        fig.savefig(out / "sample_depth.png", dpi=90, bbox_inches="tight")
        plt.close(fig)
        lines += ["", "![sample](sample_depth.png)"]
    (out / "report.md").write_text("\n".join(lines) + "\n")


def _mark_measurements(axes, answers: list[dict], stamp: int) -> None:
    """Draw the answers' pixels and regions (measured / GT) on the depth panels."""
    from matplotlib.patches import Rectangle

    sec, nsec = divmod(stamp, 1_000_000_000)
    here = [a for a in answers if a["stamp"] == f"{sec}.{nsec:09d}"]
    for ax_i, ax in enumerate(axes):
        for a in here:
            for p in a["pixels"]:
                ax.plot(p["u"], p["v"], "o", mfc="none", mec="white", ms=7, mew=1.5)
                value = p["depth_m"] if ax_i == 0 else p["gt_m"]
                ax.annotate("n/a" if value is None else f"{value:.2f}", (p["u"], p["v"]),
                            xytext=(4, -4), textcoords="offset points", color="white",
                            fontsize=7)
            for r in a["regions"]:
                x, y, w, h = r["roi"]
                ax.add_patch(Rectangle((x - 0.5, y - 0.5), w, h, fill=False, ec="white", lw=1))
                value = r["nearest_m"] if ax_i == 0 else r["gt_nearest_m"]
                ax.annotate(f"nearest {'n/a' if value is None else f'{value:.2f}'}",
                            (x, y), xytext=(2, 8), textcoords="offset points", color="white",
                            fontsize=7)


def _to_float(v) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if np.isfinite(f) else None


def _fmt(v) -> str:
    return "n/a" if v is None else f"{v:.3f}"
