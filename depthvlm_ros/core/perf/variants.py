"""The variants the full-architecture benchmark compares, and how each is put into the model.

``eager`` is the model as built. ``compile`` is ``torch.compile`` (inductor) of every vision
block, every decoder layer and the head: "regional" compilation, one compile per distinct layer
class instead of one for 60 unrolled layers, so it fits a short run on a lent GPU. ``cudagraphs`` is
the same with ``mode="reduce-overhead"``, i.e. inductor plus CUDA graphs: its gain over
``compile`` is what the graphs add. ``trt_head`` keeps the model eager and runs the depth head
on a TensorRT engine built for the benchmark's exact sizes. A variant that cannot run here (no
CUDA, no TensorRT, a compile error) comes back as skipped with the reason.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence

import torch
from torch import nn

from ..pipeline import DepthVLMPipeline

__all__ = ["VARIANTS", "Variant", "VariantSwapper", "prepare_variant", "short_error",
           "dynamo_counts", "recompile_limit"]

#: Variants in the order they are prepared; ``eager`` is the baseline and always runs.
VARIANTS = ("eager", "compile", "cudagraphs", "trt_head")


@dataclass
class Variant:
    """What a variant swaps into the model: decoder layers, vision blocks, head runtime."""

    name: str
    text_layers: list[nn.Module] | None = None
    vision_blocks: list[nn.Module] | None = None
    head: Callable | None = None
    mark_step: bool = False  # CUDA-graph trees: one new "step" per frame
    min_warmup: int = 1
    status: str = "ok"
    notes: list[str] = field(default_factory=list)


class VariantSwapper:
    """Puts a variant's modules into the model for one frame and restores the eager ones."""

    def __init__(self, pipe: DepthVLMPipeline) -> None:
        self.pipe = pipe
        inner = pipe.model.model
        self.text = inner.language_model.layers
        self.vision = inner.visual.blocks
        self.eager_text = list(self.text)
        self.eager_vision = list(self.vision)
        self.eager_head = pipe.head_runtime

    @contextlib.contextmanager
    def active(self, variant: Variant) -> Iterator[None]:
        # ModuleList item assignment keeps the container (and any reference to it) in place;
        # compiled wrappers share the eager modules' parameters, so nothing is copied.
        try:
            for i, m in enumerate(variant.text_layers or ()):
                self.text[i] = m
            for i, m in enumerate(variant.vision_blocks or ()):
                self.vision[i] = m
            if variant.head is not None:
                self.pipe.head_runtime = variant.head
            yield
        finally:
            for i, m in enumerate(self.eager_text):
                self.text[i] = m
            for i, m in enumerate(self.eager_vision):
                self.vision[i] = m
            self.pipe.head_runtime = self.eager_head


def short_error(exc: BaseException) -> str:
    """The exception's type and the first line of its message, at most 300 characters."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:300] if text else ''}"


def _compile_all(modules: Sequence[nn.Module], backend: str, mode: str | None) -> list[nn.Module]:
    kwargs: dict[str, Any] = {"backend": backend, "dynamic": False}
    if mode is not None:
        kwargs["mode"] = mode
    return [torch.compile(m, **kwargs) for m in modules]


def prepare_variant(name: str, pipe: DepthVLMPipeline, swapper: VariantSwapper,
                    grid: tuple[int, int], out_hw: tuple[int, int], cache_dir: str | None,
                    compile_backend: str, cpu_compile: bool,
                    progress: Callable[[str], None] | None) -> Variant:
    """Build a variant's replacements, or a skipped variant saying why not."""
    device = pipe.device
    if name == "eager":
        return Variant("eager")
    if name in ("compile", "cudagraphs"):
        if name == "cudagraphs" and device.type != "cuda":
            return Variant(name, status="skipped: CUDA graphs need a CUDA device")
        if device.type != "cuda" and not cpu_compile:
            return Variant(name, status="skipped: torch.compile is measured on CUDA only (CPU "
                                         "inductor timings say nothing about the GPU target, and "
                                         "compiling takes minutes on a CPU)")
        if not hasattr(torch, "compile"):
            return Variant(name, status="skipped: this torch has no torch.compile")
        mode = None
        if compile_backend == "inductor":
            mode = "reduce-overhead" if name == "cudagraphs" else "default"
        elif name == "cudagraphs":
            return Variant(name, status=f"skipped: CUDA graphs come with inductor's "
                                         f"reduce-overhead mode, not backend {compile_backend!r}")
        try:
            return Variant(name, _compile_all(swapper.eager_text, compile_backend, mode),
                            _compile_all(swapper.eager_vision, compile_backend, mode),
                            _compile_all([swapper.eager_head], compile_backend, mode)[0],
                            mark_step=name == "cudagraphs",
                            # reduce-overhead runs a frame eagerly, records, then replays
                            min_warmup=3 if name == "cudagraphs" else 1,
                            notes=[f"torch.compile(backend={compile_backend!r}, mode={mode!r}) "
                                   "of each vision block, decoder layer and the depth head"])
        except Exception as exc:  # noqa: BLE001 - an unavailable variant is a result, not a crash
            return Variant(name, status=f"skipped: torch.compile failed: {short_error(exc)}")
    if name == "trt_head":
        from ..export import (ExportError, TrtProfile, default_cache_dir, make_head_runtime,
                             tensorrt_unavailable_reason)

        reason = tensorrt_unavailable_reason(device)
        if reason:
            return Variant(name, status=f"skipped: {reason}")
        # A profile of exactly the benchmark's sizes builds in a fraction of the time of the
        # pipeline's wide default profile, and the engine is as fast at that size.
        profile = TrtProfile(min_grid=grid, opt_grid=grid, max_grid=grid, max_batch=1,
                             out_min=out_hw, out_max=out_hw,
                             token_pixels=pipe.model.token_pixels)
        try:
            runtime = make_head_runtime("tensorrt", pipe.model, cache_dir or default_cache_dir(),
                                        fp16=pipe.dtype != torch.float32, profile=profile,
                                        progress=progress)
        except ExportError as exc:
            return Variant(name, status=f"skipped: {exc}")
        except Exception as exc:  # noqa: BLE001
            return Variant(name, status=f"skipped: TensorRT head failed: {short_error(exc)}")
        return Variant(name, head=runtime,
                        notes=[f"TensorRT engine "
                               f"({'fp16' if pipe.dtype != torch.float32 else 'fp32'}) for grid "
                               f"{grid[0]}x{grid[1]} only; model otherwise eager"])
    raise ValueError(f"unknown variant {name!r}; choose from {', '.join(VARIANTS)}")


def dynamo_counts() -> dict[str, int]:
    try:
        from torch._dynamo.utils import counters
    except Exception:  # noqa: BLE001 - diagnostics only
        return {}
    return {"unique_graphs": int(counters["stats"].get("unique_graphs", 0)),
            "graph_breaks": int(sum(counters["graph_break"].values()))}


@contextlib.contextmanager
def recompile_limit(limit: int) -> Iterator[None]:
    # Vision blocks and decoder layers share one code object (the checkpointing layer's
    # __call__), and each compiled mode adds an entry per layer class; the default limit (8)
    # would silently drop later ones back to eager.
    try:
        import torch._dynamo.config as cfg
    except Exception:  # noqa: BLE001
        yield
        return
    name = "recompile_limit" if hasattr(cfg, "recompile_limit") else "cache_size_limit"
    old = getattr(cfg, name, None)
    if old is not None:
        setattr(cfg, name, max(int(old), limit))
    try:
        yield
    finally:
        if old is not None:
            setattr(cfg, name, old)

