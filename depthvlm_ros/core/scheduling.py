"""Scheduling behind ``depthvlm_node``: stamp pairing, the latest-frame worker and counters.

Nothing here imports rclpy or message types; messages travel through it as opaque objects, so
the policies (what is dropped, what waits, what is answered busy) can be read and tested in one
place while the node stays a thin translation layer.

Policies:

* **Latest frame.** The worker holds at most one waiting frame per camera. A newer frame of the
  same camera replaces it and the replaced one is counted as dropped (``superseded``); frames
  never queue behind the model.
* **Cameras in turn.** With several cameras, the waiting frame of the camera served longest ago
  runs next, so a 30 Hz camera next to a 5 Hz one cannot starve it: each gets at least one
  frame in every round of as many frames as there are cameras with frames waiting.
* **Batches of cameras, never of waiting.** With ``batch_frames`` > 1 the waiting frames of up
  to that many cameras (longest served ago first) run in one model call; a batch is whatever
  is waiting when the model becomes free, so no frame waits for others to arrive.
* **Queries first.** Between two frames the worker answers every answerable query, but never more
  than ``query_queue_size`` in a row while a frame is waiting, so a query flood cannot freeze the
  depth stream.
* **Bounded queries.** At most ``query_queue_size`` queries wait; :meth:`LatestFrameWorker.
  submit_query` refuses the next one so the caller can answer it *busy* at once.
* **Queries wait for their frame, boundedly.** A query about the latest frame (stamp 0) that
  arrives before any frame was processed, or one stamped later than the newest processed frame,
  waits up to ``frame_wait_s`` for that frame; then it is answered with an error. A query about
  a frame older than the ones still held (``frame_history`` per camera) is answered with an
  error at once. A query is only ever answered from a frame of the camera it names.
"""

from __future__ import annotations

import collections
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Deque, Optional

import numpy as np

from .frames import nearest_stamp

__all__ = ["FrameJob", "QueryJob", "HeldFrame", "StampPairer", "Counters", "LatestFrameWorker",
           "FRAME_WAIT_S"]

#: Longest time a query waits for the frame it is about (see the module docstring).
FRAME_WAIT_S = 5.0


@dataclass
class FrameJob:
    """An image waiting for the model, with the camera_info paired to it (None: fallback FOV)."""

    stamp_ns: int
    image: Any
    info: Any
    received: float = field(default_factory=time.monotonic)
    camera: str = ""


@dataclass
class QueryJob:
    """A question waiting for the model.

    Attributes:
        stamp_ns: stamp of the frame asked about; 0 = the latest processed frame.
        qid: caller's id ('' for plain-text questions).
        text: the question.
        pixels: ``(N, 2)`` float64 ``(u, v)`` pixels referenced by the question.
        regions: ``(x_offset, y_offset, width, height)`` regions referenced by the question.
        received: ``time.monotonic()`` at arrival (latency is measured from here).
        deadline: monotonic time after which waiting for the frame ends in an error.
        camera: name of the camera asked about ('' = the unnamed camera).
    """

    stamp_ns: int
    qid: str
    text: str
    pixels: np.ndarray
    regions: tuple = ()
    received: float = field(default_factory=time.monotonic)
    deadline: float = 0.0
    camera: str = ""


@dataclass
class HeldFrame:
    """A processed frame kept for questions: its header, prefill context, depth and intrinsics."""

    stamp_ns: int
    header: Any
    context: Any
    depth: np.ndarray
    intrinsics: Any
    camera: str = ""


