"""Depth-head export: ONNX graph, ONNX Runtime agreement, backend selection, engine cache, CLI."""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import shutil

import numpy as np
import onnx
import pytest
import torch

from depthvlm_ros.cli import main
from depthvlm_ros.core import export as ex
from depthvlm_ros.core.config import DepthVLMConfig
from depthvlm_ros.core.depth_head import DPTDepthHead
from depthvlm_ros.core.errors import ExportError


@pytest.fixture(scope="session")
def head():
    """A small DPT head whose depth maps vary (std ~0.1 m around ~0.9 m).

    The tiny test model's head is nearly constant (~2 m everywhere): agreement on a flat map
    would say little about the convolutions, so the comparisons use weights scaled to keep
    activations of order one through the whole decoder.
    """
    h = DPTDepthHead(64, 32, (16, 32, 64, 64)).eval()
    gen = torch.Generator().manual_seed(0)
    modules = dict(h.named_modules())
    with torch.no_grad():
        for name, p in h.named_parameters():
            if p.dim() >= 2:
                transposed = isinstance(modules[name.rsplit(".", 1)[0]], torch.nn.ConvTranspose2d)
                fan_in = p.shape[0] if transposed else p[0].numel()
                p.copy_(torch.randn(p.shape, generator=gen) / math.sqrt(fan_in))
            else:
                base = 1.0 if name == "norm.weight" else 0.0
                p.copy_(base + 0.1 * torch.randn(p.shape, generator=gen))
    return h


@pytest.fixture(scope="session")
def cache(tmp_path_factory, head):
    """A cache folder holding ``head``'s ONNX export (exported once per session)."""
    folder = tmp_path_factory.mktemp("engine_cache")
    path, manifest = ex.cached_head_onnx(head, folder)
    return folder, path, manifest


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory, tiny_model_and_tokenizer):
    """A cache folder holding the tiny test model's head export."""
    folder = tmp_path_factory.mktemp("model_engine_cache")
    ex.cached_head_onnx(tiny_model_and_tokenizer[0], folder)
    return folder


def _features(head, grid, seed=0, batch=1):
    gen = torch.Generator().manual_seed(seed)
    c = ex.head_dims(head)["dim_in"]
    return [torch.randn(batch, *grid, c, generator=gen) for _ in range(4)]


def test_onnx_export_passes_checker_with_dynamic_axes(cache):
    _, path, manifest = cache
    onnx.checker.check_model(str(path), full_check=True)
    model = onnx.load(str(path))
    names = [i.name for i in model.graph.input]
    assert names == list(ex.HEAD_INPUTS)
    for inp in model.graph.input[:4]:
        dims = inp.type.tensor_type.shape.dim
        # batch, gh, gw symbolic; channels fixed.
        assert [bool(d.dim_param) for d in dims] == [True, True, True, False]
    hw = model.graph.input[4].type.tensor_type
    assert hw.elem_type == onnx.TensorProto.INT64 and [d.dim_value for d in hw.shape.dim] == [2]
    out_dims = model.graph.output[0].type.tensor_type.shape.dim
    assert len(out_dims) == 3 and all(d.dim_param or d.dim_value == 0 for d in out_dims[1:])
    assert manifest["onnx_sha256"] == ex.file_sha256(path)
    assert manifest["opset"] == ex.DEFAULT_OPSET


@pytest.mark.parametrize("grid", [(1, 2), (3, 5), (6, 4)])
@pytest.mark.parametrize("out", ["grid", (45, 71)])
def test_onnxruntime_matches_torch(cache, head, grid, out):
    _, path, _ = cache
    runtime = ex.OnnxRuntimeHead(path)
    out_hw = (32 * grid[0], 32 * grid[1]) if out == "grid" else out
    feats = _features(head, grid, seed=sum(grid), batch=2 if grid == (3, 5) else 1)
    with torch.inference_mode():
        want = head(*feats, out_hw)
    got = runtime(*feats, torch.tensor(out_hw))
    assert got.shape == want.shape == (feats[0].shape[0], *out_hw)
    assert got.dtype == torch.float32 and got.device == want.device
    # The random features must give a non-trivial map, or agreement would prove little.
    assert float(want.std()) > 0.02
    assert float((got - want).abs().max()) < 1e-4


