"""Rosbag replay through the depth pipeline, with evaluation against recorded ground truth.

Everything here uses ``rosbags`` (its own typestore and CDR serializer), so replaying and
scoring a bag needs neither rclpy nor a ROS installation. The custom ``depthvlm_ros`` messages
are registered in the typestore from the ``msg/*.msg`` text.

:func:`replay_bag` reads a bag in two passes. The first pass is cheap: it reads every
camera_info (small), and only the header stamps of images and GT depth (12 bytes each, see
:func:`~depthvlm_ros.ros.bagconv.cdr_header_stamp`), so it knows which images can be paired
with intrinsics and which frame each scripted question refers to before any inference runs.
The second pass copies every input message to the output bag in log-time order and, for each
image, runs the pipeline and writes ``depth/image``, ``depth/camera_info``, optionally
``points``, and the ``answer`` messages of the questions that refer to it. Every image is
processed (no drops), in bag order, so the output is deterministic.
"""

from __future__ import annotations

import bisect
import heapq
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from ..core.camera import Intrinsics, backproject
from ..core.errors import InputError
from ..core.spatial import points_for_pixels
from . import bagconv

__all__ = [
    "DEPTHVLM_MSG_TYPES",
    "OUTPUT_TOPICS",
    "STORAGE_FORMATS",
    "find_msg_dir",
    "make_typestore",
    "register_bag_types",
    "open_writer",
    "ScriptedQuery",
    "load_queries",
    "ReplayOptions",
    "FrameScore",
    "ReplaySummary",
    "replay_bag",
    "SampleFrame",
    "SAMPLE_TOPICS",
    "write_frames_bag",
    "write_sample_bag",
    "PlayStats",
    "play_bag",
]

#: Custom interfaces of this package, registered in every typestore made here.
DEPTHVLM_MSG_TYPES = ("SpatialQuery", "SpatialAnswer")

#: Output topics (relative names, resolved under ``ReplayOptions.output_namespace``).
OUTPUT_TOPICS = {"depth": "depth/image", "camera_info": "depth/camera_info", "points": "points",
                 "answer": "answer"}

#: Bag storage formats accepted by the writer.
STORAGE_FORMATS = ("mcap", "sqlite3")

#: How long ``play`` waits, after its last message, for reliable readers to acknowledge.
ACK_TIMEOUT_S = 2.0

_STATUS_OK, _STATUS_ERROR = 0, 2


# ----------------------------------------------------------------------------------------------
# Typestore
# ----------------------------------------------------------------------------------------------

def find_msg_dir() -> Path:
    """Folder holding ``SpatialQuery.msg`` and ``SpatialAnswer.msg``.

    Looked up in ``$DEPTHVLM_MSG_DIR``, the source tree (``<repo>/msg``) and the ``share``
    folders of ``$AMENT_PREFIX_PATH`` (a colcon install), in that order.

    Raises:
        InputError: none of them has the files.
    """
    candidates = []
    if os.environ.get("DEPTHVLM_MSG_DIR"):
        candidates.append(Path(os.environ["DEPTHVLM_MSG_DIR"]))
    candidates.append(Path(__file__).resolve().parents[2] / "msg")
    for prefix in filter(None, os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep)):
        candidates.append(Path(prefix) / "share" / "depthvlm_ros" / "msg")
    for c in candidates:
        if all((c / f"{n}.msg").is_file() for n in DEPTHVLM_MSG_TYPES):
            return c
    raise InputError("cannot find the depthvlm_ros msg/*.msg files (looked in "
                     + ", ".join(str(c) for c in candidates) + "); set DEPTHVLM_MSG_DIR")


def make_typestore():
    """A rosbags typestore (ROS 2 Kilted types) with the depthvlm_ros messages registered."""
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    store = getattr(Stores, "ROS2_KILTED", Stores.LATEST)
    ts = get_typestore(store)
    msg_dir = find_msg_dir()
    types: dict = {}
    for name in DEPTHVLM_MSG_TYPES:
        text = (msg_dir / f"{name}.msg").read_text()
        types.update(get_types_from_msg(text, f"depthvlm_ros/msg/{name}"))
    ts.register(types)
    return ts


def register_bag_types(ts, connections: Iterable) -> list[str]:
    """Register message types that a bag defines but the typestore lacks.

    rosbag2 stores each connection's full definition (``ros2msg`` or ``ros2idl``), so bags
    with custom messages can be read without their packages.

    Returns:
        Types that could not be registered (their messages can still be copied, not decoded).
    """
    from rosbags.typesys import get_types_from_idl, get_types_from_msg

    failed = []
    for conn in connections:
        if conn.msgtype in ts.types:
            continue
        data = getattr(conn.msgdef, "data", "") if conn.msgdef else ""
        try:
            if not data:
                raise ValueError("no definition stored")
            if data.startswith("=" * 80 + "\nIDL: "):
                ts.register(get_types_from_idl(data))
            else:
                ts.register(get_types_from_msg(data, conn.msgtype))
        except Exception:  # noqa: BLE001 - any parse problem only means "cannot decode"
            failed.append(conn.msgtype)
    return failed