class StampPairer:
    """Pairs images with camera_info messages by stamp (exact, or nearest within a tolerance).

    Camera drivers publish the two on separate topics, so either may arrive first: camera_info
    messages are kept in a ring of ``info_buffer`` and images without a partner wait in a short
    list until their camera_info comes (or newer images push them out).

    Not thread safe; the node calls it from its executor thread only.
    """

    def __init__(self, info_buffer: int, tolerance_ns: int, max_pending: int = 4) -> None:
        self.infos: Deque[tuple[int, Any]] = collections.deque(maxlen=max(1, int(info_buffer)))
        self.pending: Deque[tuple[int, Any]] = collections.deque()
        self.tolerance_ns = int(tolerance_ns)
        self.max_pending = max(1, int(max_pending))
        self.seen_info = False

    def _nearest(self, items, stamp_ns: int):
        items = list(items)
        hit = nearest_stamp((item[0] for item in items), stamp_ns, self.tolerance_ns)
        return None if hit is None else next(item for item in items if item[0] == hit)

    def add_image(self, stamp_ns: int, image: Any) -> tuple[Any, int]:
        """Offer an image.

        Returns:
            ``(info, dropped)``: the matching camera_info (None if none yet; the image is then
            kept pending), and how many pending images were given up (pushed out to make room,
            or older than this image when it is paired at once).
        """
        hit = self._nearest(self.infos, stamp_ns)
        if hit is not None:
            # Older images still waiting would only ever come out of order: give them up.
            older = [p for p in self.pending if p[0] < stamp_ns]
            for p in older:
                self.pending.remove(p)
            return hit[1], len(older)
        self.pending.append((stamp_ns, image))
        dropped = 0
        while len(self.pending) > self.max_pending:
            self.pending.popleft()
            dropped += 1
        return None, dropped

    def add_info(self, stamp_ns: int, info: Any) -> tuple[Optional[tuple[int, Any, Any]], int]:
        """Offer a camera_info.

        Returns:
            ``(paired, dropped)``: ``(stamp_ns, image, info)`` when it completes a pending image
            (the newest such image), and how many older pending images were given up because a
            newer one is now complete (latest-frame policy).
        """
        self.seen_info = True
        self.infos.append((stamp_ns, info))
        hit = self._nearest(reversed(self.pending), stamp_ns)
        if hit is None:
            return None, 0
        dropped = 0
        while self.pending:
            item = self.pending.popleft()
            if item is hit:
                break
            dropped += 1
        return (hit[0], hit[1], info), dropped

    def clear(self) -> int:
        """Forget everything; returns the number of pending images given up."""
        n = len(self.pending)
        self.pending.clear()
        self.infos.clear()
        self.seen_info = False
        return n


