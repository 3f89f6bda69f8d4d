"""Head runtimes (torch, ONNX Runtime, TensorRT): building one, checking it, choosing one.

A runtime is a callable with the torch head's signature ``(ds0, ds1, ds2, llm, out_hw) ->
depth`` returning a float32 tensor on the inputs' device. :func:`select_head_runtime` picks
one for ``DepthVLMConfig.head_backend``; every non-torch runtime is compared with the torch
head on random features (:func:`verify_runtime`) before it is used, so a broken export or
engine cannot silently change the depth.
"""

from __future__ import annotations

import copy
import math
import os
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

from ..errors import ExportError
from .cache import default_cache_dir
from .interface import (HEAD_INPUTS, HEAD_OUTPUT, grid_pixels, head_device_dtype, head_dims,
                        head_of, head_token_pixels, logger, probe_features)
from .onnx import cached_head_onnx
from .tensorrt import TrtProfile, default_profile, load_or_build_engine, tensorrt_unavailable_reason

__all__ = [
    "BACKENDS",
    "OnnxRuntimeHead",
    "onnxruntime_unavailable_reason",
    "verify_runtime",
    "make_head_runtime",
    "select_head_runtime",
]

#: Head backends in the order ``auto`` tries them.
BACKENDS = ("tensorrt", "onnxruntime", "torch")


def onnxruntime_unavailable_reason(device: torch.device | None = None) -> str | None:
    """None when ONNX Runtime can serve a head on ``device``; else why not."""
    try:
        import onnxruntime as ort
    except ImportError as exc:
        return f"onnxruntime is not installed ({exc})"
    if device is not None and device.type == "cuda" and \
            "CUDAExecutionProvider" not in ort.get_available_providers():
        return ("the model is on CUDA but onnxruntime has no CUDAExecutionProvider "
                "(install onnxruntime-gpu); copying features to the CPU would be slower than "
                "the torch head")
    return None


class OnnxRuntimeHead:
    """Run the exported head with ONNX Runtime; a drop-in for ``DPTDepthHead.__call__``.

    On a CUDA model with onnxruntime-gpu, inputs and output stay on the GPU (I/O binding on
    torch's buffers); otherwise features are copied to the CPU and the depth copied back to
    the inputs' device.

    Args:
        onnx_path: the exported head.
        device: where the model's features live.
        threads: intra-op threads for the CPU provider (0: ONNX Runtime's default).
    """

    def __init__(self, onnx_path: str | os.PathLike, device: torch.device | str = "cpu",
                 threads: int = 0) -> None:
        import onnxruntime as ort

        self.device = torch.device(device)
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = int(threads)
        opts.log_severity_level = 3  # errors only: provider fallback notes are logged by us
        available = ort.get_available_providers()
        self.on_gpu = self.device.type == "cuda" and "CUDAExecutionProvider" in available
        if self.on_gpu:
            providers = [("CUDAExecutionProvider", {"device_id": self.device.index or 0}),
                         "CPUExecutionProvider"]
        else:
            providers = ["CPUExecutionProvider"]
            if self.device.type == "cuda":
                logger.warning("onnxruntime has no CUDAExecutionProvider: the head runs on the "
                               "CPU with copies to and from %s", self.device)
        try:
            self.session = ort.InferenceSession(str(onnx_path), sess_options=opts,
                                                providers=providers)
        except Exception as exc:  # noqa: BLE001 - ORT raises its own exception types
            raise ExportError(f"onnxruntime cannot load {onnx_path}: {exc}") from None
        names = [i.name for i in self.session.get_inputs()]
        if names != list(HEAD_INPUTS):
            raise ExportError(f"{onnx_path} has inputs {names}, expected {list(HEAD_INPUTS)}")
        self.providers = self.session.get_providers()

    def __call__(self, ds0: torch.Tensor, ds1: torch.Tensor, ds2: torch.Tensor,
                 llm: torch.Tensor, out_hw: torch.Tensor | Sequence[int]) -> torch.Tensor:
        out_h, out_w = (int(v) for v in out_hw)
        grids = (ds0, ds1, ds2, llm)
        if self.on_gpu and ds0.is_cuda:
            return self._run_cuda(grids, out_h, out_w)
        feeds = {n: g.detach().to("cpu", torch.float32).contiguous().numpy()
                 for n, g in zip(HEAD_INPUTS, grids)}
        feeds["out_hw"] = np.array([out_h, out_w], dtype=np.int64)
        out = self.session.run([HEAD_OUTPUT], feeds)[0]
        return torch.from_numpy(out).to(ds0.device)

    def _run_cuda(self, grids, out_h: int, out_w: int) -> torch.Tensor:
        dev = grids[0].device
        inputs = [g.detach().to(dev, torch.float32).contiguous() for g in grids]
        out = torch.empty((inputs[0].shape[0], out_h, out_w), device=dev, dtype=torch.float32)
        binding = self.session.io_binding()
        for name, t in zip(HEAD_INPUTS, inputs):
            binding.bind_input(name, "cuda", dev.index or 0, np.float32, tuple(t.shape),
                               t.data_ptr())
        binding.bind_cpu_input("out_hw", np.array([out_h, out_w], dtype=np.int64))
        binding.bind_output(HEAD_OUTPUT, "cuda", dev.index or 0, np.float32, tuple(out.shape),
                            out.data_ptr())
        # ORT runs on its own CUDA stream: wait for torch's pending writes to the inputs,
        # and wait for ORT before torch reads the output.
        torch.cuda.current_stream(dev).synchronize()
        self.session.run_with_iobinding(binding)
        binding.synchronize_outputs()
        return out


