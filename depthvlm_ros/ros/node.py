"""``depthvlm_node``: the DepthVLM lifecycle node (message -> pipeline -> messages).

The node is a translation layer. :mod:`depthvlm_ros.ros.convert` turns messages into arrays,
:class:`~depthvlm_ros.core.pipeline.DepthVLMPipeline` does all model work,
:mod:`depthvlm_ros.core.spatial` reads depths and points at pixels, and
:mod:`depthvlm_ros.core.scheduling` decides what runs, waits or is dropped. Topic names are relative
(namespaces and remaps choose the final ones):

=====  ======================  ==================================  =========================
dir    topic                   type                                QoS
=====  ======================  ==================================  =========================
in     image                   sensor_msgs/Image                   ``image_qos``
in     image/compressed        sensor_msgs/CompressedImage         ``image_qos``, instead of
                                                                   ``image`` when
                                                                   ``image_transport`` is
                                                                   ``compressed``
in     camera_info             sensor_msgs/CameraInfo              ``image_qos``
in     query                   depthvlm_ros/SpatialQuery           reliable, depth 1000
in     query_text              std_msgs/String                     reliable, depth 1000
out    depth/image             sensor_msgs/Image (32FC1 m / 16UC1  reliable, depth 5
                               mm, ``depth_encoding``)
out    depth/camera_info       sensor_msgs/CameraInfo              reliable, depth 5
out    points                  sensor_msgs/PointCloud2             reliable, depth 2
out    depth/colorized         sensor_msgs/Image (rgb8)            reliable, depth 2
out    answer                  depthvlm_ros/SpatialAnswer          reliable, depth 1000
out    /diagnostics            diagnostic_msgs/DiagnosticArray     reliable, depth 10
=====  ======================  ==================================  =========================

With ``cameras`` naming several cameras (``front,left,right``), one model serves them all:
every topic above except ``answer`` and ``/diagnostics`` stands under each camera's name
(``front/image``, ``front/depth/image``, ``front/query``, ...), each camera has its own stamp
pairing, frame history and diagnostics status, and the worker runs the newest frame of each
camera in turn. ``query`` and ``query_text`` without a camera prefix stay: a SpatialQuery there
names its camera (``camera``, or the ``frame_id`` of its header), a plain question there is about
the first camera. Every answer names its camera.

Lifecycle: parameters are read and validated and the model is loaded in ``configure``; topics
flow only while ``active``; with ``autostart`` (default) the node configures and activates itself.
"""

from __future__ import annotations

import functools
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import (FloatingPointRange, IntegerRange, ParameterDescriptor,
                                SetParametersResult)
from rclpy.duration import Duration
from rclpy.exceptions import InvalidParameterTypeException, InvalidParameterValueException
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2
from std_msgs.msg import Header, String

from depthvlm_ros.msg import SpatialAnswer, SpatialQuery

from ..core.cameras import camera_topic, choose_camera, parse_camera_names
from ..core.frames import (FrameDropped, cloud_points, color_frame, frame_intrinsics,
                           output_camera_info)
from ..core.config import DepthVLMConfig, field_specs
from ..core.errors import DepthVLMError, InputError
from ..core.answers import answer_question
from ..core.spatial import MAX_REGIONS, validate_pixels
from ..core.visualize import colorize_depth
from . import convert, qos
from ..core.scheduling import (Counters, FrameJob, HeldFrame, LatestFrameWorker, QueryJob,
                               StampPairer)

__all__ = ["DepthVLMNode", "main", "LIVE_PARAMETERS", "STARTUP_PARAMETERS"]

#: Parameters applied as soon as they are set; all others take effect at the next configure.
LIVE_PARAMETERS = frozenset({"publish_points", "points_rgb", "publish_colorized",
                             "warn_throttle_s", "max_new_tokens", "sync_tolerance_s",
                             "fallback_hfov_deg", "answer_mode", "depth_encoding",
                             "points_stride", "points_min_range", "points_max_range"})

#: Longest wait, when the node releases its publishers, for subscribers to acknowledge the
#: last answers (seconds).
ANSWER_ACK_TIMEOUT_S = 2.0

#: Parameters only read when the node starts (read-only afterwards).
STARTUP_PARAMETERS = frozenset({"autostart"})