def open_writer(path: str | Path, storage: str = "mcap"):
    """A rosbags rosbag2 writer (format version 9) for a new bag folder.

    Raises:
        InputError: unknown storage, or the path exists (rosbag2 writers never overwrite).
    """
    from rosbags.rosbag2 import StoragePlugin, Writer

    if storage not in STORAGE_FORMATS:
        raise InputError(f"storage must be one of {', '.join(STORAGE_FORMATS)}, got {storage!r}")
    path = Path(path)
    if path.exists():
        raise InputError(f"{path} exists already; bags are never overwritten")
    plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
    return Writer(path, version=9, storage_plugin=plugin)


def _copy_connection(writer, conn, ts):
    """Output connection equal to an input one (definition, hash, QoS)."""
    data = getattr(conn.msgdef, "data", "") if conn.msgdef else ""
    ext = conn.ext
    kwargs = {"serialization_format": getattr(ext, "serialization_format", "cdr"),
              "offered_qos_profiles": getattr(ext, "offered_qos_profiles", None) or ()}
    if data and conn.digest:
        return writer.add_connection(conn.topic, conn.msgtype, msgdef=data, rihs01=conn.digest,
                                     **kwargs)
    # Old bags (format < 8) store no definition: generate it from the typestore.
    return writer.add_connection(conn.topic, conn.msgtype, typestore=ts, **kwargs)


# ----------------------------------------------------------------------------------------------
# Scripted queries
# ----------------------------------------------------------------------------------------------

#: ``time`` values at or above this many seconds are read as absolute stamps (after 2001-09).
ABSOLUTE_TIME_THRESHOLD_S = 1e9


@dataclass(frozen=True)
class ScriptedQuery:
    """A question asked at a point in the bag.

    Attributes:
        time_s: seconds from the bag start (``absolute`` false) or an absolute header stamp.
        question: the text.
        pixels: (u, v) pixels of the input image the question refers to.
        id: identifier copied into the answer.
        absolute: ``time_s`` is a header stamp; the frame asked about is the last image whose
            header stamp is not later. Otherwise it is the last image logged not later than
            bag start + ``time_s``.
    """

    time_s: float
    question: str
    pixels: tuple[tuple[float, float], ...] = ()
    id: str = ""
    absolute: bool = False


def load_queries(path: str | Path) -> list[ScriptedQuery]:
    """Read scripted questions from YAML.

    The file is a list (or a mapping with a ``queries`` list) of entries with ``question``,
    one of ``time`` (seconds from bag start; values >= 1e9 are taken as absolute stamps) or
    ``stamp`` (absolute header stamp in seconds), optional ``pixels: [[u, v], ...]`` and
    optional ``id`` (default ``q<index>``).

    Raises:
        InputError: unreadable file or a malformed entry (the message names the entry).
    """
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise InputError(f"cannot read queries {path}: {exc}") from None
    if isinstance(data, dict):
        if set(data) - {"queries"}:
            # A mapping is only a wrapper around the list; other keys mean a wrong file.
            raise InputError(f"{path}: expected a list of queries or a mapping with a 'queries' "
                             f"list, got keys {', '.join(sorted(map(str, data))[:5])}")
        data = data.get("queries")
    if data is None:
        return []
    if not isinstance(data, list):
        raise InputError(f"{path}: expected a list of queries")
    out = []
    for i, entry in enumerate(data):
        where = f"{path}: query {i}"
        if not isinstance(entry, dict):
            raise InputError(f"{where} is not a mapping")
        unknown = set(entry) - {"time", "stamp", "question", "pixels", "id"}
        if unknown:
            raise InputError(f"{where}: unknown keys {', '.join(sorted(unknown))}")
        q = entry.get("question")
        if not isinstance(q, str) or not q.strip():
            raise InputError(f"{where}: 'question' must be non-empty text")
        if ("time" in entry) == ("stamp" in entry):
            raise InputError(f"{where}: give exactly one of 'time' or 'stamp'")
        raw_t = entry.get("time", entry.get("stamp"))
        if isinstance(raw_t, bool) or not isinstance(raw_t, (int, float)) or not math.isfinite(raw_t):
            raise InputError(f"{where}: time must be a number of seconds")
        absolute = "stamp" in entry or raw_t >= ABSOLUTE_TIME_THRESHOLD_S
        if not absolute and raw_t < 0:
            raise InputError(f"{where}: time must not be negative")
        pixels = entry.get("pixels") or []
        try:
            px = tuple((float(p[0]), float(p[1])) for p in pixels if len(p) == 2)
        except (TypeError, ValueError):
            px = ()
        if len(px) != len(pixels) or not all(math.isfinite(c) for p in px for c in p):
            raise InputError(f"{where}: pixels must be a list of [u, v] number pairs")
        qid = entry.get("id", f"q{i}")
        out.append(ScriptedQuery(float(raw_t), q, px, str(qid), absolute))
    return out


