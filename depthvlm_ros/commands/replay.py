"""``depthvlm replay``: run a rosbag through the depth pipeline, write an output bag and report."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from ..core.errors import InputError
from . import add_bag_argument, add_bag_storage_argument, add_pipeline_arguments, pipeline_config

__all__ = ["HELP", "add_arguments", "run"]

HELP = ("Replay a rosbag2 bag (mcap or sqlite3) through the model: output bag with depth, "
        "camera_info, points and answers; metrics and a report when GT depth is recorded. "
        "Raw or compressed images and depth; without topic options the bag's one camera.")


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_bag_argument(p, help="input rosbag2 folder (or its .mcap/.db3 file)")
    p.add_argument("--list", action="store_true",
                   help="list the bag's cameras (image + camera_info) and depth topics, and stop")
    p.add_argument("--image-topic",
                   help="colour image topic, Image or CompressedImage (default: the bag's one "
                        "camera, see --list)")
    p.add_argument("--camera-info-topic",
                   help="CameraInfo topic paired by stamp (default: the image's sibling)")
    p.add_argument("--gt-depth-topic",
                   help="GT depth topic (16UC1 mm, 32FC1 m, or compressedDepth png / rvl) to "
                        "score against (default without --image-topic: the camera's depth)")
    p.add_argument("--gt-camera-info-topic",
                   help="the GT's own CameraInfo, for depth at another resolution (default: "
                        "the GT's sibling)")
    p.add_argument("--queries", help="YAML file of scripted questions (see config/queries.example.yaml)")
    p.add_argument("--points", action="store_true", help="also write the organized point cloud")
    p.add_argument("--no-points-rgb", action="store_true", help="points without packed rgb")
    p.add_argument("--points-stride", type=int, default=1,
                   help="keep every Nth pixel and row in the cloud (default 1)")
    p.add_argument("--points-max-range", type=float, default=0.0, metavar="M",
                   help="cloud points farther than this from the camera are NaN (default: none)")
    p.add_argument("--out", help="output folder: the bag goes to OUT/bag, the report next to it")
    add_pipeline_arguments(p)
    add_bag_storage_argument(p, help="storage of the output bag (default mcap)")
    p.add_argument("--output-namespace", default="/",
                   help="namespace of the output topics (default '/': /depth/image, ...)")
    p.add_argument("--fallback-hfov", type=float, default=0.0, metavar="DEG",
                   help="horizontal FOV for images without camera_info (default: skip them)")
    p.add_argument("--sync-tolerance", type=float, default=0.0, metavar="S",
                   help="largest image/camera_info stamp difference (default exact)")
    p.add_argument("--gt-min-depth", type=float, default=1e-3, help="GT below this is not scored (m)")
    p.add_argument("--gt-max-depth", type=float, default=math.inf,
                   help="GT above this is not scored (m)")
    p.add_argument("--report-frames", type=int, default=4,
                   help="frames shown with error maps in the report")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from ..core.pipeline import DepthVLMPipeline
    import dataclasses

    from ..bags import ReplayOptions, discover_cameras, load_queries, replay_bag
    from ..core.distributed import rank_device
    from ..bags.report import write_report

    if not Path(args.bag).exists():
        raise InputError(f"bag {args.bag} not found")
    if args.list:
        print(discover_cameras(args.bag).describe())
        return 0
    if not args.out:
        raise InputError("--out is required (or --list)")
    if args.points_stride < 1:
        raise InputError("--points-stride must be at least 1")
    if not 0.0 <= args.fallback_hfov < 180.0:
        raise InputError(f"--fallback-hfov must be in (0, 180) degrees, got {args.fallback_hfov}")
    if args.sync_tolerance < 0:
        raise InputError("--sync-tolerance must not be negative")
    out = Path(args.out)
    out_bag = out / "bag"
    if out_bag.exists():
        raise InputError(f"{out_bag} exists already; choose another --out")
    queries = load_queries(args.queries) if args.queries else []
    topics = (args.image_topic, args.camera_info_topic, args.gt_depth_topic,
              args.gt_camera_info_topic)
    found = discover_cameras(args.bag)
    try:
        chosen = found.choose(*topics)
    except InputError:
        print(found.describe())  # what there is to choose from
        raise
    if chosen.image_topic != args.image_topic:
        print(f"camera: {chosen.describe()}")
    options = ReplayOptions(
        image_topic=chosen.image_topic, camera_info_topic=chosen.camera_info_topic,
        gt_depth_topic=chosen.gt_depth_topic, gt_camera_info_topic=chosen.gt_camera_info_topic,
        queries=queries, points=args.points, points_rgb=not args.no_points_rgb,
        points_stride=args.points_stride, points_max_range=args.points_max_range,
        storage=args.format,
        output_namespace=args.output_namespace, fallback_hfov_deg=args.fallback_hfov,
        sync_tolerance_s=args.sync_tolerance, gt_min_depth=args.gt_min_depth,
        gt_max_depth=args.gt_max_depth, report_frames=args.report_frames,
        progress=not args.no_progress)
    config = pipeline_config(args)
    # Under torchrun each rank's model goes on its own GPU.
    pipe = DepthVLMPipeline.from_config(dataclasses.replace(config,
                                                            device=rank_device(config.device)))
    out.mkdir(parents=True, exist_ok=True)
    summary = replay_bag(args.bag, out_bag, pipe, options)
    if not summary.is_main:  # under torchrun, rank 0 writes the bag and the report
        return 0
    files = write_report(summary, out, options)
    print(f"frames: {summary.frames_total} in bag, {summary.frames_processed} processed "
          f"({summary.frames_fallback} with fallback intrinsics), {summary.frames_unpaired} "
          f"without camera_info, {summary.frames_bad} bad")
    if summary.aggregate:
        a = summary.aggregate
        print(f"metrics over {summary.frames_scored} frames: delta1 {a['delta1']:.3f}, "
              f"abs_rel {a['abs_rel'] if a['abs_rel'] is not None else float('nan'):.3f}")
    if queries:
        print(f"answers: {summary.answers} ({summary.answer_errors} errors)")
    for w in summary.warnings:
        print(f"warning: {w}")
    print(f"output bag: {out_bag}\nreport: {files['markdown']} {files['html']} {files['results']}")
    if summary.frames_processed == 0:
        raise InputError(f"no frame could be processed (report: {files['markdown']})")
    return 0