def _stamp_ns(stamp) -> int:
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def _copy_header(header) -> Header:
    out = Header()
    out.stamp.sec, out.stamp.nanosec = int(header.stamp.sec), int(header.stamp.nanosec)
    out.frame_id = header.frame_id
    return out


@dataclass
class _Camera:
    """One camera's state on the node: its pairing, counters, publishers and latest frame."""

    name: str
    pairer: StampPairer
    stats: Counters = field(default_factory=Counters)
    pubs: dict = field(default_factory=dict)
    last_frame_id: str = ""

    def topic(self, relative: str) -> str:
        return camera_topic(self.name, relative)


def _descriptor(spec) -> ParameterDescriptor:
    desc = ParameterDescriptor(description=spec.description,
                               read_only=spec.name in STARTUP_PARAMETERS)
    if spec.range is not None and spec.type is float:
        desc.floating_point_range = [FloatingPointRange(
            from_value=float(spec.range[0]), to_value=float(spec.range[1]), step=0.0)]
    elif spec.range is not None and spec.type is int:
        desc.integer_range = [IntegerRange(
            from_value=int(spec.range[0]), to_value=int(spec.range[1]), step=1)]
    if spec.choices:
        desc.additional_constraints = "one of: " + ", ".join(spec.choices)
    if spec.name not in LIVE_PARAMETERS | STARTUP_PARAMETERS:
        desc.additional_constraints = (desc.additional_constraints + "; " if
                                       desc.additional_constraints else "") + \
            "applied at the next configure transition"
    return desc