# ----------------------------------------------------------------------------------------------
# Options and results
# ----------------------------------------------------------------------------------------------

@dataclass
class ReplayOptions:
    """What :func:`replay_bag` reads and writes.

    Attributes:
        image_topic: colour image topic (rgb8, bgr8, rgba8, bgra8, mono8).
        camera_info_topic: CameraInfo topic, paired with images by header stamp.
        gt_depth_topic: optional GT depth (16UC1 mm or 32FC1 m), paired by header stamp.
        queries: scripted questions.
        points: also write the organized point cloud.
        points_rgb: add packed rgb to the cloud.
        storage: output format, ``mcap`` or ``sqlite3``.
        output_namespace: namespace of the output topics (``/`` gives ``/depth/image``...).
        fallback_hfov_deg: horizontal FOV used for images without camera_info (0: skip them).
        sync_tolerance_s: largest stamp difference when pairing (0: exact stamps).
        gt_min_depth, gt_max_depth: GT outside this range (metres) is not scored.
        report_frames: frames shown as error maps and colourised predictions in the report.
        progress: show a tqdm progress bar.
    """

    image_topic: str
    camera_info_topic: str
    gt_depth_topic: str | None = None
    queries: Sequence[ScriptedQuery] = ()
    points: bool = False
    points_rgb: bool = True
    storage: str = "mcap"
    output_namespace: str = "/"
    fallback_hfov_deg: float = 0.0
    sync_tolerance_s: float = 0.0
    gt_min_depth: float = 1e-3
    gt_max_depth: float = math.inf
    report_frames: int = 4
    progress: bool = True

    def topic(self, key: str) -> str:
        """Fully qualified name of output topic ``key`` (see :data:`OUTPUT_TOPICS`)."""
        ns = "/" + self.output_namespace.strip("/")
        return (ns.rstrip("/") + "/" + OUTPUT_TOPICS[key]) if ns != "/" else "/" + OUTPUT_TOPICS[key]


@dataclass
class FrameScore:
    """Metrics of one scored frame (keys as in ``core.bench.metrics.METRIC_NAMES``)."""

    index: int
    stamp_ns: int
    t_s: float
    metrics: dict[str, float]


