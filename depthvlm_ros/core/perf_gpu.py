"""Deprecated: the full-architecture benchmark moved to :mod:`depthvlm_ros.core.perf`.

Import from :mod:`depthvlm_ros.core.perf` (or its :mod:`~depthvlm_ros.core.perf.arch`,
:mod:`~depthvlm_ros.core.perf.flops` and :mod:`~depthvlm_ros.core.perf.report` modules); this
module only keeps the old import path working.
"""

import warnings

from .perf import (ARCHS, H100_BF16_DENSE_FLOPS, STAGES, TARGET_FPS, VARIANTS, arch_config,
                   build_random_model, frame_flops, qwen3_vl_4b_config, run_arch_benchmark,
                   summary_markdown)

__all__ = ["ARCHS", "VARIANTS", "STAGES", "H100_BF16_DENSE_FLOPS", "TARGET_FPS",
           "qwen3_vl_4b_config", "arch_config", "build_random_model", "frame_flops",
           "run_arch_benchmark", "summary_markdown"]

warnings.warn("depthvlm_ros.core.perf_gpu is deprecated: import from depthvlm_ros.core.perf",
              DeprecationWarning, stacklevel=2)
