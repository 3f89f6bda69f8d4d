"""Rosbag replay through the depth pipeline, with evaluation against recorded ground truth.

:func:`replay_bag` reads a bag in two passes. The first pass is cheap: it reads every
camera_info (small), and only the header stamps of images and GT depth (12 bytes each, see
:func:`~depthvlm_ros.bags.messages.cdr_header_stamp`), so it knows which images can be paired
with intrinsics and which frame each scripted question refers to before any inference runs.
The second pass copies every input message to the output bag in log-time order and, for each
image, runs the pipeline and writes ``depth/image``, ``depth/camera_info``, optionally
``points``, and the ``answer`` messages of the questions that refer to it. Every image is
processed (no drops), in bag order, so the output is deterministic.

Under ``torchrun`` the images are shared out between the ranks (every ``world_size``-th image
from the rank's own), each rank infers and answers its share, and rank 0 receives every
frame's outcome and writes the one output bag, summary and report, exactly as one process
would; the other ranks return a summary with ``is_main`` false.

Images may be raw ``sensor_msgs/Image`` or ``sensor_msgs/CompressedImage`` (JPEG / PNG), GT
raw or compressedDepth, at the image's resolution or the depth sensor's own
(:mod:`~depthvlm_ros.bags.scoring`); every other topic is copied through untouched. Which
topics form a camera is :mod:`~depthvlm_ros.bags.discovery`.

Needs ``rosbags`` only (no rclpy).
"""

from __future__ import annotations

import bisect
import heapq
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..core.camera import Intrinsics
from ..core.distributed import gather_to_main, init_distributed
from ..core.errors import InputError
from ..core.frames import FrameDropped, cloud_points, color_frame, frame_intrinsics
from ..core.answers import STATUS_ERROR, SpatialResult, answer_question
from . import messages as bagconv
from .queries import ScriptedQuery
from .scoring import FrameScore, GroundTruthScorer, StampIndex
from .typestore import copy_connection, make_typestore, open_reader, open_writer, register_bag_types

__all__ = ["OUTPUT_TOPICS", "ReplayOptions", "FrameScore", "ReplaySummary", "replay_bag"]

#: Output topics (relative names, resolved under ``ReplayOptions.output_namespace``).
OUTPUT_TOPICS = {"depth": "depth/image", "camera_info": "depth/camera_info", "points": "points",
                 "answer": "answer"}

_STATUS_OK, _STATUS_ERROR = 0, 2


@dataclass
class ReplayOptions:
    """What :func:`replay_bag` reads and writes.

    Attributes:
        image_topic: colour image topic: ``sensor_msgs/Image`` (rgb8, bgr8, rgba8, bgra8,
            mono8) or ``sensor_msgs/CompressedImage`` (JPEG / PNG).
        camera_info_topic: CameraInfo topic, paired with images by header stamp.
        gt_depth_topic: optional GT depth (Image 16UC1 mm or 32FC1 m, or compressedDepth PNG /
            RVL), paired with images by header stamp.
        gt_camera_info_topic: the GT's own CameraInfo when it comes from a depth sensor of
            another resolution (resampled onto the colour grid, see
            :func:`~depthvlm_ros.core.frames.depth_on_grid`); None: GT on the colour grid.
        queries: scripted questions.
        points: also write the organized point cloud.
        points_rgb: add packed rgb to the cloud.
        points_stride, points_min_range, points_max_range: cloud decimation and range band
            (:func:`~depthvlm_ros.core.frames.cloud_points`; the node's parameters).
        storage: output format, ``mcap`` or ``sqlite3``.
        output_namespace: namespace of the output topics (``/`` gives ``/depth/image``...).
        fallback_hfov_deg: horizontal FOV used for images without camera_info (0: skip them).
        sync_tolerance_s: largest stamp difference when pairing (0: exact stamps).
        gt_min_depth, gt_max_depth: GT outside this range (metres) is not scored.
        report_frames: frames shown as error maps and colourised predictions in the report.
        progress: show a tqdm progress bar.
        answer_mode: where answers' text comes from (``auto``, ``measured``, ``model``; see
            :func:`depthvlm_ros.core.answers.answer_question`).
    """

    image_topic: str
    camera_info_topic: str
    gt_depth_topic: str | None = None
    gt_camera_info_topic: str | None = None
    queries: Sequence[ScriptedQuery] = ()
    points: bool = False
    points_rgb: bool = True
    points_stride: int = 1
    points_min_range: float = 0.0
    points_max_range: float = 0.0
    storage: str = "mcap"
    output_namespace: str = "/"
    fallback_hfov_deg: float = 0.0
    sync_tolerance_s: float = 0.0
    gt_min_depth: float = 1e-3
    gt_max_depth: float = math.inf
    report_frames: int = 4
    progress: bool = True
    answer_mode: str = "auto"

    def topic(self, key: str) -> str:
        """Fully qualified name of output topic ``key`` (see :data:`OUTPUT_TOPICS`)."""
        ns = "/" + self.output_namespace.strip("/")
        return (ns.rstrip("/") + "/" + OUTPUT_TOPICS[key]) if ns != "/" else "/" + OUTPUT_TOPICS[key]