@dataclass
class ReplaySummary:
    """Counts and results of one replay.

    ``frames_*`` count image messages; every image is exactly one of processed, unpaired (no
    camera_info and no fallback) or bad (undecodable). ``frames_fallback`` is the subset of
    processed frames that used ``fallback_hfov_deg``.
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

    def as_dict(self) -> dict:
        """JSON-ready dict (NaN -> None; report images left out)."""
        d = asdict(self)
        d.pop("report_frames")
        return _json_clean(d)


def _json_clean(v: Any) -> Any:
    if isinstance(v, float):
        return None if not math.isfinite(v) else v
    if isinstance(v, dict):
        return {k: _json_clean(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_json_clean(x) for x in v]
    return v


# ----------------------------------------------------------------------------------------------
# Replay
# ----------------------------------------------------------------------------------------------

@dataclass
class _ImageEntry:
    log_ns: int
    stamp_ns: int | None           # None: header unreadable (bad message)
    intr: Intrinsics | None = None
    info_msg: Any = None           # the paired CameraInfo (template for depth/camera_info)
    fallback: bool = False
    queries: list[ScriptedQuery] = field(default_factory=list)


class _Pairer:
    """camera_info lookup by header stamp, exact or within a tolerance."""

    def __init__(self, infos: dict[int, tuple[Any, Intrinsics]], tolerance_ns: int) -> None:
        self.infos = infos
        self.keys = sorted(infos)
        self.tol = tolerance_ns

    def find(self, stamp: int):
        if stamp in self.infos:
            return self.infos[stamp]
        if self.tol <= 0 or not self.keys:
            return None
        i = bisect.bisect_left(self.keys, stamp)
        best = min((k for k in self.keys[max(0, i - 1):i + 1]), key=lambda k: abs(k - stamp))
        return self.infos[best] if abs(best - stamp) <= self.tol else None


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
    from rosbags.rosbag2 import Reader

    t_start = time.perf_counter()
    ts = typestore or make_typestore()
    bag = Path(bag)
    if bag.is_file():  # accept the storage file itself, as ros2 bag does
        bag = bag.parent
    summary = ReplaySummary(str(bag), str(out_bag), options.storage)
    try:
        reader = Reader(bag)
        reader.open()
    except Exception as exc:  # noqa: BLE001 - rosbags raises several types for bad bags
        raise InputError(f"cannot open bag {bag}: {exc}") from None
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
        if not info_conns:
            summary.warnings.append(f"camera_info topic {options.camera_info_topic} is not in "
                                    "the bag")
        if options.gt_depth_topic and not gt_conns:
            summary.warnings.append(f"GT depth topic {options.gt_depth_topic} is not in the bag")
        bag_start = int(reader.start_time) if reader.message_count else 0

        # ---- pass 1: camera_info, image and GT stamps -------------------------------------
        entries: list[_ImageEntry] = []
        infos: dict[int, tuple[Any, Intrinsics]] = {}
        gt_stamps: set[int] = set()
        for conn, log_ns, raw in reader.messages(connections=img_conns + info_conns + gt_conns):
            if conn.topic == options.image_topic:
                try:
                    entries.append(_ImageEntry(log_ns, bagconv.cdr_header_stamp(raw)))
                except InputError:
                    entries.append(_ImageEntry(log_ns, None))
            elif conn.topic == options.camera_info_topic:
                try:
                    msg = ts.deserialize_cdr(raw, conn.msgtype)
                    infos[bagconv.stamp_ns(msg.header.stamp)] = (msg, bagconv.camera_info_intrinsics(msg))
                except Exception:  # noqa: BLE001 - a broken camera_info is counted, not fatal
                    summary.camera_info_bad += 1
            else:
                try:
                    gt_stamps.add(bagconv.cdr_header_stamp(raw))
                except InputError:
                    pass  # counted as bad GT in pass 2, where it is decoded
        pairer = _Pairer(infos, round(options.sync_tolerance_s * 1e9))
        for e in entries:
            if e.stamp_ns is None:
                continue
            found = pairer.find(e.stamp_ns)
            if found is not None:
                e.info_msg, e.intr = found
        orphans = _assign_queries(entries, options.queries, bag_start,
                                  options.fallback_hfov_deg > 0)
        report_idx = _pick_report_indices(len(entries), options.report_frames)

        # ---- metrics (the benchmark's arithmetic) -----------------------------------------
        scorer = _Scorer(options, summary) if gt_conns else None

        # ---- pass 2: copy, infer, write ----------------------------------------------------
        writer = open_writer(out_bag, options.storage)
        writer.open()
        out_conn: dict[tuple[str, str], Any] = {}
        for c in reader.connections:
            key = (c.topic, c.msgtype)
            if key not in out_conn:
                out_conn[key] = _copy_connection(writer, c, ts)
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
                         _answer_msg(ts, q, None, None, None, "no frame at or before this time",
                                     0.0, summary))
        image_stamps = {e.stamp_ns for e in entries if e.stamp_ns is not None}

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
                    scorer.add_gt(ts, conn, raw, image_stamps)
                    continue
                if conn.topic != options.image_topic:
                    continue
                img_i += 1
                progress.update(1)
                entry = entries[img_i]
                summary.frames_total += 1
                if entry.stamp_ns is None:
                    summary.frames_bad += 1
                    continue
                try:
                    msg = ts.deserialize_cdr(raw, conn.msgtype)
                    rgb = bagconv.image_rgb(msg)
                except Exception:  # noqa: BLE001 - undecodable image: count it, keep going
                    summary.frames_bad += 1
                    _fail_queries(ts, entry, "the image could not be decoded", summary, answers,
                                  bag_start)
                    continue
                h, w = rgb.shape[:2]
                intr, template = entry.intr, entry.info_msg
                if intr is not None and (intr.width, intr.height) != (w, h):
                    intr = intr.scaled(w, h)  # camera_info of a binned/resized stream
                if intr is None and options.fallback_hfov_deg > 0:
                    intr = Intrinsics.from_fov(w, h, options.fallback_hfov_deg)
                    template, entry.fallback = None, True
                if intr is None:
                    summary.frames_unpaired += 1
                    continue
                try:
                    result = pipeline.process_frame(rgb, intr, keep_context=bool(entry.queries))
                except InputError as exc:
                    summary.frames_bad += 1
                    summary.warnings.append(f"frame {img_i}: {exc}")
                    _fail_queries(ts, entry, str(exc), summary, answers, bag_start)
                    continue
                summary.frames_processed += 1
                summary.frames_fallback += int(entry.fallback)
                frame_times.append(result.timings.get("total", float("nan")))
                header = msg.header
                depth = result.depth
                emit(derived["depth"], log_ns, bagconv.make_depth_image(ts, header, depth),
                     "sensor_msgs/msg/Image")
                emit(derived["camera_info"], log_ns,
                     bagconv.make_camera_info(ts, header, intr, template),
                     "sensor_msgs/msg/CameraInfo")
                if options.points:
                    xyz = backproject(depth, intr)
                    emit(derived["points"], log_ns,
                         bagconv.make_pointcloud2(ts, header, xyz,
                                                  rgb if options.points_rgb else None),
                         "sensor_msgs/msg/PointCloud2")
                for q in entry.queries:
                    t0 = time.perf_counter()
                    try:
                        ans = pipeline.answer(result.context, q.question)
                        text, status, reason = ans.text, _STATUS_OK, ""
                    except InputError as exc:
                        text, status, reason = "", _STATUS_ERROR, str(exc)
                    latency = time.perf_counter() - t0
                    answers.push(_query_log_ns(q, entry, bag_start),
                                 _answer_msg(ts, q, header, depth, intr, reason, latency,
                                             summary, text=text, status=status))
                result.context = None  # free the KV cache now, not at the next frame
                if scorer is not None:
                    scorer.add_pred(img_i, entry, depth, rgb, bag_start, img_i in report_idx)
                elif img_i in report_idx:
                    summary.report_frames.append({"index": img_i, "rgb": rgb, "pred": depth,
                                                  "gt": None, "stamp_ns": entry.stamp_ns})
        finally:
            progress.close()
        answers.flush(None)
        if scorer is not None:
            scorer.finish(gt_stamps)
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


def _answer_msg(ts, q: ScriptedQuery, header, depth, intr, reason: str, latency: float,
                summary: ReplaySummary, text: str = "", status: int = _STATUS_ERROR):
    if header is None:
        header = bagconv.make_header(ts, round(q.time_s * 1e9) if q.absolute else 0, "")
    if depth is not None and status == _STATUS_OK and q.pixels:
        depths, points = points_for_pixels(depth, intr, q.pixels)
    else:
        depths = np.full(len(q.pixels), np.nan, np.float32)
        points = np.full((len(q.pixels), 3), np.nan)
    summary.answers += 1
    summary.answer_errors += int(status != _STATUS_OK)
    summary.answers_log.append({
        "id": q.id, "question": q.question, "answer": text, "status": int(status),
        "status_reason": reason, "stamp_ns": bagconv.stamp_ns(header.stamp),
        "depths": [float(d) for d in depths]})
    return bagconv.make_spatial_answer(ts, header, id=q.id, question=q.question, answer=text,
                                       depths=depths, points=points, status=status,
                                       status_reason=reason, latency=latency)


def _fail_queries(ts, entry: _ImageEntry, reason: str, summary: ReplaySummary,
                  answers: _AnswerQueue, bag_start: int) -> None:
    """ERROR answers for the questions about a frame that could not be processed."""
    for q in entry.queries:
        header = bagconv.make_header(ts, entry.stamp_ns or 0, "")
        answers.push(_query_log_ns(q, entry, bag_start),
                     _answer_msg(ts, q, header, None, None, reason, 0.0, summary))


class _Scorer:
    """Pairs predictions with GT by stamp (either may come first) and scores each pair."""

    def __init__(self, options: ReplayOptions, summary: ReplaySummary) -> None:
        from ..core.bench import metrics

        self.m = metrics
        self.opt = options
        self.summary = summary
        self.gt: dict[int, np.ndarray] = {}
        self.pred: dict[int, tuple] = {}

    def add_gt(self, ts, conn, raw, image_stamps: set[int]) -> None:
        try:
            msg = ts.deserialize_cdr(raw, conn.msgtype)
            gt = bagconv.image_depth_m(msg)
            stamp = bagconv.stamp_ns(msg.header.stamp)
        except Exception:  # noqa: BLE001 - bad GT is counted, the frame stays unscored
            self.summary.gt_bad += 1
            return
        if stamp in self.pred:
            self._score(stamp, gt, *self.pred.pop(stamp))
        elif stamp in image_stamps:
            self.gt[stamp] = gt
        else:
            self.summary.gt_unmatched += 1

    def add_pred(self, index: int, entry: _ImageEntry, depth: np.ndarray, rgb: np.ndarray,
                 bag_start: int, keep_rgb: bool) -> None:
        t_s = (entry.log_ns - bag_start) / 1e9
        item = (index, t_s, depth, rgb if keep_rgb else None)
        if entry.stamp_ns in self.gt:
            self._score(entry.stamp_ns, self.gt.pop(entry.stamp_ns), *item)
        else:
            self.pred[entry.stamp_ns] = item

    def _score(self, stamp: int, gt: np.ndarray, index: int, t_s: float, depth: np.ndarray,
               rgb: np.ndarray | None) -> None:
        m = self.m
        # apply_depth_range zeroes NaN and +-Inf itself; nan_to_num would have turned +Inf
        # (REP 118: "too far") into a valid 3.4e38 m GT pixel.
        capped = m.apply_depth_range(gt, self.opt.gt_min_depth, self.opt.gt_max_depth)
        pred, g = m.dense_pair(depth, capped, None)
        im = m.image_metrics(pred, g)
        self.summary.scores.append(FrameScore(index, stamp, t_s, im.as_dict()))
        self.summary.frames_scored += 1
        if rgb is not None:
            self.summary.report_frames.append({"index": index, "rgb": rgb, "pred": depth,
                                               "gt": np.where(g > 0, g, np.nan),
                                               "stamp_ns": stamp})

    def finish(self, gt_stamps: set[int]) -> None:
        self.summary.scores.sort(key=lambda s: s.index)
        self.summary.report_frames.sort(key=lambda f: f["index"])
        self.summary.gt_unmatched += len(self.gt)
        if self.pred:
            self.summary.warnings.append(f"{len(self.pred)} processed frame(s) had no GT depth "
                                         "with the same stamp")
        scores = [self.m.ImageMetrics(**s.metrics) for s in self.summary.scores]
        if scores:
            self.summary.aggregate = self.m.aggregate(scores).as_dict()


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


def _progress(total: int, enabled: bool):
    if not enabled:
        return _NoProgress()
    from tqdm import tqdm

    return tqdm(total=total, unit="frame", desc="replay", dynamic_ncols=True)


# ----------------------------------------------------------------------------------------------
# Sample bags
# ----------------------------------------------------------------------------------------------

#: Topics of :func:`write_sample_bag` / ``depthvlm make-sample-bag``.
SAMPLE_TOPICS = {"image": "/camera/image_raw", "camera_info": "/camera/camera_info",
                 "gt_depth": "/camera/depth_gt"}


@dataclass
class SampleFrame:
    """One RGB-D frame to write into a bag.

    Attributes:
        rgb: (H, W, 3) uint8.
        intrinsics: the camera's intrinsics (None: no camera_info is written for this frame).
        depth: GT depth in metres (0 or NaN invalid), or None for no GT message.
        stamp_ns: header stamp and log time.
    """

    rgb: np.ndarray
    intrinsics: Intrinsics | None
    depth: np.ndarray | None
    stamp_ns: int


def write_frames_bag(path: str | Path, frames: Iterable[SampleFrame], storage: str = "mcap",
                     frame_id: str = "camera_optical_frame", topics: dict | None = None,
                     gt_encoding: str = "32FC1", typestore=None) -> int:
    """Write frames as image (rgb8) + camera_info + GT depth messages.

    Each frame's messages share its stamp as header stamp and log time. GT is ``32FC1`` metres
    (NaN invalid) or ``16UC1`` millimetres (0 invalid).

    Returns:
        The number of frames written.
    """
    if gt_encoding not in ("32FC1", "16UC1"):
        raise InputError(f"GT encoding must be 32FC1 or 16UC1, got {gt_encoding}")
    ts = typestore or make_typestore()
    names = {**SAMPLE_TOPICS, **(topics or {})}
    n = 0
    with open_writer(path, storage) as writer:
        conns = {
            "image": writer.add_connection(names["image"], "sensor_msgs/msg/Image", typestore=ts),
            "camera_info": writer.add_connection(names["camera_info"],
                                                 "sensor_msgs/msg/CameraInfo", typestore=ts),
            "gt_depth": writer.add_connection(names["gt_depth"], "sensor_msgs/msg/Image",
                                              typestore=ts),
        }
        for f in frames:
            header = bagconv.make_header(ts, f.stamp_ns, frame_id)
            img = bagconv.make_image(ts, header, np.ascontiguousarray(f.rgb, dtype=np.uint8), "rgb8")
            writer.write(conns["image"], f.stamp_ns, ts.serialize_cdr(img, "sensor_msgs/msg/Image"))
            if f.intrinsics is not None:
                info = bagconv.make_camera_info(ts, header, f.intrinsics)
                writer.write(conns["camera_info"], f.stamp_ns,
                             ts.serialize_cdr(info, "sensor_msgs/msg/CameraInfo"))
            if f.depth is not None:
                d = np.asarray(f.depth, dtype=np.float32)
                valid = np.isfinite(d) & (d > 0)
                if gt_encoding == "32FC1":
                    gt = bagconv.make_depth_image(ts, header, np.where(valid, d, np.nan))
                else:
                    mm = np.where(valid, np.clip(np.round(d * 1000.0), 1, 65535), 0)
                    gt = bagconv.make_image(ts, header, mm.astype(np.uint16), "16UC1")
                writer.write(conns["gt_depth"], f.stamp_ns,
                             ts.serialize_cdr(gt, "sensor_msgs/msg/Image"))
            n += 1
    return n


#: First stamp of sample bags (2023-11-14T22:13:20Z), a realistic wall-clock epoch.
SAMPLE_START_NS = 1_700_000_000 * 1_000_000_000


def write_sample_bag(path: str | Path, frames: int = 20, width: int = 320, height: int = 240,
                     storage: str = "mcap", rate_hz: float = 10.0, seed: int = 0,
                     fx: float | None = None) -> int:
    """A bag of procedural RGB-D frames from the benchmark's scene generator.

    Frames alternate between indoor and outdoor scenes (seed ``seed + i``), at ``rate_hz``
    from :data:`SAMPLE_START_NS`, on the :data:`SAMPLE_TOPICS` topics, frame
    ``camera_optical_frame``, GT as ``32FC1`` metres.

    Returns:
        The number of frames written.
    """
    from ..core.bench.synthetic import render_scene

    if frames < 1 or width < 8 or height < 8 or rate_hz <= 0:
        raise InputError("need frames >= 1, width and height >= 8 and a positive rate")
    kinds = ("indoor", "outdoor")
    period = round(1e9 / rate_hz)

    def gen():
        for i in range(frames):
            kw = {"width": width, "height": height}
            if fx is not None:
                kw["fx"] = fx
            sc = render_scene(seed + i, kinds[i % 2], **kw)
            intr = Intrinsics(float(sc.fx), float(sc.fy), float(sc.cx), float(sc.cy),
                              sc.rgb.shape[1], sc.rgb.shape[0])
            yield SampleFrame(sc.rgb, intr, sc.depth, SAMPLE_START_NS + i * period)

    return write_frames_bag(path, gen(), storage)


# ----------------------------------------------------------------------------------------------
# Play (rclpy)
# ----------------------------------------------------------------------------------------------

@dataclass
class PlayStats:
    """What :func:`play_bag` published.

    Attributes:
        messages: messages published (all loops).
        per_topic: messages published per topic.
        loops: complete passes over the bag.
        clock_messages: ``/clock`` messages published.
        skipped_topics: topic -> reason, for topics that could not be published.
        wall_s: seconds from the first message to the end.
    """

    messages: int = 0
    per_topic: dict[str, int] = field(default_factory=dict)
    loops: int = 0
    clock_messages: int = 0
    skipped_topics: dict[str, str] = field(default_factory=dict)
    wall_s: float = 0.0


def _rclpy_type(msgtype: str):
    """The rclpy message class for a rosbags type name such as ``sensor_msgs/msg/Image``."""
    try:
        from rosidl_runtime_py.utilities import get_message  # present in full ROS installs

        return get_message(msgtype)
    except ImportError:
        pass
    import importlib

    pkg, sub, name = msgtype.split("/")
    return getattr(importlib.import_module(f"{pkg}.{sub}"), name)


def play_bag(bag: str | Path, rate: float = 1.0, clock: bool = False, loop: bool = False,
             topics: Sequence[str] | None = None, delay_s: float = 0.0,
             wait_for_subscribers_s: float = 0.0, clock_hz: float = 40.0,
             node_name: str = "depthvlm_play", stop=None, log=print) -> PlayStats:
    """Publish a bag's messages on live ROS topics with their recorded timing.

    Messages are published as their recorded CDR bytes (what ``ros2 bag play`` does), on
    publishers of the rclpy type named by the bag; the first message of each topic is also
    deserialised with ``rclpy.serialization`` to check that the installed type matches the
    recorded definition, and topics that fail are skipped with a reason. The i-th message goes
    out ``(log_time_i - log_time_0) / rate`` seconds after the start. With ``clock``,
    ``/clock`` (rosgraph_msgs/Clock) carries the bag time at ``clock_hz`` and before every
    message, so nodes with ``use_sim_time`` follow the bag.

    Args:
        bag: rosbag2 folder (or its storage file).
        rate: playback speed factor (> 0).
        clock: publish ``/clock``.
        loop: start over at the end until ``stop`` is set (or interrupted).
        topics: only these topics (default all).
        delay_s: wait this long after creating the publishers, so subscribers can match.
        wait_for_subscribers_s: then wait up to this long until every publisher has matched
            at least one subscriber (discovery takes a variable time, so a fixed delay alone
            can drop the first messages).
        clock_hz: ``/clock`` rate while waiting between messages.
        node_name: name of the publishing node.
        stop: optional ``threading.Event`` that ends playback.
        log: where progress lines go (None: silent).

    Returns:
        :class:`PlayStats`.

    Raises:
        InputError: bad arguments, unreadable bag, or a requested topic not in the bag.
    """
    import rclpy
    from rclpy.duration import Duration
    from rclpy.serialization import deserialize_message
    from rosbags.rosbag2 import Reader

    from . import qos

    if not rate > 0 or not math.isfinite(rate):
        raise InputError(f"rate must be positive, got {rate}")
    if clock_hz <= 0:
        raise InputError(f"clock rate must be positive, got {clock_hz}")
    bag = Path(bag)
    if bag.is_file():
        bag = bag.parent
    try:
        reader = Reader(bag)
        reader.open()
    except Exception as exc:  # noqa: BLE001 - rosbags raises several types for bad bags
        raise InputError(f"cannot open bag {bag}: {exc}") from None
    stats = PlayStats()
    context = rclpy.Context()
    rclpy.init(context=context)
    node = None
    try:
        available = {c.topic for c in reader.connections}
        if topics:
            missing = sorted(set(topics) - available)
            if missing:
                raise InputError(f"topic(s) {', '.join(missing)} not in {bag} "
                                 f"(topics: {', '.join(sorted(available))})")
        conns = [c for c in reader.connections if not topics or c.topic in topics]
        node = rclpy.create_node(node_name, context=context)
        pubs: dict[int, Any] = {}
        types: dict[int, Any] = {}
        by_topic: dict[tuple[str, str], Any] = {}
        for c in conns:
            key = (c.topic, c.msgtype)
            try:
                if key not in by_topic:
                    cls = _rclpy_type(c.msgtype)
                    by_topic[key] = (node.create_publisher(cls, c.topic, qos.bag_replay(getattr(c.ext, "offered_qos_profiles", None))), cls)
                pubs[c.id], types[c.id] = by_topic[key]
            except Exception as exc:  # noqa: BLE001 - a missing type skips only its topic
                stats.skipped_topics[c.topic] = f"type {c.msgtype} not available: {exc}"
        clock_pub = None
        if clock:
            from rosgraph_msgs.msg import Clock

            clock_pub = node.create_publisher(Clock, "/clock", qos.CLOCK)
        for t, why in stats.skipped_topics.items():
            if log:
                log(f"play: skipping {t}: {why}")
        live = [c for c in conns if c.id in pubs]
        if not live:
            raise InputError(f"nothing to publish from {bag}")
        stopped = (lambda: stop.is_set()) if stop is not None else (lambda: False)
        if delay_s > 0:
            time.sleep(delay_s)
        if wait_for_subscribers_s > 0:
            until = time.monotonic() + wait_for_subscribers_s
            waiting = list(by_topic.values())
            while time.monotonic() < until:
                waiting = [(p, c) for p, c in waiting if p.get_subscription_count() == 0]
                if not waiting:
                    break
                time.sleep(0.02)
            if waiting and log:
                log("play: no subscriber on " + ", ".join(p.topic_name for p, _ in waiting))
        checked: set[int] = set()
        period = 1.0 / clock_hz
        t_first = time.monotonic()

        def publish_clock(bag_ns: int) -> None:
            sec, nsec = divmod(int(bag_ns), 1_000_000_000)
            m = Clock()
            m.clock.sec, m.clock.nanosec = sec, nsec
            clock_pub.publish(m)
            stats.clock_messages += 1

        while True:
            start_ns = None
            wall0 = time.monotonic()
            next_clock = wall0
            for conn, log_ns, raw in reader.messages(connections=live):
                if stopped():
                    break
                if start_ns is None:
                    start_ns = log_ns
                due = wall0 + (log_ns - start_ns) / 1e9 / rate
                # Sleep in slices so /clock keeps ticking and a stop request is seen quickly.
                while True:
                    now = time.monotonic()
                    if clock_pub is not None and now >= next_clock:
                        # Clamped to the next message's time, so /clock never runs ahead of
                        # the data and never goes backwards when that message is published.
                        publish_clock(min(start_ns + int((now - wall0) * rate * 1e9), log_ns))
                        next_clock = now + period
                    if now >= due or stopped():
                        break
                    time.sleep(min(due - now, period, 0.05))
                if conn.id not in checked:
                    try:
                        deserialize_message(bytes(raw), types[conn.id])
                    except Exception as exc:  # noqa: BLE001 - definition mismatch: skip topic
                        stats.skipped_topics[conn.topic] = f"recorded data does not match " \
                                                           f"the installed type: {exc}"
                        live = [c for c in live if c.id != conn.id]
                        pubs.pop(conn.id)
                        continue
                    checked.add(conn.id)
                if conn.id not in pubs:
                    continue
                if clock_pub is not None:
                    publish_clock(log_ns)
                pubs[conn.id].publish(bytes(raw))
                stats.messages += 1
                stats.per_topic[conn.topic] = stats.per_topic.get(conn.topic, 0) + 1
            else:
                stats.loops += 1
                if loop and live and not stopped():
                    continue
            break
        stats.wall_s = time.monotonic() - t_first
        # A reliable writer destroyed right after its last publish cannot resend what a busy
        # reader missed: give the readers a moment to acknowledge everything first.
        for pub in {id(p): p for p in [*pubs.values(), clock_pub] if p is not None}.values():
            pub.wait_for_all_acked(Duration(seconds=ACK_TIMEOUT_S))
    finally:
        reader.close()
        if node is not None:
            node.destroy_node()
        context.try_shutdown()
    return stats