def verify_runtime(runtime: Callable, model_or_head: nn.Module, grid: tuple[int, int] = (3, 4),
                   out_hw: tuple[int, int] | None = None, tol: float | None = None,
                   seed: int = 0) -> float:
    """Compare a head runtime with the torch head on random features.

    The reference is the head in float32 (a float32 copy when the model runs in bf16/fp16),
    fed the same features the runtime gets, so the check measures the export or engine and
    not the model's own rounding.

    Args:
        runtime: the candidate callable.
        model_or_head: the model whose head it replaces.
        grid: token grid of the probe.
        out_hw: output size (default the model image: the head's token size x ``grid``).
        tol: largest allowed ``max|a - b| / (1 + max|b|)`` (default 1e-4: float32 agreement;
            pass about 2e-2 for an FP16 engine).
        seed: seed of the random features.

    Returns:
        The relative error found.

    Raises:
        ExportError: the error exceeds ``tol`` or the output shape is wrong.
    """
    head = head_of(model_or_head)
    _, dtype = head_device_dtype(head)
    out_hw = out_hw or grid_pixels(grid, head_token_pixels(head))
    feats = probe_features(head, grid, seed)
    reference = head if dtype == torch.float32 else copy.deepcopy(head).float()
    with torch.inference_mode():
        want = reference(*[f.float() for f in feats], out_hw).float()
        got = runtime(*feats, out_hw).float()
    del reference
    if tuple(got.shape) != tuple(want.shape):
        raise ExportError(f"runtime output shape {tuple(got.shape)} != torch {tuple(want.shape)}")
    err = float((got - want).abs().max() / (1.0 + want.abs().max()))
    if tol is None:
        tol = 1e-4
    if not math.isfinite(err) or err > tol:
        raise ExportError(f"runtime disagrees with the torch head: relative error {err:.2e} > {tol:.0e}")
    return err


