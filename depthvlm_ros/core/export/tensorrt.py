"""TensorRT: the engine's optimization profile, building an engine, running it, its cache.

No TensorRT Python API newer than release 10.3 is used. TensorRT is imported only inside the
functions that need it, so this module imports on machines without it.
"""

from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch

from ..camera import TOKEN_PIXELS
from ..errors import ExportError
from .cache import check_engine_file, current_engine_key, engine_paths, write_engine
from .interface import HEAD_INPUTS, HEAD_OUTPUT, canonical_grid, grid_pixels, logger, say

__all__ = [
    "TrtProfile",
    "TensorRTHead",
    "default_profile",
    "tensorrt_unavailable_reason",
    "build_tensorrt_engine",
    "load_or_build_engine",
]


@dataclass(frozen=True)
class TrtProfile:
    """The optimization profile of an engine: token grid and output size ranges.

    Output sizes are covered as ``token_pixels * grid`` at min/opt/max (the pipeline's sizes,
    ``token_pixels`` being the model's token size, 32 for Qwen3-VL); calls outside the profile
    fall back to the torch head.
    """

    min_grid: tuple[int, int] = (1, 1)
    opt_grid: tuple[int, int] = (30, 40)
    max_grid: tuple[int, int] = (64, 64)
    max_batch: int = 1
    out_min: tuple[int, int] = (32, 32)
    out_max: tuple[int, int] = (2048, 2048)
    token_pixels: int = TOKEN_PIXELS

    def contains(self, batch: int, grid: tuple[int, int], out_hw: tuple[int, int]) -> bool:
        """Whether a call with these sizes is inside the profile."""
        return (1 <= batch <= self.max_batch
                and all(lo <= g <= hi for lo, g, hi in zip(self.min_grid, grid, self.max_grid))
                and all(lo <= o <= hi for lo, o, hi in zip(self.out_min, out_hw, self.out_max)))

    def as_dict(self) -> dict[str, Any]:
        """The profile as the engine key records it.

        ``token_pixels`` is left out at Qwen3-VL's 32: keys written before it existed are all
        of 32-pixel models, and this way their cached engines keep matching.
        """
        out = {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}
        if out["token_pixels"] == TOKEN_PIXELS:
            del out["token_pixels"]
        return out


def default_profile(max_image_tokens: int = 1280, token_pixels: int = TOKEN_PIXELS) -> TrtProfile:
    """A profile covering every grid up to ``max_image_tokens`` with a side of at most 64.

    The opt grid is that of a 640x480 image from a camera with fx = fy = 500 at canonical
    focal 1000 (30 x 40 tokens of 32 pixels), shrunk to the token budget if needed. Output
    sizes are ``token_pixels`` (the model's token size) times the grid range.
    """
    side = max(1, min(64, int(max_image_tokens)))
    opt = canonical_grid(max_tokens=max_image_tokens, token_pixels=token_pixels)
    opt = (min(opt[0], side), min(opt[1], side))
    return TrtProfile(min_grid=(1, 1), opt_grid=opt, max_grid=(side, side), max_batch=1,
                      out_min=grid_pixels((1, 1), token_pixels),
                      out_max=grid_pixels((side, side), token_pixels), token_pixels=token_pixels)


def tensorrt_unavailable_reason(device: torch.device | None = None) -> str | None:
    """None when TensorRT can build and run engines for ``device``; else why not."""
    if device is not None and device.type != "cuda":
        return f"the model is on {device.type}, TensorRT needs a CUDA device"
    if not torch.cuda.is_available():
        return "CUDA is not available to torch"
    try:
        import tensorrt as trt
    except ImportError as exc:
        return f"the tensorrt Python package is not installed ({exc})"
    if not hasattr(trt, "Builder") or not hasattr(trt, "OnnxParser"):
        return "the installed tensorrt has no builder/ONNX parser (lean or dispatch runtime only)"
    return None


class _TrtLogger:
    """A TensorRT logger that forwards to ``depthvlm_ros.export`` (created lazily)."""

    def __new__(cls):
        import tensorrt as trt

        class Forward(trt.ILogger):
            def __init__(self) -> None:
                trt.ILogger.__init__(self)

            def log(self, severity, msg) -> None:
                if severity in (trt.ILogger.INTERNAL_ERROR, trt.ILogger.ERROR):
                    logger.error("TensorRT: %s", msg)
                elif severity == trt.ILogger.WARNING:
                    logger.warning("TensorRT: %s", msg)
                else:
                    logger.debug("TensorRT: %s", msg)

        return Forward()