def test_onnx_cache_reused_and_tampered_file_reexported(cache, head, tmp_path, caplog):
    folder, path, manifest = cache
    local = tmp_path / "cache"
    shutil.copytree(folder, local)
    caplog.set_level(logging.INFO, logger="depthvlm_ros.export")
    again, _ = ex.cached_head_onnx(head, local)
    assert again.name == path.name and "reusing cached ONNX head" in caplog.text
    data = bytearray(again.read_bytes())
    data[len(data) // 2] ^= 0xFF
    again.write_bytes(bytes(data))
    caplog.clear()
    fresh, fresh_manifest = ex.cached_head_onnx(head, local)
    assert "does not match its record" in caplog.text
    assert ex.file_sha256(fresh) == manifest["onnx_sha256"] == fresh_manifest["onnx_sha256"]


def test_weights_hash_follows_every_weight(head):
    base = ex.head_weights_sha256(head)
    other = DPTDepthHead(**ex.head_dims(head))
    other.load_state_dict(head.state_dict())
    assert ex.head_weights_sha256(other) == base
    with torch.no_grad():
        other.scratch.output_conv2[2].bias.add_(1e-6)
    assert ex.head_weights_sha256(other) != base


def test_auto_selects_onnxruntime_here_and_logs_why(model_cache, tiny_model_and_tokenizer, caplog):
    folder = model_cache
    model = tiny_model_and_tokenizer[0]
    caplog.set_level(logging.INFO, logger="depthvlm_ros.export")
    cfg = DepthVLMConfig(head_backend="auto", engine_cache_dir=str(folder))
    runtime, name = ex.select_head_runtime(model, cfg, "tiny")
    assert name == "onnxruntime" and isinstance(runtime, ex.OnnxRuntimeHead)
    messages = [r.getMessage() for r in caplog.records if r.name == "depthvlm_ros.export"]
    chosen = [m for m in messages if m.startswith("depth head runs on onnxruntime")]
    assert chosen and "tensorrt:" in chosen[0], messages


def test_explicit_backends(model_cache, tiny_model_and_tokenizer):
    folder = model_cache
    model = tiny_model_and_tokenizer[0]
    cfg = DepthVLMConfig(engine_cache_dir=str(folder))
    with pytest.raises(ExportError, match="head_backend=tensorrt requested but unavailable"):
        ex.select_head_runtime(model, cfg.replace(head_backend="tensorrt"))
    runtime, name = ex.select_head_runtime(model, cfg.replace(head_backend="torch"))
    assert name == "torch" and runtime is model.depth_head
    _, name = ex.select_head_runtime(model, cfg.replace(head_backend="onnxruntime"))
    assert name == "onnxruntime"


def test_verify_runtime_rejects_a_wrong_runtime(head):
    def off_by_a_bit(*args):
        return head(*args) * 1.001

    with pytest.raises(ExportError, match="disagrees"):
        ex.verify_runtime(off_by_a_bit, head)


def test_pipeline_uses_onnxruntime_head(model_cache, tiny_model_dir):
    from depthvlm_ros.core.camera import Intrinsics
    from depthvlm_ros.core.pipeline import DepthVLMPipeline

    folder = model_cache
    base = DepthVLMConfig(model_path=str(tiny_model_dir), device="cpu", engine_cache_dir=str(folder))
    rgb = np.random.default_rng(0).integers(0, 255, (96, 128, 3), dtype=np.uint8)
    intr = Intrinsics(100.0, 100.0, 63.5, 47.5, 128, 96)
    ort_pipe = DepthVLMPipeline.from_config(base.replace(head_backend="onnxruntime"))
    torch_pipe = DepthVLMPipeline.from_config(base.replace(head_backend="torch"))
    assert ort_pipe.head_backend_name == "onnxruntime"
    a = ort_pipe.process_frame(rgb, intr, keep_context=False).depth
    b = torch_pipe.process_frame(rgb, intr, keep_context=False).depth
    assert a.shape == b.shape == (96, 128)
    np.testing.assert_allclose(a, b, atol=1e-4, equal_nan=True)


# --- TensorRT engine cache (plain files: no TensorRT needed) ---------------------------------
def _key(**changes):
    key = ex.EngineKey(gpu_name="NVIDIA H100 80GB HBM3", compute_capability="9.0",
                       tensorrt_version="10.9.0", onnx_sha256="ab" * 32, precision="fp16",
                       profile=ex.default_profile().as_dict())
    return dataclasses.replace(key, **changes)


def test_engine_key_changes_with_every_component():
    base = _key()
    assert base.digest() == _key().digest()  # deterministic
    profile = dict(base.profile, max_grid=[48, 48])
    variants = [_key(gpu_name="NVIDIA H200"), _key(compute_capability="8.9"),
                _key(tensorrt_version="10.10.0"), _key(onnx_sha256="cd" * 32),
                _key(precision="fp32"), _key(profile=profile)]
    digests = {v.digest() for v in variants}
    assert len(digests) == len(variants) and base.digest() not in digests
    paths = {ex.engine_paths("/c", v)[0] for v in variants}
    assert len(paths) == len(variants) and ex.engine_paths("/c", base)[0] not in paths


def test_engine_file_checks(tmp_path):
    key = _key()
    blob = bytes(range(256)) * 64
    assert ex.check_engine_file(tmp_path, key) == (None, "no cached engine")
    engine = ex.write_engine(tmp_path, key, blob)
    assert ex.check_engine_file(tmp_path, key) == (blob, "ok")
    _, record = ex.engine_paths(tmp_path, key)

    # Corrupt: one flipped byte, same size.
    bad = bytearray(blob)
    bad[1000] ^= 0x01
    engine.write_bytes(bytes(bad))
    got, why = ex.check_engine_file(tmp_path, key)
    assert got is None and "sha256" in why

    # Truncated.
    engine.write_bytes(blob[:-10])
    got, why = ex.check_engine_file(tmp_path, key)
    assert got is None and "size" in why

    # Stale: the record at this path was written for another TensorRT version.
    ex.write_engine(tmp_path, key, blob)
    info = json.loads(record.read_text())
    info["key"]["tensorrt_version"] = "8.6.1"
    record.write_text(json.dumps(info))
    got, why = ex.check_engine_file(tmp_path, key)
    assert got is None and "stale" in why and "tensorrt_version" in why

    # Unreadable or missing key file.
    record.write_text("{not json")
    assert "unreadable" in ex.check_engine_file(tmp_path, key)[1]
    record.unlink()
    assert "missing" in ex.check_engine_file(tmp_path, key)[1]


def test_profile_bounds():
    p = ex.default_profile(1280)
    assert p.opt_grid == (30, 40) == ex.canonical_grid()
    assert p.contains(1, (30, 40), (960, 1280))
    assert not p.contains(1, (65, 10), (2080, 320))
    assert not p.contains(2, (30, 40), (960, 1280))
    assert ex.default_profile(16).max_grid == (16, 16)


_TRT_REASON = ex.tensorrt_unavailable_reason(torch.device("cuda"))


@pytest.mark.skipif(_TRT_REASON is not None, reason=f"TensorRT engine tests: {_TRT_REASON}")
def test_tensorrt_engine_matches_and_corrupt_engine_is_rebuilt(cache, head, tmp_path, caplog):
    _, path, manifest = cache
    device = torch.device("cuda")
    cuda_head = DPTDepthHead(**ex.head_dims(head)).to(device).eval()
    cuda_head.load_state_dict(head.state_dict())
    profile = ex.TrtProfile(min_grid=(1, 1), opt_grid=(3, 4), max_grid=(8, 8),
                            out_min=(32, 32), out_max=(256, 256))
    trt_head = ex.load_or_build_engine(path, manifest["onnx_sha256"], tmp_path, cuda_head, device,
                                       ex.head_dims(head)["dim_in"], profile=profile)
    for grid in [(1, 2), (3, 5), (6, 4)]:
        ex.verify_runtime(trt_head, cuda_head, grid=grid, tol=1e-3)
    key = ex.current_engine_key(manifest["onnx_sha256"], "fp32", profile, device)
    engine, record = ex.engine_paths(tmp_path, key)
    # Garbage with a matching record: passes the file checks, fails deserialization.
    ex.write_engine(tmp_path, key, b"\0" * 4096)
    caplog.set_level(logging.WARNING, logger="depthvlm_ros.export")
    ex.load_or_build_engine(path, manifest["onnx_sha256"], tmp_path, cuda_head, device,
                            ex.head_dims(head)["dim_in"], profile=profile)
    assert "rebuilding the TensorRT engine" in caplog.text
    assert ex.check_engine_file(tmp_path, key)[1] == "ok" and engine.stat().st_size > 4096


# --- command line ------------------------------------------------------------------------------
def test_cli_export_end_to_end(tiny_model_dir, tiny_model_and_tokenizer, tmp_path, capsys):
    out = tmp_path / "export"
    assert main(["export", "--model", str(tiny_model_dir), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "exporting depth head to ONNX" in printed and "matches torch" in printed
    manifest = json.loads((out / "manifest.json").read_text())
    onnx_path = out / manifest["onnx_file"]
    onnx.checker.check_model(str(onnx_path), full_check=True)
    assert manifest["onnx_sha256"] == ex.file_sha256(onnx_path)
    assert manifest["model_folder"] == str(tiny_model_dir)
    assert manifest["head_weights_sha256"] == ex.head_weights_sha256(tiny_model_and_tokenizer[0].depth_head)
    assert manifest["versions"]["torch"] == torch.__version__
    assert manifest["verified"]["relative_error_vs_torch"] < 1e-4


def test_cli_bench_and_errors(tiny_model_dir, model_cache, capsys):
    folder = model_cache
    assert main(["export", "--model", str(tiny_model_dir), "--bench", "--grid", "2x3",
                 "--repeats", "2", "--cache-dir", str(folder)]) == 0
    table = capsys.readouterr().out
    assert "grid 2x3 -> 64x96" in table
    lines = table.splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith("backend")) + 1
    rows = {ln.split()[0]: ln for ln in lines[start:start + 3]}
    assert sorted(rows) == ["onnxruntime", "tensorrt", "torch"]
    assert rows["onnxruntime"].endswith("ok") and "unavailable" in rows["tensorrt"]
    assert main(["export", "--model", str(tiny_model_dir), "--out", "x", "--tensorrt"]) == 1
    assert "--tensorrt:" in capsys.readouterr().err
    assert main(["export", "--model", str(tiny_model_dir)]) == 1
    assert "nothing to do" in capsys.readouterr().err


def test_run_export_returns_its_figures_and_reports_through_progress(tiny_model_dir, model_cache,
                                                                     capsys):
    with pytest.raises(ExportError, match="nothing to do"):
        ex.run_export(ex.ExportRequest(model=str(tiny_model_dir)))
    request = ex.ExportRequest(model=str(tiny_model_dir), bench=True, grid=(2, 3), repeats=1,
                               cache_dir=str(model_cache))
    result = ex.run_export(request)
    assert capsys.readouterr().out == ""  # no progress callback: silent
    assert result.model_folder == tiny_model_dir and result.manifest is None
    assert [r["backend"] for r in result.bench_rows] == ["torch", "tensorrt", "onnxruntime"]
    lines = []
    ex.run_export(request, progress=lines.append)
    assert lines[0] == f"loading the depth head of {tiny_model_dir}"
    assert lines[-1].startswith("depth head latency, grid 2x3 -> 64x96 px")
