"""The ``depthvlm`` subcommands, one module each (see :mod:`depthvlm_ros.cli`).

The two helpers below are the model options shared by the commands that run the inference
pipeline on files (``predict``, ``replay``), so that they spell, default and apply them alike.
"""

from __future__ import annotations

import argparse

__all__ = ["add_pipeline_arguments", "pipeline_config"]


def add_pipeline_arguments(p: argparse.ArgumentParser) -> None:
    """Add --model, --device, --head-backend, --max-image-tokens and --resize-mode."""
    p.add_argument("--model", default="embedded", help="model folder or 'embedded'")
    p.add_argument("--device", default="auto")
    p.add_argument("--head-backend", default="torch",
                   choices=("auto", "torch", "onnxruntime", "tensorrt"))
    p.add_argument("--max-image-tokens", type=int, default=None)
    p.add_argument("--resize-mode", choices=("auto", "release", "metric"), default=None,
                   help="how images reach the canonical camera (default: the config's, auto = "
                        "the model folder's own convention; see README 'Metric scale')")


def pipeline_config(args: argparse.Namespace):
    """The :class:`DepthVLMConfig` defaults with the options of :func:`add_pipeline_arguments`."""
    from ..core.config import DepthVLMConfig

    changes = {"model_path": args.model, "device": args.device, "head_backend": args.head_backend}
    if args.max_image_tokens:
        changes["max_image_tokens"] = args.max_image_tokens
    if args.resize_mode:
        changes["resize_mode"] = args.resize_mode
    return DepthVLMConfig().replace(**changes)