@dataclass
class ReplaySummary:
    """Counts and results of one replay.

    ``frames_*`` count image messages; every image is exactly one of processed, unpaired (no
    camera_info and no fallback) or bad (undecodable, or unusable intrinsics).
    ``frames_fallback`` is the subset of processed frames that used ``fallback_hfov_deg``.
    ``drops`` counts the frames not processed by the reason the live node would count them
    under (:data:`depthvlm_ros.core.frames.DROP_REASONS`).
    """

    input_bag: str
    output_bag: str
    storage: str
    frames_total: int = 0
    frames_processed: int = 0
    frames_unpaired: int = 0
    frames_fallback: int = 0
    frames_bad: int = 0
    camera_info_bad: int = 0
    drops: dict[str, int] = field(default_factory=dict)
    gt_bad: int = 0
    gt_unmatched: int = 0
    frames_scored: int = 0
    answers: int = 0
    answer_errors: int = 0
    messages_in: int = 0
    messages_out: int = 0
    wall_s: float = 0.0
    frame_s_mean: float | None = None
    frame_s_median: float | None = None
    undecodable_types: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    scores: list[FrameScore] = field(default_factory=list)
    answers_log: list[dict] = field(default_factory=list)
    aggregate: dict | None = None
    report_frames: list[dict] = field(default_factory=list, repr=False)
    is_main: bool = field(default=True, repr=False)

    def drop(self, reason: str) -> None:
        """Count one image not processed, under the node's drop ``reason``."""
        self.drops[reason] = self.drops.get(reason, 0) + 1
        if reason == "no_camera_info":
            self.frames_unpaired += 1
        else:
            self.frames_bad += 1

    def as_dict(self) -> dict:
        """JSON-ready dict (NaN -> None; report images left out)."""
        d = asdict(self)
        d.pop("report_frames")
        d.pop("is_main")
        return _json_clean(d)


