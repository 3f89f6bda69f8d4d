"""Full-architecture benchmark (``depthvlm perf --arch``): structure on a CPU, figures on a GPU.

On a CPU the tiny architecture runs the whole code path (build on the device, pipeline, stage
clock, interleaved rounds, report) and the GPU-only variants must be skipped with a reason.
The analytic FLOP count is checked three ways: against a hand computation for the tiny config
at a known grid, against torch's FlopCounterMode on the real forward pass, and for the 4B
config against the parameter shapes of the model itself. The 4B run needs CUDA.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from depthvlm_ros.core import perf
from depthvlm_ros.core.model import DepthVLMForConditionalGeneration

REPO = Path(__file__).resolve().parent.parent

# The tiny config of model.tiny_config's defaults, written out: text hidden 64, 2 layers,
# 4 heads (head dim 16), 2 KV heads, MLP 128; vision hidden 32, 3 blocks, MLP 64, DeepStack
# on all 3 blocks, out 64; head features 32, channels (16, 32, 64, 64).
GRID = (3, 4)
SEQ_LEN = 31
OUT_HW = (96, 128)


def _positive(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


@pytest.fixture(scope="module")
def tokenizer():
    from depthvlm_ros.core.tokenizer import build_tokenizer

    return build_tokenizer()


@pytest.fixture(scope="module")
def cpu_result():
    torch.set_num_threads(1)
    lines: list[str] = []
    # 128 x 96 at the canonical focal: the model image is the input, a 3 x 4 token grid.
    result = perf.run_arch_benchmark("tiny", "cpu", torch.float32, width=128, height=96,
                                     fx=1000.0, repeats=3, warmup=1, progress=lines.append)
    return result, lines


def test_cpu_run_structure(cpu_result):
    r, lines = cpu_result
    assert r["arch"] == "tiny" and r["device"] == "cpu" and r["dtype"] == "float32"
    assert r["absolute_times_meaningful"] is False and r["meets_target"] is None
    assert r["grid"] == list(GRID) and r["image_tokens"] == 12 and r["model_image"] == [128, 96]
    assert r["vision_patches"] == 48 and r["sequence_tokens"] > r["image_tokens"]
    assert r["parameters"] > 0 and r["weights_bytes"] == 4 * r["parameters"]
    assert list(r["variants"]) == list(perf.VARIANTS)
    eager = r["variants"]["eager"]
    assert eager["status"] == "ok"
    assert set(eager["stages"]) == set(perf.STAGES)
    for stage, stats in eager["stages"].items():
        assert stats["n"] == 3, stage
        assert stats["median_ms"] >= 0 and math.isfinite(stats["median_ms"]), stage
    st = eager["stages"]
    # The split of vision_prefill adds up, and no stage exceeds the frame.
    assert st["vision"]["median_ms"] > 0 and st["prefill"]["median_ms"] > 0
    assert st["head"]["median_ms"] > 0
    for stage in perf.STAGES[:-1]:
        assert st[stage]["median_ms"] <= st["total"]["median_ms"]
    assert _positive(eager["fps"]) and _positive(eager["fps_model_stages"])
    assert eager["fps"] == pytest.approx(1e3 / st["total"]["median_ms"])
    assert eager["speedup_vs_eager"] == 1.0 and eager["depth_rel_diff_vs_eager"] == 0.0
    assert r["best_variant"] == "eager" and r["best_fps"] == eager["fps"]
    assert any("round 3/3" in line for line in lines)


def test_cpu_run_skips_gpu_variants_with_reasons(cpu_result):
    r, _ = cpu_result
    reasons = {n: v["status"] for n, v in r["variants"].items() if n != "eager"}
    for name, status in reasons.items():
        assert status.startswith("skipped: ") and len(status) > len("skipped: ") + 10, name
    assert "CUDA" in reasons["compile"] and "CUDA" in reasons["cudagraphs"]
    assert "TensorRT" in reasons["trt_head"]
    assert r["memory"]["peak_allocated_bytes"] is None
    assert r["variants"]["eager"]["peak_memory_bytes"] is None


def test_cpu_run_flops_and_limit(cpu_result, tokenizer):
    r, _ = cpu_result
    f = r["flops"]
    assert f["total"] > 0 and f["total"] == f["vision"] + f["llm"] + f["head"]
    assert f["causal_attention"] is True and f["seq_len"] == r["sequence_tokens"]
    want = perf.frame_flops(perf.arch_config("tiny", tokenizer), GRID,
                            r["sequence_tokens"], (96, 128))
    assert f["total"] == want["total"]
    assert r["peak_flops"] == perf.H100_BF16_DENSE_FLOPS
    assert r["compute_bound_fps"] == pytest.approx(r["peak_flops"] / f["total"])


def test_frame_flops_equal_hand_computation(tokenizer):
    cfg = perf.arch_config("tiny", tokenizer)
    got = perf.frame_flops(cfg, GRID, SEQ_LEN, OUT_HW, causal=True)
    n_patch, n_tok, length = 48, 12, SEQ_LEN
    # Vision: Conv3d patch embed (3 x 2 x 16 x 16 inputs), per block qkv + proj + fc1 + fc2,
    # attention QK^T and AV over all 48 patches, 4 mergers (main + 3 DeepStack) on 128 -> 64.
    patch_embed = 2 * n_patch * 1536 * 32
    blocks = 3 * (2 * n_patch * 32 * 96 + 2 * n_patch * 32 * 32 + 2 * n_patch * 32 * 64
                  + 2 * n_patch * 64 * 32)
    vision_attn = 3 * 2 * (2 * n_patch * n_patch * 32)
    mergers = 4 * (2 * n_tok * 128 * 128 + 2 * n_tok * 128 * 64)
    vision = patch_embed + blocks + vision_attn + mergers
    # LLM: q 64 -> 64, k and v 64 -> 32, o 64 -> 64, gate/up 64 -> 128, down 128 -> 64;
    # causal attention: 31 * 32 / 2 = 496 query-key pairs per head, 4 heads of 16.
    per_layer = 2 * length * (64 * 64 + 64 * 32 + 64 * 32 + 64 * 64 + 2 * 64 * 128 + 128 * 64)
    attn = 2 * (2 * 496 * 4 * 16)
    llm = 2 * (per_layer + attn)
    # Head at grid 3 x 4 (C 64, features 32, channels 16/32/64/64), output 96 x 128.
    conv = lambda h, w, k, ci, co: 2 * h * w * k * k * ci * co  # noqa: E731
    head = (conv(3, 4, 1, 64, 16) + conv(3, 4, 1, 64, 32) + conv(3, 4, 1, 64, 64) * 2
            + conv(3, 4, 8, 16, 16) + conv(3, 4, 4, 32, 32) + conv(3, 4, 2, 64, 64)
            + conv(24, 32, 3, 16, 32) + conv(12, 16, 3, 32, 32) + conv(6, 8, 3, 64, 32)
            + conv(3, 4, 3, 64, 32)
            + 2 * conv(3, 4, 3, 32, 32) + conv(6, 8, 1, 32, 32)            # refinenet4
            + 4 * conv(6, 8, 3, 32, 32) + conv(12, 16, 1, 32, 32)          # refinenet3
            + 4 * conv(12, 16, 3, 32, 32) + conv(24, 32, 1, 32, 32)        # refinenet2
            + 4 * conv(24, 32, 3, 32, 32) + conv(48, 64, 1, 32, 32)        # refinenet1
            + conv(48, 64, 3, 32, 16) + conv(96, 128, 3, 16, 32) + conv(96, 128, 1, 32, 1))
    assert (vision, llm, head) == (10_321_920, 4_825_088, 239_738_880)
    assert got["vision"] == vision and got["llm"] == llm and got["head"] == head
    assert got["total"] == vision + llm + head
    full = perf.frame_flops(cfg, GRID, SEQ_LEN, OUT_HW, causal=False)
    assert full["llm"] - got["llm"] == 2 * 2 * 2 * (31 * 31 - 496) * 4 * 16


def test_frame_flops_match_torch_flop_counter(tokenizer):
    """The count equals what torch counts on the real forward (eager attention: plain matmuls)."""
    from torch.utils.flop_counter import FlopCounterMode

    from depthvlm_ros.core.config import DepthVLMConfig
    from depthvlm_ros.core.pipeline import DepthVLMPipeline

    cfg = perf.arch_config("tiny", tokenizer)
    model = perf.build_random_model(cfg, "cpu", torch.float32, attn_implementation="eager")
    pipe = DepthVLMPipeline(model, tokenizer, DepthVLMConfig(device="cpu", dtype="float32",
                                                             head_backend="torch"),
                            model_canonical_fx=1000.0)
    mi = pipe.prepare(*perf.synthetic_camera_frame(128, 96, 1000.0))
    ids = torch.tensor([pipe.prompt_ids(mi.plan.num_tokens)])
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        enc = model.encode(ids, mi.pixel_values, mi.image_grid_thw)
        model.predict_depth(enc, (mi.plan.model_height, mi.plan.model_width))
    want = perf.frame_flops(cfg, (mi.plan.grid_h, mi.plan.grid_w), ids.shape[1],
                            (mi.plan.model_height, mi.plan.model_width), causal=False)
    # Eager attention computes every query-key pair (the mask is added after), hence causal=False.
    # Tolerance only for releases whose rotary tables use a (k = 1) matmul.
    assert counter.get_total_flops() == pytest.approx(want["total"], rel=1e-3)


def test_4b_flops_match_parameter_shapes():
    """Linear-layer FLOPs of the 4B count are 2 x tokens x the weights the 4B model really has."""
    cfg = perf.qwen3_vl_4b_config()
    with torch.device("meta"):
        model = DepthVLMForConditionalGeneration(perf.qwen3_vl_4b_config())
    grid, seq_len = (30, 40), 1215
    f = perf.frame_flops(cfg, grid, seq_len)["parts"]

    def weights(module) -> int:
        return sum(m.weight.numel() for m in module.modules() if isinstance(m, torch.nn.Linear))

    visual = model.model.visual
    assert f["llm_linear"] == 2 * seq_len * weights(model.model.language_model.layers)
    assert f["vision_linear"] == 2 * 4800 * weights(visual.blocks)
    assert f["vision_mergers"] == 2 * 1200 * (weights(visual.merger)
                                              + weights(visual.deepstack_merger_list))
    assert f["vision_patch_embed"] == 2 * 4800 * visual.patch_embed.proj.weight.numel()
    total = perf.frame_flops(cfg, grid, seq_len)["total"]
    # About 15.7 TFLOP: a compute-bound limit near 63 frames/s on one H100.
    assert 14e12 < total < 18e12
    assert 50 < perf.H100_BF16_DENSE_FLOPS / total < 75


def test_cli_arch_tiny_cpu(tmp_path):
    env = dict(os.environ)
    old = env.get("PYTHONPATH")
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + old if old else "")
    proc = subprocess.run(
        [sys.executable, "-m", "depthvlm_ros.cli", "perf", "--arch", "tiny", "--device", "cpu",
         "--quick", "--repeats", "2", "--out", str(tmp_path)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads((tmp_path / "perf.json").read_text())
    arch = report["gpu_arch"]
    assert arch["status"] == "ok" and arch["arch"] == "tiny" and report["figures"] == {}
    assert arch["variants"]["eager"]["stages"]["total"]["n"] == 2
    assert arch["variants"]["compile"]["status"].startswith("skipped: ")
    md = (tmp_path / "perf.md").read_text()
    assert "## Full architecture" in md and "Compute-bound limit" in md and "| eager |" in md


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (DepthVLM-4B in bf16)")
def test_4b_on_gpu():
    r = perf.run_arch_benchmark("4b", "cuda", torch.bfloat16, repeats=3, warmup=2,
                                variants=("eager",))
    assert r["image_tokens"] == 1200 and r["grid"] == [30, 40]
    assert 4.0e9 < r["parameters"] < 5.0e9
    eager = r["variants"]["eager"]
    assert eager["status"] == "ok" and _positive(eager["fps"])
    assert eager["peak_memory_bytes"] > r["weights_bytes"]
    assert 0 < eager["mfu"] < 1
    assert r["compute_bound_fps"] == pytest.approx(r["peak_flops"] / r["flops"]["total"])
    assert r["meets_target"] in (True, False)
