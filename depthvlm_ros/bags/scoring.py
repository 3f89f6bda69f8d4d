"""Scoring a replay's depth against the ground-truth depth recorded in the bag.

GT may be a raw ``sensor_msgs/Image`` (``16UC1`` millimetres, ``32FC1`` metres) or a
compressedDepth ``sensor_msgs/CompressedImage`` (PNG or RVL), at the colour image's resolution
or at the depth sensor's own with its own camera_info: it is resampled onto the colour grid by
:func:`depthvlm_ros.core.frames.depth_on_grid` before scoring. Each image is paired with the GT
message of the nearest stamp within the replay's sync tolerance
(:func:`~depthvlm_ros.core.frames.nearest_stamp`, the pairing rule of image and camera_info),
whichever of the two comes first in the bag. The metrics are the benchmark's
(:mod:`depthvlm_ros.core.bench.metrics`).

Needs ``rosbags`` only (no rclpy).
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..core.camera import Intrinsics
from ..core.frames import depth_on_grid, nearest_stamp
from . import messages as bagconv

__all__ = ["FrameScore", "StampIndex", "GroundTruthScorer"]


@dataclass
class FrameScore:
    """Metrics of one scored frame (keys as in ``core.bench.metrics.METRIC_NAMES``)."""

    index: int
    stamp_ns: int
    t_s: float
    metrics: dict[str, float]


class StampIndex:
    """Values by header stamp, found with the pairing rule of :func:`nearest_stamp`."""

    def __init__(self, items: dict[int, Any], tolerance_ns: int) -> None:
        self.items = items
        self.keys = sorted(items)
        self.tol = tolerance_ns

    def stamp(self, stamp: int) -> int | None:
        """The paired stamp (None: nothing within the tolerance)."""
        # Only the two neighbours in stamp order can be the nearest.
        i = bisect.bisect_left(self.keys, stamp)
        return nearest_stamp(self.keys[max(0, i - 1):i + 1], stamp, self.tol)

    def find(self, stamp: int):
        """The value paired with ``stamp``, or None."""
        hit = self.stamp(stamp)
        return None if hit is None else self.items[hit]


class GroundTruthScorer:
    """Pairs predictions with GT (either may come first in the bag) and scores each pair.

    Args:
        options: the replay's :class:`~depthvlm_ros.bags.replay.ReplayOptions`.
        summary: the :class:`~depthvlm_ros.bags.replay.ReplaySummary` to fill.
        wanted: GT stamp -> how many images are paired with it.
        gt_infos: intrinsics of the GT's own camera_info by stamp (empty: GT on the colour
            grid, or the same camera at another resolution).
    """

    def __init__(self, options, summary, wanted: dict[int, int], gt_infos: StampIndex) -> None:
        from ..core.bench import metrics

        self.m = metrics
        self.opt = options
        self.summary = summary
        self.wanted = dict(wanted)
        self.gt_infos = gt_infos
        self.gt: dict[int, tuple[np.ndarray, Intrinsics | None]] = {}
        self.pred: dict[int, list[tuple]] = {}
        self.unpaired_preds = 0

    def add_gt(self, ts, conn, raw) -> None:
        """A GT message of the bag (decoded here; a bad one is counted in ``gt_bad``)."""
        try:
            msg = ts.deserialize_cdr(raw, conn.msgtype)
            gt = bagconv.depth_message_m(msg)
            stamp = bagconv.stamp_ns(msg.header.stamp)
        except Exception:  # noqa: BLE001 - bad GT is counted, the frame stays unscored
            self.summary.gt_bad += 1
            return
        if stamp in self.gt or self.wanted.get(stamp, 0) <= 0:
            self.summary.gt_unmatched += 1
            return
        self.gt[stamp] = (gt, self.gt_infos.find(stamp))
        for item in self.pred.pop(stamp, []):
            self._score(stamp, *item)

    def add_pred(self, index: int, stamp_ns: int, gt_stamp: int | None, t_s: float,
                 depth: np.ndarray, intr: Intrinsics, rgb: np.ndarray | None) -> None:
        """A processed frame whose GT is the message stamped ``gt_stamp`` (None: none)."""
        if gt_stamp is None:
            self.unpaired_preds += 1
            return
        item = (index, stamp_ns, t_s, depth, intr, rgb)
        if gt_stamp in self.gt:
            self._score(gt_stamp, *item)
        else:
            self.pred.setdefault(gt_stamp, []).append(item)

    def _score(self, gt_stamp: int, index: int, stamp: int, t_s: float, depth: np.ndarray,
               intr: Intrinsics, rgb: np.ndarray | None) -> None:
        m = self.m
        gt_raw, gt_intr = self.gt[gt_stamp]
        self.wanted[gt_stamp] -= 1
        if self.wanted[gt_stamp] <= 0:
            del self.gt[gt_stamp]  # every image paired with it is scored: free it
        try:
            gt = depth_on_grid(gt_raw, gt_intr, intr)
        except Exception as exc:  # noqa: BLE001 - GT that cannot be put on the grid
            self.summary.gt_bad += 1
            self.summary.warnings.append(f"frame {index}: GT depth not usable: {exc}")
            return
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

    def finish(self) -> None:
        """Sort the scores, count GT never scored, and aggregate."""
        self.summary.scores.sort(key=lambda s: s.index)
        self.summary.report_frames.sort(key=lambda f: f["index"])
        self.summary.gt_unmatched += len(self.gt)
        waiting = sum(len(v) for v in self.pred.values()) + self.unpaired_preds
        if waiting:
            self.summary.warnings.append(f"{waiting} processed frame(s) had no GT depth with "
                                         "a matching stamp")
        scores = [self.m.ImageMetrics(**s.metrics) for s in self.summary.scores]
        if scores:
            self.summary.aggregate = self.m.aggregate(scores).as_dict()