def _json_clean(v: Any) -> Any:
    if isinstance(v, float):
        return None if not math.isfinite(v) else v
    if isinstance(v, dict):
        return {k: _json_clean(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_json_clean(x) for x in v]
    return v


@dataclass
class _ImageEntry:
    log_ns: int
    stamp_ns: int | None           # None: header unreadable (bad message)
    intr: Intrinsics | None = None
    info_msg: Any = None           # the paired CameraInfo (template for depth/camera_info)
    fallback: bool = False
    gt_stamp: int | None = None    # the GT message paired with this image
    queries: list[ScriptedQuery] = field(default_factory=list)


def _assign_queries(entries: list[_ImageEntry], queries: Sequence[ScriptedQuery],
                    bag_start_ns: int, fallback: bool) -> list[ScriptedQuery]:
    """Attach each query to the frame current at its time; return queries with no such frame.

    Only frames that will be processed count (paired with camera_info, or any frame when a
    fallback FOV is set), so a question never lands on a frame that is then skipped.
    """
    usable = [e for e in entries if e.stamp_ns is not None and (fallback or e.intr is not None)]
    by_log = sorted(usable, key=lambda e: e.log_ns)
    by_stamp = sorted(usable, key=lambda e: e.stamp_ns)
    log_keys = [e.log_ns for e in by_log]
    stamp_keys = [e.stamp_ns for e in by_stamp]
    orphans = []
    for q in queries:
        t_ns = round(q.time_s * 1e9)
        if q.absolute:
            i = bisect.bisect_right(stamp_keys, t_ns) - 1
            target = by_stamp[i] if i >= 0 else None
        else:
            i = bisect.bisect_right(log_keys, bag_start_ns + t_ns) - 1
            target = by_log[i] if i >= 0 else None
        if target is None:
            orphans.append(q)
        else:
            target.queries.append(q)
    return orphans


def _query_log_ns(q: ScriptedQuery, entry: _ImageEntry | None, bag_start_ns: int) -> int:
    # An answer is logged when it was asked, never before the frame it is about.
    t = round(q.time_s * 1e9)
    asked = t if q.absolute else bag_start_ns + t
    if entry is not None and not q.absolute:
        return max(asked, entry.log_ns)
    return entry.log_ns if entry is not None else max(asked, bag_start_ns)


def _pick_report_indices(n: int, k: int) -> set[int]:
    if n <= 0 or k <= 0:
        return set()
    return {int(round(x)) for x in np.linspace(0, n - 1, min(k, n))}


def replay_bag(bag: str | Path, out_bag: str | Path, pipeline, options: ReplayOptions,
               typestore=None) -> ReplaySummary:
    """Run every frame of a bag through the pipeline and write an output bag.

    Args:
        bag: input rosbag2 folder (or ``.mcap``/``.db3`` file inside one).
        out_bag: output bag folder (must not exist).
        pipeline: a :class:`~depthvlm_ros.core.pipeline.DepthVLMPipeline` (or anything with
            ``process_frame`` and ``answer`` of the same signatures).
        options: topics, queries and outputs.
        typestore: rosbags typestore (default :func:`make_typestore`).

    Returns:
        The :class:`ReplaySummary`, with per-frame scores when a GT topic was given.

    Raises:
        InputError: the bag cannot be opened, or the image topic is not in it.
    """
    t_start = time.perf_counter()
    ts = typestore or make_typestore()
    bag = Path(bag)
    if bag.is_file():  # accept the storage file itself, as ros2 bag does
        bag = bag.parent
    summary = ReplaySummary(str(bag), str(out_bag), options.storage)
    reader = open_reader(bag)
    writer = None
    try:
        topics = {c.topic for c in reader.connections}
        if options.image_topic not in topics:
            raise InputError(f"image topic {options.image_topic} not in {bag} "
                             f"(topics: {', '.join(sorted(topics))})")
        out_topics = [options.topic(k) for k in OUTPUT_TOPICS]
        clash = sorted(set(out_topics) & topics)
        if clash:
            raise InputError(f"the bag already has output topic(s) {', '.join(clash)}; "
                             "choose another output namespace")
        summary.undecodable_types = register_bag_types(ts, reader.connections)
        img_conns = [c for c in reader.connections if c.topic == options.image_topic]
        info_conns = [c for c in reader.connections if c.topic == options.camera_info_topic]
        gt_conns = [c for c in reader.connections if c.topic == options.gt_depth_topic]
        gt_info_topic = options.gt_camera_info_topic if gt_conns else None
        gt_info_conns = [c for c in reader.connections if c.topic == gt_info_topic
                         and gt_info_topic != options.camera_info_topic]
        if not info_conns:
            summary.warnings.append(f"camera_info topic {options.camera_info_topic} is not in "
                                    "the bag")
        if options.gt_depth_topic and not gt_conns:
            summary.warnings.append(f"GT depth topic {options.gt_depth_topic} is not in the bag")
        if gt_info_topic and not gt_info_conns and gt_info_topic != options.camera_info_topic:
            summary.warnings.append(f"GT camera_info topic {gt_info_topic} is not in the bag")
        bag_start = int(reader.start_time) if reader.message_count else 0

        # ---- pass 1: camera_info, image and GT stamps -------------------------------------
        entries: list[_ImageEntry] = []
        infos: dict[int, tuple[Any, Intrinsics]] = {}
        gt_infos: dict[int, Intrinsics] = {}
        gt_stamps: dict[int, int] = {}
        for conn, log_ns, raw in reader.messages(
                connections=img_conns + info_conns + gt_conns + gt_info_conns):
            if conn.topic == options.image_topic:
                try:
                    entries.append(_ImageEntry(log_ns, bagconv.cdr_header_stamp(raw)))
                except InputError:
                    entries.append(_ImageEntry(log_ns, None))
            elif conn.topic in (options.camera_info_topic, gt_info_topic):
                try:
                    msg = ts.deserialize_cdr(raw, conn.msgtype)
                    intr = bagconv.camera_info_intrinsics(msg)
                except Exception:  # noqa: BLE001 - a broken camera_info is counted, not fatal
                    summary.camera_info_bad += 1
                    continue
                stamp = bagconv.stamp_ns(msg.header.stamp)
                if conn.topic == options.camera_info_topic:
                    infos[stamp] = (msg, intr)
                else:
                    gt_infos[stamp] = intr
            else:
                try:
                    gt_stamps[bagconv.cdr_header_stamp(raw)] = 0
                except InputError:
                    pass  # counted as bad GT in pass 2, where it is decoded
        tolerance_ns = round(options.sync_tolerance_s * 1e9)
        pairer = StampIndex(infos, tolerance_ns)
        gt_pairer = StampIndex(gt_stamps, tolerance_ns)
        for e in entries:
            if e.stamp_ns is None:
                continue
            found = pairer.find(e.stamp_ns)
            if found is not None:
                e.info_msg, e.intr = found
            e.gt_stamp = gt_pairer.stamp(e.stamp_ns)
            if e.gt_stamp is not None:
                gt_stamps[e.gt_stamp] += 1
        orphans = _assign_queries(entries, options.queries, bag_start,
                                  options.fallback_hfov_deg > 0)
        report_idx = _pick_report_indices(len(entries), options.report_frames)

        # ---- metrics (the benchmark's arithmetic) -----------------------------------------
        scorer = (GroundTruthScorer(options, summary, gt_stamps, StampIndex(gt_infos, tolerance_ns))
                  if gt_conns else None)

        # ---- under torchrun: every rank infers its share of the frames, rank 0 writes ------
        outcomes = None
        env = init_distributed(device="cpu")  # a process group only under torchrun
        if env.distributed:
            mine: dict[int, _Outcome] = {}
            bar = _progress(len(range(env.rank, len(entries), env.world_size)),
                            options.progress, f"replay [rank {env.rank}/{env.world_size}]",
                            env.rank)
            for i, (conn, _, raw) in enumerate(reader.messages(connections=img_conns)):
                if i % env.world_size == env.rank:
                    mine[i] = _infer(ts, conn, raw, entries[i], i, pipeline, options)[0]
                    bar.update(1)
            bar.close()
            shares = gather_to_main(mine, env)
            if shares is None:
                summary.is_main = False
                return summary
            outcomes = {i: o for share in shares for i, o in share.items()}

        # ---- pass 2: copy, infer (unless done above), write ---------------------------------
        writer = open_writer(out_bag, options.storage)
        writer.open()
        out_conn: dict[tuple[str, str], Any] = {}
        for c in reader.connections:
            key = (c.topic, c.msgtype)
            if key not in out_conn:
                out_conn[key] = copy_connection(writer, c, ts)
        qos = info_conns[0].ext.offered_qos_profiles if info_conns else ()
        derived = {
            "depth": writer.add_connection(options.topic("depth"), "sensor_msgs/msg/Image",
                                           typestore=ts),
            "camera_info": writer.add_connection(options.topic("camera_info"),
                                                 "sensor_msgs/msg/CameraInfo", typestore=ts,
                                                 offered_qos_profiles=qos or ()),
        }
        if options.points:
            derived["points"] = writer.add_connection(options.topic("points"),
                                                      "sensor_msgs/msg/PointCloud2", typestore=ts)
        if options.queries:
            derived["answer"] = writer.add_connection(
                options.topic("answer"), "depthvlm_ros/msg/SpatialAnswer", typestore=ts)

        answers = _AnswerQueue(ts, writer, derived.get("answer"), summary)

        def emit(conn, log_ns: int, msg, msgtype: str) -> None:
            writer.write(conn, log_ns, ts.serialize_cdr(msg, msgtype))
            summary.messages_out += 1

        for q in orphans:
            answers.push(_query_log_ns(q, None, bag_start),
                         _answer_msg(ts, q, None,
                                     _error_result(q, "no frame at or before this time"),
                                     summary))

        frame_times: list[float] = []
        progress = _progress(len(entries), options.progress)
        img_i = -1
        try:
            for conn, log_ns, raw in reader.messages():
                summary.messages_in += 1
                answers.flush(log_ns - 1)
                writer.write(out_conn[(conn.topic, conn.msgtype)], log_ns, raw)
                summary.messages_out += 1
                if conn.topic == options.gt_depth_topic and scorer is not None:
                    scorer.add_gt(ts, conn, raw)
                    continue
                if conn.topic != options.image_topic:
                    continue
                img_i += 1
                progress.update(1)
                entry = entries[img_i]
                summary.frames_total += 1
                if outcomes is None:
                    out, rgb, msg = _infer(ts, conn, raw, entry, img_i, pipeline, options)
                else:
                    out, rgb, msg = outcomes.get(img_i) or _Outcome(drop="bad_image"), None, None
                if out.drop is not None:
                    summary.drop(out.drop)
                    if out.warning:
                        summary.warnings.append(out.warning)
                    if out.fail_reason is not None:  # unpaired frames carry no questions
                        _fail_queries(ts, entry, out.fail_reason, summary, answers, bag_start)
                    continue
                if msg is None:  # inferred on another rank: only the bytes are decoded here
                    msg = ts.deserialize_cdr(raw, conn.msgtype)
                    needs_rgb = (options.points and options.points_rgb) or img_i in report_idx
                    rgb = color_frame(msg, bagconv.image_rgb) if needs_rgb else None
                entry.fallback = out.fallback
                summary.frames_processed += 1
                summary.frames_fallback += int(out.fallback)
                frame_times.append(out.seconds)
                header, depth, intr = msg.header, out.depth, out.intr
                emit(derived["depth"], log_ns, bagconv.make_depth_image(ts, header, depth),
                     "sensor_msgs/msg/Image")
                emit(derived["camera_info"], log_ns,
                     bagconv.make_camera_info(ts, header, intr, entry.info_msg),
                     "sensor_msgs/msg/CameraInfo")
                if options.points:
                    xyz, colours = cloud_points(depth, intr, rgb if options.points_rgb else None,
                                                options.points_stride, options.points_min_range,
                                                options.points_max_range)
                    emit(derived["points"], log_ns,
                         bagconv.make_pointcloud2(ts, header, xyz, colours),
                         "sensor_msgs/msg/PointCloud2")
                for q, res in zip(entry.queries, out.answers):
                    answers.push(_query_log_ns(q, entry, bag_start),
                                 _answer_msg(ts, q, header, res, summary))
                if scorer is not None:
                    scorer.add_pred(img_i, entry.stamp_ns, entry.gt_stamp,
                                    (entry.log_ns - bag_start) / 1e9, depth, intr,
                                    rgb if img_i in report_idx else None)
                elif img_i in report_idx:
                    summary.report_frames.append({"index": img_i, "rgb": rgb, "pred": depth,
                                                  "gt": None, "stamp_ns": entry.stamp_ns})
        finally:
            progress.close()
        answers.flush(None)
        if scorer is not None:
            scorer.finish()
    finally:
        if writer is not None:
            writer.close()
        reader.close()
    if frame_times:
        summary.frame_s_mean = float(np.mean(frame_times))
        summary.frame_s_median = float(np.median(frame_times))
    if summary.frames_unpaired:
        summary.warnings.append(
            f"{summary.frames_unpaired} image(s) had no camera_info with the same stamp and were "
            "skipped (use --fallback-hfov or --sync-tolerance)")
    summary.wall_s = time.perf_counter() - t_start
    return summary


@dataclass
class _Outcome:
    """What became of one image: a drop (with the reason its questions fail with, if any), or
    its depth, intrinsics and answers. Small and picklable, so ranks can send it to rank 0."""

    drop: str | None = None
    warning: str | None = None
    fail_reason: str | None = None
    depth: np.ndarray | None = None
    intr: Intrinsics | None = None
    fallback: bool = False
    answers: list[SpatialResult] = field(default_factory=list)
    seconds: float = math.nan


def _infer(ts, conn, raw, entry: _ImageEntry, img_i: int, pipeline, options: ReplayOptions):
    """Decode, apply the frame rules, infer and answer one image.

    Returns:
        ``(outcome, rgb, msg)``; ``rgb`` and ``msg`` are None for a drop.
    """
    if entry.stamp_ns is None:
        return _Outcome(drop="bad_image"), None, None
    try:
        msg = ts.deserialize_cdr(raw, conn.msgtype)
        rgb = color_frame(msg, bagconv.image_rgb)
    except Exception as exc:  # noqa: BLE001 - undecodable image: count it, go on
        return _Outcome(drop=exc.reason if isinstance(exc, FrameDropped) else "bad_image",
                        fail_reason="the image could not be decoded"), None, None
    h, w = rgb.shape[:2]
    try:
        intr = frame_intrinsics(w, h, entry.info_msg, options.fallback_hfov_deg)
    except FrameDropped as exc:
        if exc.reason == "no_camera_info":
            return _Outcome(drop=exc.reason), None, None
        return _Outcome(drop=exc.reason, warning=f"frame {img_i}: {exc}",
                        fail_reason=str(exc)), None, None
    try:
        result = pipeline.process_frame(rgb, intr, keep_context=bool(entry.queries))
    except InputError as exc:
        return _Outcome(drop="bad_image", warning=f"frame {img_i}: {exc}",
                        fail_reason=str(exc)), None, None
    answers = [answer_question(pipeline, result.context, result.depth, intr, q.question,
                               q.pixels, q.regions, mode=options.answer_mode)
               for q in entry.queries]
    result.context = None  # free the KV cache now, not at the next frame
    return _Outcome(depth=result.depth, intr=intr, fallback=entry.info_msg is None,
                    answers=answers, seconds=result.timings.get("total", math.nan)), rgb, msg


def _answer_msg(ts, q: ScriptedQuery, header, res: SpatialResult, summary: ReplaySummary):
    if header is None:
        header = bagconv.make_header(ts, round(q.time_s * 1e9) if q.absolute else 0, "")
    px = res.pixels
    summary.answers += 1
    summary.answer_errors += int(not res.ok)
    summary.answers_log.append({
        "id": q.id, "question": q.question, "answer": res.answer,
        "model_answer": res.model_answer, "source": int(res.source), "status": int(res.status),
        "status_reason": res.status_reason, "stamp_ns": bagconv.stamp_ns(header.stamp),
        "pixels": np.asarray(px.pixels).tolist(), "depths": [float(d) for d in px.depths]})
    return bagconv.make_spatial_answer(
        ts, header, id=q.id, question=q.question, answer=res.answer, depths=px.depths,
        points=px.points, status=res.status, status_reason=res.status_reason,
        latency=res.timings.get("total_s", 0.0), source=res.source,
        model_answer=res.model_answer, pixels=px.pixels, regions=res.regions)


def _error_result(q: ScriptedQuery, reason: str) -> SpatialResult:
    return SpatialResult(question=q.question, status=STATUS_ERROR, status_reason=reason)


def _fail_queries(ts, entry: _ImageEntry, reason: str, summary: ReplaySummary,
                  answers: _AnswerQueue, bag_start: int) -> None:
    """ERROR answers for the questions about a frame that could not be processed."""
    for q in entry.queries:
        header = bagconv.make_header(ts, entry.stamp_ns or 0, "")
        answers.push(_query_log_ns(q, entry, bag_start),
                     _answer_msg(ts, q, header, _error_result(q, reason), summary))


class _AnswerQueue:
    """Answers waiting for their log time, so the output bag stays in log-time order."""

    def __init__(self, ts, writer, conn, summary: ReplaySummary) -> None:
        self.ts, self.writer, self.conn, self.summary = ts, writer, conn, summary
        self.heap: list[tuple[int, int, bytes]] = []
        self.seq = 0  # ties keep the order the answers were made in

    def push(self, log_ns: int, msg) -> None:
        data = bytes(self.ts.serialize_cdr(msg, "depthvlm_ros/msg/SpatialAnswer"))
        heapq.heappush(self.heap, (log_ns, self.seq, data))
        self.seq += 1

    def flush(self, until: int | None) -> None:
        """Write every answer logged at or before ``until`` (all when None)."""
        while self.heap and (until is None or self.heap[0][0] <= until):
            t, _, data = heapq.heappop(self.heap)
            self.writer.write(self.conn, t, data)
            self.summary.messages_out += 1


class _NoProgress:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def _progress(total: int, enabled: bool, desc: str = "replay", position: int = 0):
    if not enabled:
        return _NoProgress()
    from tqdm import tqdm

    return tqdm(total=total, unit="frame", desc=desc, dynamic_ncols=True, position=position)
