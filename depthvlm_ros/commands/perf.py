"""``depthvlm perf``: side-by-side performance figures, each a ratio measured within one run.

The options go to :func:`depthvlm_ros.core.perf.run_perf` (see :mod:`depthvlm_ros.core.perf`
for what is measured), with the ROS benchmarks of :mod:`depthvlm_ros.ros.perf_node`. It writes
``perf.json``, ``perf.md`` and ``perf.png`` into ``--out``; the exit status is 1 when a
benchmark failed. ``--arch tiny --device cpu`` checks the full-architecture path without a GPU.
"""

from __future__ import annotations

import argparse
import functools
import sys

from ..core.config import DepthVLMConfig
from ..core.errors import DepthVLMError

__all__ = ["HELP", "add_arguments", "run"]

HELP = ("Measure performance ratios (dense vs per-point, prefix reuse, node overhead, point "
        "cloud, head backends) and write perf.json, perf.md and perf.png.")

# The names of depthvlm_ros.core.perf's BENCHMARKS and VARIANTS, for the help text: importing
# them would make `depthvlm --help` import torch (a test keeps both copies equal).
_BENCHMARKS = ("dense", "prefix", "answers", "cameras", "decode", "head", "pointcloud",
               "node")
_ARCH_VARIANTS = ("eager", "compile", "cudagraphs", "trt_head")


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``depthvlm perf``."""
    p.add_argument("--model", default=DepthVLMConfig.model_path,
                   help="model folder or 'embedded' (measured next to a random perf model; "
                        "the node runs this one)")
    p.add_argument("--out", default="runs/perf", help="output folder (default runs/perf)")
    p.add_argument("--only", default="",
                   help=f"comma-separated subset of: {', '.join(_BENCHMARKS)}")
    p.add_argument("--repeats", type=int, default=None,
                   help="timed repeats per variant (default 10; 3 with --quick)")
    p.add_argument("--quick", action="store_true",
                   help="small images, few repeats and a tiny perf model (for tests)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads here and in the node (default 1: on a shared machine "
                        "more threads than free cores make timings meaningless)")
    p.add_argument("--no-perf-model", action="store_true",
                   help="measure only --model (skip the random perf model)")
    g = p.add_argument_group("full architecture (replaces the benchmarks above)")
    g.add_argument("--arch", choices=("tiny", "4b"), default=None,
                   help="benchmark the full DepthVLM architecture with random weights on "
                        "--device: depth-only frames/s, per-stage ms, peak memory, eager vs "
                        "torch.compile / CUDA graphs / TensorRT head, compute-bound limit "
                        "(4b: Qwen3-VL-4B config, 640x480, fx 500)")
    g.add_argument("--device", default=DepthVLMConfig.device,
                   help="device of --arch: auto (cuda when available), cpu, cuda or cuda:N")
    g.add_argument("--dtype", default=DepthVLMConfig.dtype,
                   choices=("auto", "bfloat16", "float16", "float32"),
                   help="precision of --arch (auto: bfloat16 on GPU, float32 on CPU)")
    g.add_argument("--variants", default=",".join(_ARCH_VARIANTS),
                   help="comma-separated subset of: " + ", ".join(_ARCH_VARIANTS)
                        + " (eager always runs, as the baseline)")
    g.add_argument("--warmup", type=int, default=None,
                   help="untimed frames per variant of --arch (default 3 on GPU, 1 on CPU)")
    g.add_argument("--budget-s", type=float, default=None,
                   help="--arch: skip variants not yet prepared after this many seconds "
                        "(compiles are not interrupted; bounds a short GPU run)")
    g.add_argument("--peak-tflops", type=float, default=989.0,
                   help="peak TFLOP/s for the compute-bound limit (default 989: H100 SXM dense "
                        "bf16; the H200 is the same chip)")


def run(args: argparse.Namespace) -> int:
    """Run the selected benchmarks and write the report; a failed benchmark is the error."""
    from ..core.perf import PerfOptions, run_perf
    from ..ros import perf_node  # imports no ROS itself; says why the node cannot run

    options = PerfOptions(
        model=args.model, out=args.out, only=args.only, repeats=args.repeats, quick=args.quick,
        threads=args.threads, perf_model=not args.no_perf_model, arch=args.arch,
        device=args.device, dtype=args.dtype, variants=args.variants, warmup=args.warmup,
        budget_s=args.budget_s, peak_tflops=args.peak_tflops,
        command="depthvlm perf " + " ".join(sys.argv[2:] if sys.argv[1:2] == ["perf"] else []))
    result = run_perf(options, progress=functools.partial(print, flush=True), ros=perf_node)
    if result.failed:
        raise DepthVLMError("a benchmark failed (its figure's status in perf.json says why); "
                            "the other figures were written")
    return 0
