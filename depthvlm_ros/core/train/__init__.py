"""Staged DepthVLM training, one module per job.

* :mod:`.config` — what a run is: :class:`TrainConfig` (the defaults), stages, architectures;
* :mod:`.data` — JSONL records -> augmented, canonical-focal batches with depth + text targets;
* :mod:`.losses` — SILog and the answer-only LM loss;
* :mod:`.loop` — the stage loop (:func:`~.loop.train`, :class:`~.loop.Trainer`);
* :mod:`.distributed` — torchrun / DDP / FSDP helpers;
* :mod:`.checkpoint` — self-describing checkpoints and exact resume;
* :mod:`.evaluate` — held-out evaluation through the inference pipeline;
* :mod:`.plots` — loss and evaluation curves from the run logs;
* :mod:`.grow` — deepen a trained model without changing its outputs.

Submodules are imported on demand (``from depthvlm_ros.core.train.loop import train``) so that
importing the package costs nothing.
"""

__all__ = ["config", "losses", "data", "loop", "distributed", "checkpoint", "evaluate", "plots",
           "grow"]