def make_head_runtime(backend: str, model_or_head: nn.Module, cache_dir: str | os.PathLike,
                      fp16: bool = False, profile: TrtProfile | None = None,
                      progress: Callable[[str], None] | None = None) -> Callable:
    """Build the runtime of one backend (no fallback, no verification).

    Raises:
        ExportError: the backend is unavailable here or could not be prepared.
    """
    head = head_of(model_or_head)
    device, _ = head_device_dtype(head)
    if backend == "torch":
        return head
    if backend == "onnxruntime":
        reason = onnxruntime_unavailable_reason()
        if reason:
            raise ExportError(reason)
        onnx_path, _ = cached_head_onnx(head, cache_dir, progress=progress)
        return OnnxRuntimeHead(onnx_path, device)
    if backend == "tensorrt":
        reason = tensorrt_unavailable_reason(device)
        if reason:
            raise ExportError(reason)
        onnx_path, manifest = cached_head_onnx(head, cache_dir, progress=progress)
        profile = profile or default_profile(token_pixels=head_token_pixels(head))
        return load_or_build_engine(onnx_path, manifest["onnx_sha256"], cache_dir, head, device,
                                    head_dims(head)["dim_in"], fp16=fp16, profile=profile,
                                    progress=progress)
    raise ExportError(f"unknown head backend {backend!r}; use one of {', '.join(BACKENDS)}")


def select_head_runtime(model: nn.Module, config, folder: str | os.PathLike | None = None
                        ) -> tuple[Callable, str]:
    """The head runtime for ``config.head_backend``, as ``(callable, backend name)``.

    ``auto`` tries TensorRT, then ONNX Runtime, then torch, and logs which one runs and why
    the others were skipped. A backend named explicitly must work: if it cannot be prepared
    or fails the comparison with the torch head, :class:`ExportError` says why. TensorRT
    engines are built in FP16 when the model itself runs in reduced precision.

    Args:
        model: the loaded DepthVLM (its ``depth_head`` is exported).
        config: a ``DepthVLMConfig`` (``head_backend``, ``engine_cache_dir``,
            ``max_image_tokens``).
        folder: the model folder (only used in log messages).
    """
    requested = getattr(config, "head_backend", "auto")
    head = head_of(model)
    device, dtype = head_device_dtype(head)
    if requested == "torch":
        return head, "torch"
    order = list(BACKENDS) if requested == "auto" else [requested]
    if requested not in ("auto",) + BACKENDS:
        raise ExportError(f"unknown head_backend {requested!r}")
    profile = default_profile(int(getattr(config, "max_image_tokens", 1280)),
                              head_token_pixels(head))
    fp16 = dtype != torch.float32
    skipped: list[str] = []
    cache_dir = None
    for backend in order:
        if backend == "torch":
            break
        reason = (tensorrt_unavailable_reason(device) if backend == "tensorrt"
                  else onnxruntime_unavailable_reason(device if requested == "auto" else None))
        if reason is None:
            try:
                cache_dir = cache_dir or default_cache_dir(config)
                runtime = make_head_runtime(backend, head, cache_dir, fp16=fp16, profile=profile)
                # An fp32 engine may pick other conv algorithms than torch: allow 1e-3.
                tol = None if backend == "onnxruntime" else (2e-2 if fp16 else 1e-3)
                err = verify_runtime(runtime, head, tol=tol)
            except ExportError as exc:
                reason = str(exc)
            except Exception as exc:  # noqa: BLE001 - a broken optional backend must not
                # stop the model from loading under auto; explicit requests still raise below.
                logger.debug("%s backend failed", backend, exc_info=True)
                reason = f"{type(exc).__name__}: {exc}"
            else:
                note = f"; skipped: {'; '.join(skipped)}" if skipped else ""
                logger.info("depth head runs on %s (matches torch, rel. error %.1e) for %s%s",
                            backend, err, folder or "the model", note)
                return runtime, backend
        if requested != "auto":
            raise ExportError(f"head_backend={requested} requested but unavailable: {reason}")
        skipped.append(f"{backend}: {reason}")
    logger.info("depth head runs on torch; skipped: %s", "; ".join(skipped) or "none")
    return head, "torch"
