"""ROS-free performance benchmarks: every figure is a ratio of two variants timed in one run.

Modules, one job each:

* :mod:`.timing`: synchronized clocks, medians and ratios of medians (how everything is timed);
* :mod:`.inputs`: the synthetic camera frame the benchmarks measure on;
* :mod:`.ratios`: dense map vs per-point queries, prefix reuse, head backends;
* :mod:`.arch`: the full architecture (DepthVLM-4B or tiny) on one device, per stage, with the
  variants of :mod:`.variants` (eager, torch.compile, CUDA graphs, TensorRT head) and the
  analytic FLOP model of :mod:`.flops`;
* :mod:`.report`: ``perf.json``, the ``perf.md`` summary and the ``perf.png`` plot;
* :mod:`.runner`: ``depthvlm perf`` as one call (:func:`run_perf`): choose, run, report.

The node-overhead and point-cloud benchmarks need ROS and live in
:mod:`depthvlm_ros.ros.perf_node`; :func:`run_perf` takes them as an argument.
"""

from .arch import (ARCHS, STAGES, TARGET_FPS, arch_config, build_random_model,
                   qwen3_vl_4b_config, run_arch_benchmark)
from .flops import H100_BF16_DENSE_FLOPS, frame_flops
from .inputs import synthetic_camera_frame, synthetic_frame
from .ratios import (PAPER_DENSE_S, PAPER_IMAGE, PAPER_POINTS_S, PERF_MODEL_SIZES,
                     QUESTION_TOKENS, QUICK_MODEL_SIZES, FullPrefillAnswer, answer_budget,
                     bench_dense_vs_points, bench_head, bench_prefix_reuse, full_prefill_answer,
                     make_perf_pipeline, point_query, question_with_tokens)
from .report import summary_markdown, write_report, write_summary
from .runner import BENCHMARKS, PerfOptions, PerfRun, RosBenchmarks, run_perf
from .timing import ratio_of_medians, summarize
from .variants import VARIANTS

__all__ = [
    # timing and inputs
    "summarize", "ratio_of_medians", "synthetic_frame", "synthetic_camera_frame",
    # ratio benchmarks
    "PERF_MODEL_SIZES", "QUICK_MODEL_SIZES", "PAPER_IMAGE", "PAPER_DENSE_S", "PAPER_POINTS_S",
    "QUESTION_TOKENS", "FullPrefillAnswer", "answer_budget", "make_perf_pipeline",
    "question_with_tokens", "full_prefill_answer", "point_query", "bench_dense_vs_points",
    "bench_prefix_reuse", "bench_head",
    # full architecture
    "ARCHS", "VARIANTS", "STAGES", "H100_BF16_DENSE_FLOPS", "TARGET_FPS", "qwen3_vl_4b_config",
    "arch_config", "build_random_model", "frame_flops", "run_arch_benchmark",
    # report and runner
    "summary_markdown", "write_summary", "write_report", "BENCHMARKS", "PerfOptions", "PerfRun",
    "RosBenchmarks", "run_perf",
]
