#!/usr/bin/env python3
"""Export the full-size depth head (fp32 and fp16 ONNX) and measure ONNX Runtime against torch.

fp32 is ``depthvlm export``'s own recipe (:func:`run_export`: the head read alone from the
folder, ``depth_head.onnx``, onnx.checker, ONNX Runtime checked against torch); fp16 is that
file converted with ONNX Runtime's float16 converter, keeping the float32 inputs and output
(the graph interface of ``core/export/interface.py``) and LayerNormalization in float32 (the
LLM's 2560-wide hidden state, as the TensorRT FP16 build does). Both are then compared with
the float32 torch head on the token grid of ``scripts/fullsize_predict.py``'s frame.

    python scripts/fullsize_export.py /work/fullsize --out runs/fullsize/export
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import onnx
import torch

from depthvlm_ros.core.export import (ExportRequest, OnnxRuntimeHead, load_head_from_folder,
                                      run_export, verify_runtime)
from depthvlm_ros.core.export.interface import grid_pixels, head_token_pixels, probe_features


def sort_topologically(model: onnx.ModelProto) -> onnx.ModelProto:
    """Reorder the main graph's nodes so every input is produced before it is used.

    The float16 converter appends the input casts at the end of the node list; ONNX requires
    topological order (``onnx.checker`` says so, ONNX Runtime sorts silently). The stale
    intermediate types are dropped as well.
    """
    graph = model.graph
    ready = {i.name for i in graph.input} | {t.name for t in graph.initializer} | {""}
    pending, ordered = list(graph.node), []
    while pending:
        rest = []
        for node in pending:
            if all(name in ready for name in node.input):
                ordered.append(node)
                ready.update(node.output)
            else:
                rest.append(node)
        if len(rest) == len(pending):
            raise SystemExit(f"graph has a cycle or a missing input near {rest[0].name}")
        pending = rest
    del graph.node[:]
    graph.node.extend(ordered)
    # The exporter's recorded intermediate types are float32; let shape inference redo them.
    del graph.value_info[:]
    return model


def timed(runtime, head, grid, repeats: int = 3) -> float:
    """Median seconds of ``repeats`` calls of ``runtime`` on a probe of ``grid``."""
    feats = probe_features(head, grid)
    out_hw = grid_pixels(grid, head_token_pixels(head))
    times = []
    with torch.inference_mode():
        for _ in range(repeats):
            t0 = time.perf_counter()
            runtime(*feats, out_hw)
            times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model")
    p.add_argument("--out", required=True)
    p.add_argument("--grid", default="12x16", help="token grid of the comparison (gh x gw)")
    args = p.parse_args(argv)
    torch.set_num_threads(2)
    grid = tuple(int(v) for v in args.grid.split("x"))
    out = Path(args.out)

    t0 = time.perf_counter()
    result = run_export(ExportRequest(model=args.model, out=str(out)), progress=print)
    export_s = time.perf_counter() - t0
    fp32_path = out / "depth_head.onnx"
    head = load_head_from_folder(args.model)

    from onnxruntime.transformers.float16 import convert_float_to_float16

    fp16_path = out / "depth_head_fp16.onnx"
    t1 = time.perf_counter()
    model16 = convert_float_to_float16(onnx.load(str(fp32_path)), keep_io_types=True,
                                       op_block_list=["LayerNormalization"])
    onnx.save(sort_topologically(model16), str(fp16_path))
    onnx.checker.check_model(str(fp16_path), full_check=True)
    convert_s = time.perf_counter() - t1

    rt32, rt16 = OnnxRuntimeHead(fp32_path, threads=2), OnnxRuntimeHead(fp16_path, threads=2)
    err32 = verify_runtime(rt32, head, grid=grid)  # raises above 1e-4
    err16 = verify_runtime(rt16, head, grid=grid, tol=1.0)  # measured, reported
    graph = onnx.load(str(fp32_path), load_external_data=False).graph
    report = {
        "model": args.model, "grid": list(grid),
        "out_hw": list(grid_pixels(grid, head_token_pixels(head))),
        "head_parameters": sum(t.numel() for t in head.state_dict().values()),
        "export_s": export_s, "fp16_convert_s": convert_s,
        "fp32": {"file": fp32_path.name, "bytes": fp32_path.stat().st_size,
                 "manifest_check": result.manifest["verified"],
                 "relative_error_vs_torch": err32},
        "fp16": {"file": fp16_path.name, "bytes": fp16_path.stat().st_size,
                 "relative_error_vs_torch": err16},
        "seconds_per_call": {"torch_fp32": timed(head, head, grid),
                             "onnxruntime_fp32": timed(rt32, head, grid),
                             "onnxruntime_fp16": timed(rt16, head, grid)},
        "inputs": [{"name": i.name, "dtype": onnx.TensorProto.DataType.Name(
                        i.type.tensor_type.elem_type),
                    "shape": [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim]}
                   for i in graph.input],
        "outputs": [{"name": o.name, "shape": [d.dim_param or d.dim_value
                                               for d in o.type.tensor_type.shape.dim]}
                    for o in graph.output],
    }
    (out / "fullsize_export.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
