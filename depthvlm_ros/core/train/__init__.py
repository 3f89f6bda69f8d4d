"""Staged DepthVLM training: losses, data, loop and distributed helpers.

Submodules are imported on demand (``from depthvlm_ros.core.train.loop import train``) so that
importing the package costs nothing.
"""

__all__ = ["losses", "data", "loop", "distributed", "evaluate"]