def _keep_normalization_in_fp32(trt, network) -> int:
    """Compute the head's LayerNorm in fp32 inside an FP16 engine; returns how many layers.

    The head normalises the LLM's last hidden state (2560 wide for the 4B model), whose
    squared values can leave FP16's range while the statistics are accumulated. Opset 17+
    exports it as one INormalizationLayer, whose compute precision can be pinned without
    forcing its neighbours (the convolutions) out of FP16.
    """
    pinned = 0
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        if layer.type == trt.LayerType.NORMALIZATION:
            layer.__class__ = trt.INormalizationLayer  # the Python API's documented downcast
            layer.compute_precision = trt.float32
            pinned += 1
    return pinned


def build_tensorrt_engine(onnx_path: str | os.PathLike, profile: TrtProfile, dim_in: int,
                          fp16: bool = False, workspace_bytes: int = 2 << 30,
                          progress: Callable[[str], None] | None = None) -> bytes:
    """Build a serialized TensorRT engine from the exported head.

    Raises:
        ExportError: TensorRT missing, the parser rejected the graph, or the build failed.
    """
    reason = tensorrt_unavailable_reason()
    if reason:
        raise ExportError(f"cannot build a TensorRT engine: {reason}")
    import tensorrt as trt

    trt_logger = _TrtLogger()
    builder = trt.Builder(trt_logger)
    flags = 0
    # Explicit batch is the only mode in TensorRT 10 (the flag is deprecated there); older
    # releases need it set.
    if hasattr(trt.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH") and \
            int(trt.__version__.split(".")[0]) < 10:
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, trt_logger)
    say(progress, f"TensorRT {trt.__version__}: parsing {onnx_path}")
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ExportError(f"TensorRT's ONNX parser rejected {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_bytes))
    if not fp16 and hasattr(trt.BuilderFlag, "TF32"):
        # TF32 is on by default and would make an "fp32" engine miss the 1e-4 agreement.
        config.clear_flag(trt.BuilderFlag.TF32)
    if fp16:
        if not builder.platform_has_fast_fp16:
            logger.warning("this GPU has no fast FP16; building with FP16 allowed anyway")
        config.set_flag(trt.BuilderFlag.FP16)
        _keep_normalization_in_fp32(trt, network)
    opt_profile = builder.create_optimization_profile()
    p = profile
    for name in HEAD_INPUTS[:4]:
        opt_profile.set_shape(name, (1, *p.min_grid, dim_in), (1, *p.opt_grid, dim_in),
                              (p.max_batch, *p.max_grid, dim_in))
    # out_hw is a shape tensor (it sets the Resize output size): its profile is over values.
    opt_profile.set_shape_input("out_hw", list(p.out_min),
                                list(grid_pixels(p.opt_grid, p.token_pixels)), list(p.out_max))
    config.add_optimization_profile(opt_profile)
    say(progress, f"building the TensorRT engine ({'fp16' if fp16 else 'fp32'}, grid "
                   f"{p.min_grid}..{p.max_grid}, opt {p.opt_grid}); this takes minutes")
    t0 = time.perf_counter()
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ExportError("TensorRT failed to build the engine (see the TensorRT errors logged)")
    say(progress, f"engine built in {time.perf_counter() - t0:.0f} s ({serialized.nbytes / 1e6:.1f} MB)")
    return bytes(serialized)


class TensorRTHead:
    """Run a TensorRT engine of the head on torch CUDA tensors (no extra copies).

    Inputs are bound by ``data_ptr()`` and the engine is enqueued on torch's current stream,
    so it is ordered with the surrounding torch work like any torch op. Calls outside the
    engine's profile run the torch head instead (logged once).

    Args:
        engine_bytes: a serialized engine.
        profile: the profile it was built with.
        fallback: the torch head for out-of-profile calls.
        device: the CUDA device of the features.

    Raises:
        ExportError: the engine cannot be deserialized (corrupt, or from another TensorRT/GPU).
    """

    def __init__(self, engine_bytes: bytes, profile: TrtProfile, fallback: Callable,
                 device: torch.device) -> None:
        import tensorrt as trt

        self._trt = trt
        self.profile = profile
        self.fallback = fallback
        self.device = device
        self._logger = _TrtLogger()
        self.runtime = trt.Runtime(self._logger)
        with torch.cuda.device(device):
            self.engine = self.runtime.deserialize_cuda_engine(engine_bytes)
            if self.engine is None:
                raise ExportError("TensorRT could not deserialize the engine")
            self.context = self.engine.create_execution_context()
        if self.context is None:
            raise ExportError("TensorRT could not create an execution context")
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        if sorted(names) != sorted(list(HEAD_INPUTS) + [HEAD_OUTPUT]):
            raise ExportError(f"engine tensors {names} are not the head's")
        self._in_dtype = self._torch_dtype(self.engine.get_tensor_dtype("ds0"))
        self._out_dtype = self._torch_dtype(self.engine.get_tensor_dtype(HEAD_OUTPUT))
        self._hw_dtype = self._torch_dtype(self.engine.get_tensor_dtype("out_hw"))
        # out_hw feeds shape computation, so TensorRT reads it from host memory.
        self._hw_on_host = bool(self.engine.is_shape_inference_io("out_hw"))
        self._warned = False

    def _torch_dtype(self, dt) -> torch.dtype:
        trt = self._trt
        table = {trt.DataType.FLOAT: torch.float32, trt.DataType.HALF: torch.float16,
                 trt.DataType.INT32: torch.int32}
        if hasattr(trt.DataType, "INT64"):
            table[trt.DataType.INT64] = torch.int64
        if dt not in table:
            raise ExportError(f"unsupported engine tensor type {dt}")
        return table[dt]

    def __call__(self, ds0: torch.Tensor, ds1: torch.Tensor, ds2: torch.Tensor,
                 llm: torch.Tensor, out_hw: torch.Tensor | Sequence[int]) -> torch.Tensor:
        out_h, out_w = (int(v) for v in out_hw)
        batch, gh, gw = ds0.shape[:3]
        if not ds0.is_cuda or not self.profile.contains(batch, (gh, gw), (out_h, out_w)):
            if not self._warned:
                logger.warning("TensorRT engine profile %s does not cover batch %d, grid %dx%d, "
                               "output %dx%d: using the torch head for such calls",
                               self.profile.as_dict(), batch, gh, gw, out_h, out_w)
                self._warned = True
            return self.fallback(ds0, ds1, ds2, llm, (out_h, out_w)).float()
        ctx = self.context
        keep = []  # tensors must outlive the enqueue
        for name, t in zip(HEAD_INPUTS, (ds0, ds1, ds2, llm)):
            t = t.detach().to(self._in_dtype).contiguous()
            keep.append(t)
            ctx.set_input_shape(name, tuple(t.shape))
            ctx.set_tensor_address(name, t.data_ptr())
        hw = torch.tensor([out_h, out_w], dtype=self._hw_dtype,
                          device="cpu" if self._hw_on_host else ds0.device)
        keep.append(hw)
        ctx.set_tensor_address("out_hw", hw.data_ptr())
        missing = ctx.infer_shapes()
        if missing:
            raise ExportError(f"TensorRT cannot infer output shapes; missing inputs {missing}")
        shape = tuple(ctx.get_tensor_shape(HEAD_OUTPUT))
        out = torch.empty(shape, dtype=self._out_dtype, device=ds0.device)
        ctx.set_tensor_address(HEAD_OUTPUT, out.data_ptr())
        stream = torch.cuda.current_stream(ds0.device)
        if not ctx.execute_async_v3(stream.cuda_stream):
            raise ExportError("TensorRT execution failed")
        # `keep` holds the inputs until here; the host copy of out_hw was read at enqueue.
        return out.float()


def load_or_build_engine(onnx_path: str | os.PathLike, onnx_sha256: str, cache_dir: str | os.PathLike,
                         fallback: Callable, device: torch.device, dim_in: int,
                         fp16: bool = False, profile: TrtProfile | None = None,
                         progress: Callable[[str], None] | None = None) -> TensorRTHead:
    """A ready :class:`TensorRTHead`: from the cache when valid, otherwise freshly built.

    A cached engine that fails the key/size/sha256 check, or that TensorRT cannot
    deserialize, is deleted and rebuilt (logged with the reason).
    """
    profile = profile or default_profile()
    key = current_engine_key(onnx_sha256, "fp16" if fp16 else "fp32", profile, device)
    blob, why = check_engine_file(cache_dir, key)
    if blob is not None:
        try:
            head = TensorRTHead(blob, profile, fallback, device)
            logger.info("reusing TensorRT engine %s", engine_paths(cache_dir, key)[0])
            return head
        except ExportError as exc:
            why = f"cached engine failed to load ({exc})"
    if why != "no cached engine":
        logger.warning("rebuilding the TensorRT engine: %s", why)
        for path in engine_paths(cache_dir, key):
            path.unlink(missing_ok=True)
    blob = build_tensorrt_engine(onnx_path, profile, dim_in, fp16=fp16, progress=progress)
    write_engine(cache_dir, key, blob)
    return TensorRTHead(blob, profile, fallback, device)