class DepthVLMNode(LifecycleNode):
    """Lifecycle node publishing metric depth, point clouds and spatial answers for its cameras.

    Args:
        node_name: name of the node.
        **kwargs: passed to :class:`rclpy.lifecycle.LifecycleNode` (namespace, parameter
            overrides, context, ...).
    """

    def __init__(self, node_name: str = "depthvlm_node", **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        self._param_errors: dict[str, str] = {}
        self._declare_parameters()
        self.add_on_set_parameters_callback(self._on_set_parameters)

        self._cfg: Optional[DepthVLMConfig] = None
        self._pipeline = None
        self._worker: Optional[LatestFrameWorker] = None
        #: Camera name -> its state, in configured order ('' = the one unnamed camera).
        self._cameras: dict[str, _Camera] = {}
        self._pair_lock = threading.Lock()
        self._stats = Counters()  # questions, over all cameras
        self._warned: dict[str, float] = {}
        self._subs: list = []
        self._pubs: dict[str, Any] = {}
        self._diag_timer = None
        self._active = False

        self._autostart_timer = None
        if self.get_parameter("autostart").value:
            # One-shot: transitions must not run inside the constructor, where the executor
            # (and anyone watching the lifecycle services) is not up yet.
            self._autostart_timer = self.create_timer(0.0, self._autostart)

    # --------------------------------------------------------------------------------------
    # parameters
    def _declare_parameters(self) -> None:
        for spec in field_specs():
            desc = _descriptor(spec)
            try:
                self.declare_parameter(spec.name, spec.default, desc)
            except (InvalidParameterTypeException, InvalidParameterValueException) as exc:
                # A bad override (wrong type or out of range) must not kill the process: keep
                # the default, remember the problem, and fail the configure transition with it.
                self._param_errors[spec.name] = f"{spec.name}: {exc}"
                self.declare_parameter(spec.name, spec.default, _descriptor(spec),
                                       ignore_override=True)
                self.get_logger().error(f"invalid parameter override: {exc}")

    def _values(self, changes: Optional[dict] = None) -> dict[str, Any]:
        values = {s.name: self.get_parameter(s.name).value for s in field_specs()}
        values.update(changes or {})
        return values

    def _on_set_parameters(self, params) -> SetParametersResult:
        names = {s.name for s in field_specs()}
        changes = {p.name: p.value for p in params if p.name in names}
        if not changes:
            return SetParametersResult(successful=True)
        try:
            DepthVLMConfig(**self._values(changes)).validate()
        except (DepthVLMError, TypeError) as exc:
            return SetParametersResult(successful=False, reason=str(exc))
        for name in changes:
            self._param_errors.pop(name, None)
        live = {k: v for k, v in changes.items() if k in LIVE_PARAMETERS}
        if self._cfg is not None and live:
            self._cfg = self._cfg.replace(**live)
            if "sync_tolerance_s" in live:
                with self._pair_lock:
                    for cam in self._cameras.values():
                        cam.pairer.tolerance_ns = int(live["sync_tolerance_s"] * 1e9)
            if self._worker is not None and "sync_tolerance_s" in live:
                self._worker.stamp_tolerance_ns = int(live["sync_tolerance_s"] * 1e9)
        later = sorted(set(changes) - LIVE_PARAMETERS)
        if later and self._cfg is not None:
            self.get_logger().info(f"parameter(s) {', '.join(later)} take effect at the next "
                                   "configure (deactivate, cleanup, configure, activate)")
        return SetParametersResult(successful=True)

    # --------------------------------------------------------------------------------------
    # lifecycle
    def _autostart(self) -> None:
        self.destroy_timer(self._autostart_timer)
        self._autostart_timer = None
        if self.trigger_configure() == TransitionCallbackReturn.SUCCESS:
            self.trigger_activate()

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        if self._param_errors:
            self.get_logger().error("configure failed: invalid parameter(s): "
                                    + "; ".join(self._param_errors.values()))
            return TransitionCallbackReturn.FAILURE
        try:
            cfg = DepthVLMConfig.from_mapping(self._values())
        except DepthVLMError as exc:
            self.get_logger().error(f"configure failed: {exc}")
            return TransitionCallbackReturn.FAILURE
        from ..core.pipeline import DepthVLMPipeline  # torch: imported when first needed

        t0 = time.perf_counter()
        try:
            pipeline = DepthVLMPipeline.from_config(cfg)
        except DepthVLMError as exc:
            self.get_logger().error(f"configure failed: cannot load the model: {exc}")
            return TransitionCallbackReturn.FAILURE
        for warning in pipeline.check_report.warnings if pipeline.check_report else ():
            self.get_logger().warning(f"model folder: {warning}")
        self.get_logger().info(
            f"model '{cfg.model_path}' loaded in {time.perf_counter() - t0:.1f} s on "
            f"{pipeline.device} ({pipeline.dtype}, head: {pipeline.head_backend_name})")
        self._cfg, self._pipeline = cfg, pipeline
        self._stats = Counters()
        self._cameras = {}
        for name in parse_camera_names(cfg.cameras):  # validated with the config
            cam = _Camera(name, StampPairer(cfg.camera_info_buffer,
                                            int(cfg.sync_tolerance_s * 1e9)))
            cam.pubs = {
                "depth": self.create_lifecycle_publisher(Image, cam.topic("depth/image"),
                                                         qos.DEPTH_OUT),
                "info": self.create_lifecycle_publisher(CameraInfo,
                                                        cam.topic("depth/camera_info"),
                                                        qos.DEPTH_OUT),
                "points": self.create_lifecycle_publisher(PointCloud2, cam.topic("points"),
                                                          qos.PREVIEW_OUT),
                "colorized": self.create_lifecycle_publisher(Image, cam.topic("depth/colorized"),
                                                             qos.PREVIEW_OUT),
            }
            self._cameras[name] = cam
        self._worker = LatestFrameWorker(
            self._run_frames, self._run_query, cfg.query_queue_size, cfg.frame_history,
            int(cfg.sync_tolerance_s * 1e9), on_error=self._on_worker_error,
            batch_frames=cfg.frames_per_pass)
        self._pubs = {
            "answer": self.create_lifecycle_publisher(SpatialAnswer, "answer",
                                                      qos.REQUEST_REPLY),
            "diag": self.create_lifecycle_publisher(DiagnosticArray, "/diagnostics",
                                                    qos.DIAGNOSTICS),
        }
        if len(self._cameras) > 1:
            self.get_logger().info(f"serving {len(self._cameras)} cameras with one model: "
                                   + ", ".join(self._cameras))
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        cfg = self._cfg
        image_qos = qos.image_input(cfg.image_qos)
        self._subs = [
            self.create_subscription(SpatialQuery, "query", self._on_query, qos.REQUEST_REPLY),
            self.create_subscription(String, "query_text", self._on_query_text,
                                     qos.REQUEST_REPLY),
        ]
        image_topics = []
        for cam in self._cameras.values():
            image_type, image_topic = self._image_input(cfg.image_transport, cam)
            image_topics.append(self.resolve_topic_name(image_topic))
            self._subs += [
                self.create_subscription(image_type, image_topic,
                                         functools.partial(self._on_image, cam=cam), image_qos),
                self.create_subscription(CameraInfo, cam.topic("camera_info"),
                                         functools.partial(self._on_camera_info, cam=cam),
                                         image_qos),
            ]
            if cam.name:  # a camera's own question topics: the camera is implied
                self._subs += [
                    self.create_subscription(SpatialQuery, cam.topic("query"),
                                             functools.partial(self._on_query, cam=cam),
                                             qos.REQUEST_REPLY),
                    self.create_subscription(String, cam.topic("query_text"),
                                             functools.partial(self._on_query_text, cam=cam),
                                             qos.REQUEST_REPLY),
                ]
        self._diag_timer = self.create_timer(cfg.diagnostics_period_s, self._publish_diagnostics)
        self._stats.snapshot()  # start the first rate period now
        self._worker.start()
        self._active = True
        self.get_logger().info(f"active: waiting for {cfg.image_transport} images on "
                               + ", ".join(image_topics))
        # Enables the lifecycle publishers.
        return super().on_activate(state)

    def _image_input(self, transport: str, cam: _Camera) -> tuple[type, str]:
        """Message type and topic of a camera's image subscription for an image transport.

        ``compressed`` follows image_transport: the base topic (``image``, or ``<name>/image``)
        is resolved first (namespace and remaps, so ``-r image:=/camera/color/image_raw`` reads
        ``/camera/color/image_raw/compressed``), then the transport's name is appended.
        """
        if transport == "compressed":
            return CompressedImage, self.resolve_topic_name(cam.topic("image")) + "/compressed"
        return Image, cam.topic("image")

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_flow(publish=True)
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release()
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_flow(publish=self._active)
        self._release()
        return TransitionCallbackReturn.SUCCESS

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_flow(publish=False)
        self._release()
        return TransitionCallbackReturn.SUCCESS

    def _stop_flow(self, publish: bool) -> None:
        """Stop inputs and the worker; answer what was still queued (when we may publish)."""
        self._active = False
        for sub in self._subs:
            self.destroy_subscription(sub)
        self._subs = []
        if self._diag_timer is not None:
            self.destroy_timer(self._diag_timer)
            self._diag_timer = None
        if self._worker is not None:
            queries, frames = self._worker.stop()
            for job in frames:
                self._cameras[job.camera].stats.drop("inactive")
            for q in queries:
                # Never lose a question silently: tell the asker the node went down under it.
                if publish:
                    self._publish_error(q, SpatialAnswer.STATUS_ERROR,
                                        "the node was deactivated before answering")
        with self._pair_lock:
            for cam in self._cameras.values():
                cam.stats.drop("inactive", cam.pairer.clear())

    def _release(self) -> None:
        answers = self._pubs.get("answer")
        if answers is not None and self.context.ok():
            # The error answers of questions still queued at deactivate / shutdown were just
            # published: a reliable sample still unacknowledged when its writer is destroyed
            # is lost, and the asker would never hear back.
            answers.wait_for_all_acked(Duration(seconds=ANSWER_ACK_TIMEOUT_S))
        for pub in [*self._pubs.values(),
                    *(p for cam in self._cameras.values() for p in cam.pubs.values())]:
            self.destroy_lifecycle_publisher(pub)
        self._pubs = {}
        self._worker = None
        self._cameras = {}
        self._pipeline = None
        self._cfg = None

    def close(self) -> None:
        """Stop the worker without publishing (the context may already be shut down)."""
        if self._worker is not None:
            self._worker.stop(timeout=10.0)

    # --------------------------------------------------------------------------------------
    # helpers
    def _warn(self, key: str, text: str) -> None:
        """Warning throttled per ``key`` (rclpy's throttling is per call site, not per reason)."""
        now = time.monotonic()
        period = self._cfg.warn_throttle_s if self._cfg is not None else 5.0
        last = self._warned.get(key)
        if last is None or now - last >= period:
            self._warned[key] = now
            self.get_logger().warning(text)

    def _drop(self, cam: _Camera, reason: str, text: str, n: int = 1) -> None:
        cam.stats.drop(reason, n)
        where = f" ({cam.name})" if cam.name else ""
        self._warn(f"{cam.name}/{reason}", f"dropped image{where} ({reason}): {text}")

    def _on_worker_error(self, where: str, exc: BaseException,
                         job: FrameJob | QueryJob) -> None:
        if not self.context.ok():
            # Ctrl-C shut the context down while the worker was publishing: not an error.
            return
        if where == "frame":
            self._cameras[job.camera].stats.drop("error")
        else:
            self._count_query(job, "queries_error")
        self.get_logger().error(f"unexpected error in the worker ({where}): "
                                f"{type(exc).__name__}: {exc}")

    # --------------------------------------------------------------------------------------
    # inputs (executor thread: cheap bookkeeping only; decoding and the model run on the worker)
    def _on_image(self, msg: Image | CompressedImage, cam: _Camera) -> None:
        if not self._active:
            return
        cam.stats.inc("frames_received")
        stamp = _stamp_ns(msg.header.stamp)
        with self._pair_lock:
            # Without any camera_info so far, a fallback FOV lets the node run rather than wait.
            fallback = self._cfg.fallback_hfov_deg > 0 and not cam.pairer.seen_info
            info, pushed_out = (None, 0) if fallback else cam.pairer.add_image(stamp, msg)
            seen_info = cam.pairer.seen_info
        info_topic = self.resolve_topic_name(cam.topic("camera_info"))
        if pushed_out:
            self._drop(cam, "no_camera_info", f"no camera_info with a matching stamp arrived "
                       f"for {pushed_out} image(s) on {info_topic}", pushed_out)
        if info is None and not fallback:
            # The image is held until its camera_info arrives. That is routine when the two
            # topics race, so only the case where no camera_info was ever seen is worth a warning.
            if not seen_info:
                self._warn(f"{cam.name}/waiting_camera_info",
                           f"waiting for camera_info on {info_topic} (set fallback_hfov_deg > 0 "
                           "to run without it)")
            return
        self._submit(cam, FrameJob(stamp, msg, info, camera=cam.name))

    def _on_camera_info(self, msg: CameraInfo, cam: _Camera) -> None:
        if not self._active:
            return
        with self._pair_lock:
            paired, given_up = cam.pairer.add_info(_stamp_ns(msg.header.stamp), msg)
        if given_up:
            # Same fate as an image pushed out of the pairing buffer: its own camera_info never
            # came (a newer image paired first). Counting it by cause, not by which topic
            # happened to arrive first, keeps the counters deterministic.
            self._drop(cam, "no_camera_info", f"no camera_info with a matching stamp arrived "
                       f"for {given_up} older image(s) before a newer one paired", given_up)
        if paired is not None:
            self._submit(cam, FrameJob(paired[0], paired[1], paired[2], camera=cam.name))

    def _submit(self, cam: _Camera, job: FrameJob) -> None:
        replaced = self._worker.submit_frame(job)
        if replaced is not None:
            # Latest-frame policy: expected under load, so counted but not warned about.
            cam.stats.drop("superseded")

    def _on_query(self, msg: SpatialQuery, cam: Optional[_Camera] = None) -> None:
        regions = [(r.x_offset, r.y_offset, r.width, r.height) for r in msg.regions]
        self._enqueue_query(_stamp_ns(msg.header.stamp), msg.id, msg.text, msg.pixels, regions,
                            cam, msg.camera, msg.header.frame_id)

    def _on_query_text(self, msg: String, cam: Optional[_Camera] = None) -> None:
        self._enqueue_query(0, "", msg.data, [], [], cam)

    def _enqueue_query(self, stamp_ns: int, qid: str, text: str, pixels, regions,
                       cam: Optional[_Camera], named: str = "", frame_id: str = "") -> None:
        """Validate a question and queue it; ``cam`` is the camera whose own question topic it
        came on (None: the shared topics, where ``named`` / ``frame_id`` choose)."""
        if not self._active:
            return
        self._stats.inc("queries_received")
        job = QueryJob(stamp_ns, qid, text, np.zeros((0, 2)), tuple(regions))
        try:
            if cam is not None:
                job.camera = cam.name
            else:
                with self._pair_lock:
                    frame_ids = {c.name: c.last_frame_id for c in self._cameras.values()}
                job.camera = choose_camera(tuple(self._cameras), named, frame_id, frame_ids)
            camera_stats = self._camera_stats(job)
            if camera_stats is not None:  # the total was counted above
                camera_stats.inc("queries_received")
            self._pipeline.check_question(text)  # reads config only: safe off the worker
            job.pixels = validate_pixels([(p.x, p.y) for p in pixels])
            if len(regions) > MAX_REGIONS:
                raise InputError(f"at most {MAX_REGIONS} regions per question, got "
                                 f"{len(regions)}")
        except InputError as exc:
            self._publish_error(job, SpatialAnswer.STATUS_ERROR, str(exc))
            return
        if not self._worker.submit_query(job):
            self._publish_error(job, SpatialAnswer.STATUS_BUSY,
                                f"query queue full ({self._worker.query_queue_size} waiting)")

    # --------------------------------------------------------------------------------------
    # worker thread
    def _run_frame(self, job: FrameJob) -> Optional[HeldFrame]:
        return self._run_frames([job])[0]

    def _run_frames(self, jobs: list[FrameJob]) -> list[Optional[HeldFrame]]:
        """Decode, run (batched where sizes agree) and publish frames of different cameras."""
        held: list[Optional[HeldFrame]] = [None] * len(jobs)
        decoded = []  # (index, rgb, intrinsics)
        for index, job in enumerate(jobs):
            try:
                # Raw or compressed: a JPEG / PNG is decoded here, on the worker, never on the
                # executor thread, so a large frame cannot delay questions or camera_info.
                rgb = color_frame(job.image, convert.image_to_rgb)
                h, w = rgb.shape[:2]
                intr = frame_intrinsics(w, h, job.info, self._cfg.fallback_hfov_deg)
            except FrameDropped as exc:
                self._drop(self._cameras[job.camera], exc.reason, str(exc))
                continue
            decoded.append((index, rgb, intr))
        results = self._pipeline.process_frames([(rgb, intr) for _, rgb, intr in decoded],
                                                keep_context=True)
        for (index, rgb, intr), result in zip(decoded, results):
            job = jobs[index]
            cam = self._cameras[job.camera]
            if isinstance(result, InputError):
                self._drop(cam, "bad_image", str(result))
                continue
            cam.stats.inc("frames_processed")
            if result.batch_size > 1:
                cam.stats.inc("frames_batched")
            cam.stats.latency("model", result.timings["total"])
            cam.stats.latency("frame", time.monotonic() - job.received)
            header = _copy_header(job.image.header)
            with self._pair_lock:
                cam.last_frame_id = header.frame_id
            self._publish_frame(cam, header, result.depth, intr, rgb, job.info)
            held[index] = HeldFrame(job.stamp_ns, header, result.context, result.depth, intr,
                                    camera=cam.name)
        return held

    def _publish_frame(self, cam: _Camera, header, depth, intr, rgb, info_msg) -> None:
        cfg, pubs = self._cfg, cam.pubs
        pubs["depth"].publish(convert.depth_to_msg(depth, header, cfg.depth_encoding))
        pubs["info"].publish(convert.camera_info_msg(output_camera_info(intr, info_msg), header))
        # The cloud is the most expensive message; build it only for an audience.
        if cfg.publish_points and pubs["points"].get_subscription_count() > 0:
            points, colours = cloud_points(depth, intr, rgb if cfg.points_rgb else None,
                                           cfg.points_stride, cfg.points_min_range,
                                           cfg.points_max_range)
            pubs["points"].publish(convert.make_pointcloud2(points, header, colours))
            cam.stats.inc("points_published")
        if cfg.publish_colorized and pubs["colorized"].get_subscription_count() > 0:
            pubs["colorized"].publish(convert.rgb_to_msg(colorize_depth(depth), header))

    def _run_query(self, job: QueryJob, frame: Optional[HeldFrame], error: Optional[str]) -> None:
        if frame is None:
            self._publish_error(job, SpatialAnswer.STATUS_ERROR, error)
            return
        try:
            result = answer_question(self._pipeline, frame.context, frame.depth,
                                     frame.intrinsics, job.text, job.pixels, job.regions,
                                     mode=self._cfg.answer_mode,
                                     max_new_tokens=self._cfg.max_new_tokens)
        except Exception as exc:  # noqa: BLE001 - every question gets exactly one answer
            # Out of memory, a runtime failure in the model, ...: the question is still
            # answered (with the reason) and the error is logged and counted.
            self.get_logger().error(f"question {job.qid!r}: unexpected "
                                    f"{type(exc).__name__} in the pipeline: {exc}")
            self._publish_error(job, SpatialAnswer.STATUS_ERROR,
                                f"internal error: {type(exc).__name__}: {exc}", frame)
            return
        if not result.ok:
            self._publish_error(job, SpatialAnswer.STATUS_ERROR, result.status_reason, frame)
            return
        msg = self._answer_msg(job, frame.header)
        convert.fill_spatial_answer(msg, result)
        for stats in self._query_stats(job):
            stats.latency("answer", result.timings["total_s"])
            stats.latency("answer_measure", result.timings["measure_s"])
        self._send_answer(msg, job, "queries_answered")

    def _camera_stats(self, job: QueryJob) -> Optional[Counters]:
        """The counters of a question's camera, when there are several cameras (one camera's
        status shows the totals) and the question has a known one."""
        cam = self._cameras.get(job.camera)
        return cam.stats if cam is not None and len(self._cameras) > 1 else None

    def _query_stats(self, job: QueryJob) -> list[Counters]:
        """Where a question is counted: over all cameras, and on its camera (see above)."""
        camera_stats = self._camera_stats(job)
        return [self._stats] + ([camera_stats] if camera_stats is not None else [])

    def _count_query(self, job: QueryJob, counter: str) -> None:
        for stats in self._query_stats(job):
            stats.inc(counter)

    def _answer_msg(self, job: QueryJob, header) -> SpatialAnswer:
        msg = SpatialAnswer()
        msg.header = _copy_header(header)
        msg.id, msg.question = job.qid, job.text
        msg.camera = job.camera
        return msg

    def _publish_error(self, job: QueryJob, status: int, reason: str,
                       frame: Optional[HeldFrame] = None) -> None:
        if frame is not None:
            header = frame.header
        else:
            # No frame was used: report the stamp that was asked about and the camera's frame.
            cam = self._cameras.get(job.camera)
            header = Header(frame_id=cam.last_frame_id if cam is not None else "")
            header.stamp.sec, header.stamp.nanosec = divmod(job.stamp_ns, 1_000_000_000)
        msg = self._answer_msg(job, header)
        msg.status, msg.status_reason = status, reason
        counter = "queries_busy" if status == SpatialAnswer.STATUS_BUSY else "queries_error"
        if status != SpatialAnswer.STATUS_BUSY:
            self._warn("query_error", f"question {job.qid!r} not answered: {reason}")
        self._send_answer(msg, job, counter)

    def _send_answer(self, msg: SpatialAnswer, job: QueryJob, counter: str) -> None:
        msg.latency = float(time.monotonic() - job.received)
        self._pubs["answer"].publish(msg)
        self._count_query(job, counter)

    # --------------------------------------------------------------------------------------
    # diagnostics
    def _publish_diagnostics(self) -> None:
        """One status per camera (its frames, and its questions when there are several
        cameras), plus one for all questions when there are several cameras."""
        questions = self._stats.snapshot()
        pending = self._worker.pending_queries() if self._worker else 0
        statuses = []
        for cam in self._cameras.values():
            frames = cam.stats.snapshot()
            # One camera: one status, as it has always been; several: each camera's own
            # questions beside its frames, and the totals in the "questions" status.
            asked = questions if len(self._cameras) == 1 else frames
            statuses.append(self._camera_status(cam, frames, asked, pending))
        if len(self._cameras) > 1:
            statuses.append(self._questions_status(questions, pending))
        arr = DiagnosticArray()
        arr.header.stamp = self.get_clock().now().to_msg()
        arr.status = statuses
        self._pubs["diag"].publish(arr)

    def _camera_status(self, cam: _Camera, frames: dict, asked: dict,
                       pending: int) -> DiagnosticStatus:
        totals, drops, rates = frames["totals"], frames["drops"], frames["rates"]
        status = DiagnosticStatus()
        status.name = f"{self.get_fully_qualified_name()}: depth pipeline" + \
            (f" {cam.name}" if cam.name else "")
        status.hardware_id = str(self._cfg.model_path)
        values = {}
        if cam.name:
            values["camera"] = cam.name
        values.update({
            "input_rate_hz": f"{rates.get('frames_received', 0.0):.2f}",
            "processed_rate_hz": f"{rates.get('frames_processed', 0.0):.2f}",
            "model_latency_ms": _ms(frames["latency_mean"], "model"),
            "model_latency_last_ms": _ms(frames["latency_last"], "model"),
            "frame_latency_ms": _ms(frames["latency_mean"], "frame"),
            "frames_received": totals.get("frames_received", 0),
            "frames_processed": totals.get("frames_processed", 0),
            "frames_dropped": totals.get("frames_dropped", 0),
            "points_published": totals.get("points_published", 0),
        })
        if self._cfg.frames_per_pass > 1:
            # Frames that shared a model pass with another camera's frame.
            values["frames_batched"] = totals.get("frames_batched", 0)
        values.update(_question_values(asked, pending if len(self._cameras) == 1 else None))
        with self._pair_lock:
            values["frames_waiting_camera_info"] = len(cam.pairer.pending)
            waiting = bool(cam.pairer.pending and not cam.pairer.seen_info)
            values["frame_id"] = cam.last_frame_id
        for reason, n in sorted(drops.items()):
            values[f"dropped_{reason}"] = n
        status.values = [KeyValue(key=k, value=str(v)) for k, v in values.items()]
        period = frames["period"]
        bad_drops = {k for k in drops if k not in ("superseded", "inactive")}
        if waiting:
            status.level, status.message = DiagnosticStatus.WARN, "waiting for camera_info"
        elif period.get("frames_dropped", 0) and bad_drops and \
                period.get("frames_processed", 0) == 0 and period.get("frames_received", 0):
            status.level, status.message = DiagnosticStatus.WARN, \
                "images received but none usable: " + ", ".join(sorted(bad_drops))
        elif not period.get("frames_received", 0):
            status.level, status.message = DiagnosticStatus.OK, "no input images"
        else:
            status.level, status.message = DiagnosticStatus.OK, "running"
        return status

    def _questions_status(self, questions: dict, pending: int) -> DiagnosticStatus:
        status = DiagnosticStatus()
        status.name = f"{self.get_fully_qualified_name()}: questions"
        status.hardware_id = str(self._cfg.model_path)
        values = {"cameras": ",".join(self._cameras), **_question_values(questions, pending)}
        status.values = [KeyValue(key=k, value=str(v)) for k, v in values.items()]
        status.level, status.message = DiagnosticStatus.OK, \
            f"{len(self._cameras)} cameras, one model"
        return status


def _ms(latencies: dict, key: str) -> str:
    return f"{latencies[key] * 1e3:.1f}" if key in latencies else "nan"


def _question_values(snap: dict, pending: Optional[int]) -> dict[str, Any]:
    """Diagnostics values of the questions counted in a Counters snapshot."""
    totals = snap["totals"]
    values = {"answer_latency_ms": _ms(snap["latency_mean"], "answer")}
    for key in ("queries_received", "queries_answered", "queries_busy", "queries_error"):
        values[key] = totals.get(key, 0)
    if pending is not None:  # the queue is shared: reported once, not per camera
        values["queries_pending"] = pending
    return values


def _shut_down_by_signal(grace_s: float = 1.0) -> bool:
    """Whether the ROS context is shut down, or is within ``grace_s``.

    rclpy shuts the context down on a signal from its own thread, so the exception the same
    signal causes in the executor's thread can arrive first.
    """
    deadline = time.monotonic() + grace_s
    while rclpy.ok():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.01)
    return True


def main(args: Optional[list[str]] = None) -> int:
    """Run ``depthvlm_node`` until Ctrl-C (or SIGTERM)."""
    rclpy.init(args=args)
    node = None
    try:
        node = DepthVLMNode()
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except RuntimeError:
        # rclpy's SIGINT/SIGTERM handler shuts the context down from another thread. When that
        # lands while the executor builds its next wait set, rcl reports "context is not valid"
        # (an RCLError) instead of ExternalShutdownException (ros2/rclpy#398, ros2/ros2cli#854);
        # when it lands inside a subscription's take, pybind11 reports "Unable to convert call
        # argument" (a plain RuntimeError). Both are a shutdown; a RuntimeError with the context
        # still valid is a real failure.
        if not _shut_down_by_signal():
            raise
    finally:
        if node is not None:
            node.close()
            node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