class Counters:
    """Thread-safe event counters, plus per-period rate and latency figures for diagnostics."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.totals: dict[str, int] = collections.Counter()
        self.drops: dict[str, int] = collections.Counter()
        self._period: dict[str, int] = collections.Counter()
        self._latency: dict[str, list[float]] = collections.defaultdict(list)
        self._last_latency: dict[str, float] = {}
        self._period_start = time.monotonic()

    def inc(self, name: str, n: int = 1) -> None:
        """Count ``n`` events called ``name`` (frames_received, queries_busy, ...)."""
        if n:
            with self._lock:
                self.totals[name] += n
                self._period[name] += n

    def drop(self, reason: str, n: int = 1) -> None:
        """Count ``n`` input frames dropped for ``reason``."""
        if n:
            with self._lock:
                self.drops[reason] += n
                self.totals["frames_dropped"] += n
                self._period["frames_dropped"] += n

    def latency(self, name: str, seconds: float) -> None:
        """Record one duration (seconds) of kind ``name``."""
        with self._lock:
            self._latency[name].append(seconds)
            self._last_latency[name] = seconds

    def snapshot(self, reset_period: bool = True) -> dict[str, Any]:
        """Totals, drops by reason, rates over the period since the last snapshot, latencies."""
        with self._lock:
            now = time.monotonic()
            span = max(now - self._period_start, 1e-6)
            snap = {
                "totals": dict(self.totals),
                "drops": dict(self.drops),
                "period_s": span,
                "period": dict(self._period),
                "rates": {k: v / span for k, v in self._period.items()},
                "latency_mean": {k: float(np.mean(v)) for k, v in self._latency.items() if v},
                "latency_max": {k: float(np.max(v)) for k, v in self._latency.items() if v},
                "latency_last": dict(self._last_latency),
            }
            if reset_period:
                self._period = collections.Counter()
                self._latency = collections.defaultdict(list)
                self._period_start = now
            return snap


_WAIT = object()  # resolution result: the query's frame may still come


class LatestFrameWorker:
    """One thread that runs the model for frames and queries (the model is not thread safe).

    Args:
        run_frames: ``jobs -> [HeldFrame | None, ...]``; processes and publishes frames (at
            most ``batch_frames``, of different cameras; None for a dropped one).
        run_query: ``(job, frame, error) -> None``; answers with ``frame`` or, when ``frame``
            is None, publishes an error answer with reason ``error``.
        query_queue_size: most waiting queries.
        frame_history: processed frames kept for stamped questions, per camera.
        stamp_tolerance_ns: largest stamp difference when looking a query's frame up.
        frame_wait_s: longest wait of a query for its frame.
        on_error: ``(where, exception, job) -> None`` for unexpected exceptions in the
            callbacks (``where`` is ``"frame"`` once per job of a failed batch, or
            ``"query"``); the worker keeps running after them.
        batch_frames: most frames (one per camera) handed to one ``run_frames`` call.
    """

    def __init__(self, run_frames: Callable[[list[FrameJob]], list[Optional[HeldFrame]]],
                 run_query: Callable[[QueryJob, Optional[HeldFrame], Optional[str]], None],
                 query_queue_size: int, frame_history: int, stamp_tolerance_ns: int = 0,
                 frame_wait_s: float = FRAME_WAIT_S,
                 on_error: Optional[Callable[[str, BaseException, Any], None]] = None,
                 batch_frames: int = 1) -> None:
        if int(batch_frames) < 1:
            raise ValueError(f"batch_frames must be at least 1, got {batch_frames}")
        self._run_frames = run_frames
        self.batch_frames = int(batch_frames)
        self._run_query = run_query
        self.query_queue_size = int(query_queue_size)
        self.stamp_tolerance_ns = int(stamp_tolerance_ns)
        self.frame_wait_s = float(frame_wait_s)
        self._on_error = on_error
        self._cond = threading.Condition()
        self.frame_history = int(frame_history)
        self._frames: dict[str, FrameJob] = {}  # camera -> its one waiting frame
        self._served: dict[str, int] = {}  # camera -> sequence number of its last frame run
        self._sequence = 0
        self._queries: Deque[QueryJob] = collections.deque()
        #: Camera -> its processed frames still held for questions, oldest first.
        self.histories: dict[str, Deque[HeldFrame]] = {}
        self._stop = False
        self._thread: Optional[threading.Thread] = None
        self._queries_in_row = 0

    # --- producer side (executor thread) ------------------------------------------------------
    def submit_frame(self, job: FrameJob) -> Optional[FrameJob]:
        """Hand a frame over; returns the waiting frame of the same camera it replaced (to be
        counted as dropped)."""
        with self._cond:
            replaced = self._frames.pop(job.camera, None)
            self._frames[job.camera] = job
            self._cond.notify()
            return replaced

    def submit_query(self, job: QueryJob) -> bool:
        """Queue a query; False when the queue is full (the caller answers it busy)."""
        with self._cond:
            if len(self._queries) >= self.query_queue_size:
                return False
            if not job.deadline:
                job.deadline = job.received + self.frame_wait_s
            self._queries.append(job)
            self._cond.notify()
            return True

    def pending_queries(self) -> int:
        with self._cond:
            return len(self._queries)

    def waiting_frames(self) -> int:
        """Frames handed over and not yet run (at most one per camera)."""
        with self._cond:
            return len(self._frames)

    def latest(self, camera: str = "") -> Optional[HeldFrame]:
        """The newest processed frame of ``camera``, if any."""
        with self._cond:
            history = self.histories.get(camera)
            return history[-1] if history else None

    def history(self, camera: str = "") -> list[HeldFrame]:
        """The processed frames of ``camera`` still held, oldest first."""
        with self._cond:
            return list(self.histories.get(camera, ()))

    # --- lifecycle ----------------------------------------------------------------------------
    def start(self) -> None:
        """Start the thread (idempotent)."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop = False
        self._thread = threading.Thread(target=self._loop, name="depthvlm_worker", daemon=True)
        self._thread.start()

    def stop(self, timeout: Optional[float] = None) -> tuple[list[QueryJob], list[FrameJob]]:
        """Stop after the current job; returns the queries and the frames that never ran."""
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        with self._cond:
            queries, frames = list(self._queries), list(self._frames.values())
            self._queries.clear()
            self._frames.clear()
        return queries, frames

    def clear_history(self) -> None:
        with self._cond:
            self.histories.clear()

    # --- the thread ---------------------------------------------------------------------------
    def _resolve(self, q: QueryJob, now: float):
        """The frame a query is about, ``_WAIT``, or an error string (caller holds the lock)."""
        history = self.histories.get(q.camera, ())
        if q.stamp_ns == 0:
            if history:
                return history[-1]
            if now < q.deadline:
                return _WAIT
            return f"no frame was processed within {self.frame_wait_s:g} s of the question"
        best, best_dt = None, None
        for f in history:
            dt = abs(f.stamp_ns - q.stamp_ns)
            if dt <= self.stamp_tolerance_ns and (best_dt is None or dt < best_dt):
                best, best_dt = f, dt
        if best is not None:
            return best
        newest = history[-1].stamp_ns if history else None
        stamp_s = q.stamp_ns * 1e-9
        if newest is None or q.stamp_ns > newest:
            if now < q.deadline:
                return _WAIT
            return (f"no frame with stamp {stamp_s:.9f} was processed within "
                    f"{self.frame_wait_s:g} s (dropped, or never received)")
        oldest = history[0].stamp_ns
        return (f"the frame with stamp {stamp_s:.9f} is not held: the last "
                f"{len(history)} processed frames span {oldest * 1e-9:.9f} to "
                f"{newest * 1e-9:.9f}")

    def _next_job(self):
        """Block until there is work; returns ('frame', [jobs]) / ('query', job, frame|err) / None."""
        with self._cond:
            while not self._stop:
                now = time.monotonic()
                pick, wake = None, None
                for q in self._queries:
                    r = self._resolve(q, now)
                    if r is _WAIT:
                        wake = q.deadline if wake is None else min(wake, q.deadline)
                        continue
                    pick = (q, r)
                    break
                # Queries first, but a waiting frame gets its turn after a full queue's worth.
                if pick is not None and (not self._frames
                                         or self._queries_in_row < self.query_queue_size):
                    self._queries.remove(pick[0])
                    self._queries_in_row += 1
                    return ("query",) + pick
                if self._frames:
                    # Cameras in turn: the ones served longest ago (never served: first).
                    order = sorted(self._frames, key=lambda c: self._served.get(c, -1))
                    jobs = []
                    for camera in order[:self.batch_frames]:
                        jobs.append(self._frames.pop(camera))
                        self._sequence += 1
                        self._served[camera] = self._sequence
                    self._queries_in_row = 0
                    return ("frame", jobs)
                self._cond.wait(None if wake is None else max(wake - now, 0.0) + 1e-3)
            return None

    def _loop(self) -> None:
        while True:
            item = self._next_job()
            if item is None:
                return
            try:
                if item[0] == "frame":
                    held = [h for h in self._run_frames(item[1]) or () if h is not None]
                    if held:
                        with self._cond:
                            for h in held:
                                self.histories.setdefault(
                                    h.camera,
                                    collections.deque(maxlen=self.frame_history)).append(h)
                            # Queries waiting for these frames can now be answered.
                            self._cond.notify_all()
                else:
                    _, q, res = item
                    if isinstance(res, str):
                        self._run_query(q, None, res)
                    else:
                        self._run_query(q, res, None)
            except Exception as exc:  # noqa: BLE001 - one bad job must not end the worker
                if self._on_error is not None:
                    for job in item[1] if item[0] == "frame" else (item[1],):
                        try:
                            self._on_error(item[0], exc, job)
                        except Exception:  # noqa: BLE001
                            pass
