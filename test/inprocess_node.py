"""DepthVLMNode objects in this process, for tests that call the node's own callbacks (no test
here). Each has its own rclpy Context on a domain id of its own, the given model on the CPU,
the torch head, and no autostart: the test triggers the transitions it needs."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence


@contextmanager
def inprocess_nodes(model_dir: str | Path, purpose: str) -> Iterator[Callable[..., Any]]:
    """Yield ``make(remaps=(), **params)`` building nodes that are destroyed on exit.

    Args:
        model_dir: the model folder of every node.
        purpose: names the ROS domain (:func:`depthvlm_ros.ros.harness.domain_id`).
    """
    import rclpy
    from rclpy.context import Context
    from rclpy.parameter import Parameter

    from depthvlm_ros.ros.harness import domain_id
    from depthvlm_ros.ros.node import DepthVLMNode

    ctx = Context()
    rclpy.init(context=ctx, domain_id=domain_id(purpose))
    made = []

    def make(remaps: Sequence[str] = (), **params: Any):
        values = {"autostart": False, "model_path": str(model_dir), "device": "cpu",
                  "head_backend": "torch", **params}
        args = ["--ros-args"] + [a for r in remaps for a in ("-r", r)] if remaps else None
        node = DepthVLMNode(context=ctx, cli_args=args,
                            parameter_overrides=[Parameter(k, value=v) for k, v in values.items()])
        made.append(node)
        return node

    try:
        yield make
    finally:
        for node in made:
            node.destroy_node()
        rclpy.shutdown(context=ctx)
