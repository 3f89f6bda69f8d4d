"""Depth-head export (ONNX, TensorRT), head runtimes and a self-checking engine cache.

The DPT head is the only part of DepthVLM that is exported. It is a plain convolutional
decoder whose input sizes follow the token grid, so one ONNX graph with dynamic
``(batch, gh, gw)`` and a dynamic output size serves every image. The vision tower is not
exported: Qwen3-VL's tower builds its rotary table and its interpolated position embeddings
from ``image_grid_thw`` with Python loops and ``.tolist()``, and packs images into one
variable-length sequence (``cu_seqlens``); exporting that with a dynamic grid would mean
rewriting stock ``transformers`` code, which this package promises not to copy.

Graph interface (names are fixed; TensorRT profiles and I/O binding use them):

* ``ds0``, ``ds1``, ``ds2``, ``llm``: float32 ``(batch, gh, gw, C)`` token grids;
* ``out_hw``: int64 ``(2,)`` output height and width in pixels (each at least 2, because
  align-corners resizing is undefined for a one-pixel axis);
* ``depth``: float32 ``(batch, out_h, out_w)`` metres.

Runtimes are callables with the torch head's signature ``(ds0, ds1, ds2, llm, out_hw) ->
depth`` returning a float32 tensor on the inputs' device. :func:`select_head_runtime` picks
one for ``DepthVLMConfig.head_backend``; ``auto`` tries TensorRT, then ONNX Runtime, then the
torch head, and logs (logger ``depthvlm_ros.export``) why each skipped backend was skipped.
Every non-torch runtime is compared with the torch head on random features before it is
used, so a broken export or engine cannot silently change the depth.

Cache layout (``engine_cache_dir``, default ``~/.cache/depthvlm_ros``)::

    head-<weights sha256[:16]>-op<opset>.onnx       the exported head
    head-<weights sha256[:16]>-op<opset>.json       its sha256 and size (checked on reuse)
    trt-<engine key digest[:20]>.engine             a serialized TensorRT engine
    trt-<engine key digest[:20]>.json               the full engine key + engine sha256/size

An engine is reused only when its key file matches the current key (GPU name and compute
capability, TensorRT version, ONNX sha256, precision, profile, whose output sizes follow the
model's token size) and the engine file has the recorded size and sha256; otherwise, or when
TensorRT cannot deserialize it, it is rebuilt. An ONNX manifest records the model's token size
(``token_pixels``; 32 where an older manifest has none) and a cached export is reused only for
a head of that token size.

Modules, one job each:

* :mod:`.interface`: tensor names, opset, the logger, which head and its sizes;
* :mod:`.weights`: the weights hash that names an export; the head read alone from a folder;
* :mod:`.onnx`: the ONNX export and its cached copy with manifest;
* :mod:`.cache`: cache folder, atomic writes, TensorRT engine keys and engine files;
* :mod:`.tensorrt`: optimization profile, engine build, the TensorRT runtime;
* :mod:`.runtimes`: ONNX Runtime runtime, agreement check, backend choice;
* :mod:`.bench`: the side-by-side latency benchmark and its table;
* :mod:`.recipe`: what ``depthvlm export`` does, as :func:`run_export`.
"""

from __future__ import annotations

from ..errors import ExportError
from .bench import benchmark_head_backends, format_benchmark
from .cache import (EngineKey, check_engine_file, current_engine_key, default_cache_dir,
                    engine_paths, file_sha256, write_engine)
from .interface import (DEFAULT_OPSET, HEAD_INPUTS, HEAD_OUTPUT, canonical_grid, grid_pixels,
                        head_dims, head_of, head_token_pixels, logger)
from .onnx import ExportableHead, cached_head_onnx, export_head_onnx, manifest_token_pixels
from .recipe import ExportRequest, ExportResult, run_export
from .runtimes import (BACKENDS, OnnxRuntimeHead, make_head_runtime, onnxruntime_unavailable_reason,
                       select_head_runtime, verify_runtime)
from .tensorrt import (TensorRTHead, TrtProfile, build_tensorrt_engine, default_profile,
                       load_or_build_engine, tensorrt_unavailable_reason)
from .weights import head_weights_sha256, load_head_from_folder

__all__ = [
    "HEAD_INPUTS",
    "HEAD_OUTPUT",
    "DEFAULT_OPSET",
    "BACKENDS",
    "logger",
    "ExportError",
    "ExportableHead",
    "TrtProfile",
    "EngineKey",
    "OnnxRuntimeHead",
    "TensorRTHead",
    "ExportRequest",
    "ExportResult",
    "head_of",
    "head_dims",
    "head_weights_sha256",
    "file_sha256",
    "load_head_from_folder",
    "export_head_onnx",
    "default_cache_dir",
    "cached_head_onnx",
    "default_profile",
    "current_engine_key",
    "engine_paths",
    "write_engine",
    "check_engine_file",
    "build_tensorrt_engine",
    "load_or_build_engine",
    "tensorrt_unavailable_reason",
    "onnxruntime_unavailable_reason",
    "make_head_runtime",
    "verify_runtime",
    "select_head_runtime",
    "canonical_grid",
    "grid_pixels",
    "head_token_pixels",
    "manifest_token_pixels",
    "benchmark_head_backends",
    "format_benchmark",
    "run_export",
]
