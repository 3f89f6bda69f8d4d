"""Training: losses, scale-honest augmentation, batching, checkpoints/resume, and a real
two-process DDP run (Gloo on CPU) whose ranks end identical while the loss falls."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchrun_support import free_port, run_process_tree

from depthvlm_ros.core.bench.jsonl import load_gt_depth, load_rgb, read_jsonl
from depthvlm_ros.core.bench.metrics import METRIC_NAMES, DatasetMetrics, image_metrics
from depthvlm_ros.core.camera import Intrinsics
from depthvlm_ros.core.config import DepthVLMConfig
from depthvlm_ros.core.folders import make_tiny_model
from depthvlm_ros.core.pipeline import DepthVLMPipeline
from depthvlm_ros.core.frames import record_intrinsics
from depthvlm_ros.core.train.data import (AugmentConfig, BucketBatchPlan, SampleBuilder, TextMix,
                                          rewrite_coords)
from depthvlm_ros.core.train.evaluate import WORST_OF, evaluate_model, scale_diagnostics
from depthvlm_ros.core.train.losses import answer_lm_loss, silog_loss
from depthvlm_ros.core.train.config import parse_stages, scale_stages
from depthvlm_ros.core.train.loop import ARCHITECTURES, chain_logs, plot_losses, set_trainable
from depthvlm_ros.core.train.plots import seconds_per_step

REPO = Path(__file__).resolve().parents[1]


def write_plane_dataset(out: Path, n: int, seed: int, size=(160, 128), fx=120.0) -> Path:
    """A small benchmark of textured ground planes seen from a known height (metric depth)."""
    rng = np.random.default_rng(seed)
    out.mkdir(parents=True, exist_ok=True)
    w, h = size
    lines = []
    for i in range(n):
        cam_h = rng.uniform(1.0, 2.0)
        cx, cy = (w - 1) / 2 + rng.uniform(-3, 3), (h - 1) / 2 + rng.uniform(-3, 3)
        v = np.arange(h)[:, None].repeat(w, 1).astype(np.float32)
        u = np.arange(w)[None, :].repeat(h, 0).astype(np.float32)
        below = v > cy + 2
        depth = np.zeros((h, w), np.float32)
        depth[below] = cam_h * fx / (v[below] - cy)
        depth[depth > 30] = 0
        x = (u - cx) / fx * np.maximum(depth, 1e-3)
        checker = ((np.floor(x * 2) + np.floor(depth * 2)) % 2).astype(np.float32)
        rgb = np.zeros((h, w, 3), np.uint8)
        shade = np.clip(1.2 - depth / 20, 0.2, 1.0)
        rgb[..., 1] = (below * (80 + 120 * checker) * shade).astype(np.uint8)
        rgb[..., 2] = np.where(below, 40, 200).astype(np.uint8)
        Image.fromarray(rgb).save(out / f"rgb_{i}.png")
        Image.fromarray((depth * 1000).astype(np.uint16)).save(out / f"depth_{i}.png")
        lines.append({"image": f"rgb_{i}.png", "depth_path": f"depth_{i}.png",
                      "depth_scale": 1000.0, "original_fx": fx, "fy": fx, "cx": cx, "cy": cy,
                      "canonical_fx": 100.0, "dataset": "indoor" if i % 2 else "outdoor",
                      "prompt": "How far from the camera is the point at pixel (80, 100)?",
                      "solution": f"{float(depth[100, 80]):.2f} m", "qa_type": "point_depth",
                      "pixel_coords": [[80, 100]], "depth": [float(depth[100, 80])],
                      "generator": "test planes"})
    path = out / "bench.jsonl"
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    return path


@pytest.fixture(scope="module")
def plane_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("planes")
    return write_plane_dataset(root / "train", 8, 0), write_plane_dataset(root / "val", 4, 1)


# ------------------------------------------------------------------------------------------------
def test_silog_matches_formula_and_ignores_invalid():
    gt = torch.tensor([[1.0, 2.0], [0.0, 4.0]])
    pred = torch.tensor([[1.5, 2.0], [9.0, 3.0]])
    d = torch.log(torch.tensor([1.5, 2.0, 3.0])) - torch.log(torch.tensor([1.0, 2.0, 4.0]))
    want = torch.sqrt((d ** 2).mean() - 0.5 * d.mean() ** 2)
    assert torch.allclose(silog_loss([pred], [gt]), want, atol=1e-6)
    # A global scale error is penalised (lambda 0.5 keeps metric scale), a perfect map is ~0.
    assert float(silog_loss([gt.clamp_min(1) * 2], [gt])) > 0.4
    assert float(silog_loss([gt.clamp_min(1)], [gt])) < 2e-3


def test_silog_resizes_prediction_to_gt_align_corners():
    pred = torch.tensor([[1.0, 3.0]]).reshape(1, 2).expand(2, 2).contiguous()
    gt = torch.full((4, 3), 2.0)  # align-corners bilinear of [1, 3] to width 3 -> [1, 2, 3]
    gt[:, 0] = 1.0
    gt[:, 2] = 3.0
    assert float(silog_loss([pred], [gt])) < 2e-3


def test_answer_lm_loss_only_counts_labelled_tokens():
    torch.manual_seed(0)
    head = torch.nn.Linear(8, 11, bias=False)
    hidden = torch.randn(2, 5, 8)
    labels = torch.full((2, 5), -100)
    labels[0, 3], labels[1, 4] = 7, 2
    loss, n = answer_lm_loss(hidden, labels, head)
    logits = head(torch.stack([hidden[0, 2], hidden[1, 3]]))
    assert n == 2
    assert torch.allclose(loss, torch.nn.functional.cross_entropy(logits, torch.tensor([7, 2])))


def test_scale_diagnostics_separates_scale_from_shape():
    rng = np.random.default_rng(0)
    gt = rng.uniform(1.0, 8.0, (24, 32))
    gt[0, :5] = 0.0  # invalid pixels are ignored
    # Right shape, twice too far: scale 2, the aligned map is exact, raw δ1 would be 0.
    scale, aligned, constant = scale_diagnostics(2.0 * gt, gt)
    assert scale == pytest.approx(2.0)
    assert aligned == 1.0
    # The constant baseline uses only the GT: the same for any prediction.
    assert constant == scale_diagnostics(np.ones_like(gt), gt)[2]
    valid = gt[gt > 0]
    want = np.mean(np.maximum(np.median(valid) / valid, valid / np.median(valid)) < 1.25)
    assert constant == pytest.approx(want)
    # Shape errors survive the alignment.
    noisy = gt * np.exp(rng.normal(0, 0.5, gt.shape))
    assert scale_diagnostics(noisy, gt)[1] < 0.6
    assert all(math.isnan(x) for x in scale_diagnostics(gt, np.zeros_like(gt)))
    # No usable prediction: aligned δ1 0 (as δ1), the GT-only baseline is still defined.
    scale, aligned, still = scale_diagnostics(np.full_like(gt, np.nan), gt)
    assert math.isnan(scale) and aligned == 0.0 and still == constant


def test_evaluation_reports_benchmark_metrics():
    """The per-dataset scores of a training evaluation are the benchmark's own metrics."""
    assert set(WORST_OF) <= set(METRIC_NAMES)
    assert set(WORST_OF) <= {f.name for f in dataclasses.fields(DatasetMetrics)}


def test_plot_losses_chains_continued_runs(tmp_path):
    pytest.importorskip("matplotlib")
    logs = []
    for run in range(2):
        rows = [{"type": "train", "step": s, "stage": 0 if s < 30 else 1, "depth_loss": 1.0 / s,
                 "lm_loss": 2.0 / s} for s in range(10, 60, 10)]
        rows.append({"type": "eval", "step": 50, "depth": {"indoor": {"delta1": 0.3 + run}},
                     "summary": {"abs_rel_max": 0.5, "answer_accuracy": 0.1}})
        path = tmp_path / f"log{run}.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in rows) + "not json\n")
        logs.append(path)
    train_rows, eval_rows, starts = chain_logs(logs)
    assert starts == [50]
    assert [r["step"] for r in train_rows] == [10, 20, 30, 40, 50, 60, 70, 80, 90, 100]
    assert [r["run"] for r in train_rows] == [0] * 5 + [1] * 5
    assert [(r["step"], r["depth"]["indoor"]["delta1"]) for r in eval_rows] == [(50, 0.3),
                                                                                (100, 1.3)]
    # The continuation branched from run 0's step 30 (say its best checkpoint): run 0's later
    # rows are not its ancestors and are left out.
    train_rows, eval_rows, starts = chain_logs(logs, [30])
    assert starts == [30]
    assert [(r["run"], r["step"]) for r in train_rows] == [(0, 10), (0, 20), (0, 30), (1, 40),
                                                           (1, 50), (1, 60), (1, 70), (1, 80)]
    assert [r["step"] for r in eval_rows] == [80]
    # A resumed run logs some steps twice: the last row of a step wins.
    with open(logs[1], "a") as fh:
        fh.write(json.dumps({"type": "train", "step": 20, "stage": 0, "depth_loss": 9.0,
                             "lm_loss": 9.0}) + "\n")
    train_rows, _, _ = chain_logs(logs)
    assert [r["depth_loss"] for r in train_rows if r["step"] == 70] == [9.0]
    assert len(train_rows) == 10
    plot_losses(logs, tmp_path / "both.png", [30])
    plot_losses(logs[0], tmp_path / "one.png")
    for name in ("both.png", "one.png"):
        with Image.open(tmp_path / name) as im:
            assert im.size[0] > 500


def test_plot_losses_draws_the_grounding_losses_a_run_had(tmp_path):
    pytest.importorskip("matplotlib")
    # The object probes train in stages 0 and 2, not in the head-only stage 1.
    rows = [{"type": "train", "step": s, "stage": 1 if 30 <= s < 50 else 0,
             "depth_loss": 1.0 / s, "lm_loss": 2.0 / s,
             **({} if 30 <= s < 50 else {"object_loss": 3.0 / s})} for s in range(10, 90, 10)]
    log = tmp_path / "log.jsonl"
    log.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert plot_losses(log, tmp_path / "grounding.png") == ["depth_loss", "lm_loss",
                                                             "object_loss"]
    assert (tmp_path / "grounding.png").stat().st_size > 0
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    assert plot_losses(empty, tmp_path / "none.png") == []
    assert not (tmp_path / "none.png").exists()


def test_seconds_per_step_is_the_median_pace_after_start_up(tmp_path):
    log = tmp_path / "log.jsonl"
    rows = [{"type": "train", "step": 10, "sec_per_step": 9.0},  # start-up: left out
            {"type": "eval", "step": 10, "seconds": 50.0},
            {"type": "train", "step": 20, "sec_per_step": 0.2},
            {"type": "train", "step": 30, "sec_per_step": 0.4},
            {"type": "train", "step": 40, "sec_per_step": 0.3}]
    log.write_text("".join(json.dumps(r) + "\n" for r in rows) + "not json\n")
    assert seconds_per_step(log) == pytest.approx(0.3)
    log.write_text(json.dumps(rows[0]) + "\n")  # one row: it is all there is
    assert seconds_per_step(log) == pytest.approx(9.0)
    log.write_text(json.dumps(rows[1]) + "\n")
    with pytest.raises(ValueError, match="no train row"):
        seconds_per_step(log)


def test_scale_stages_keeps_proportions_and_learning_rates():
    stages = parse_stages("0:900:3e-4,1:50:1.5e-4,2:150:8e-5")
    assert scale_stages(stages, 1100) == stages
    for total in (3, 10, 257, 5000):
        scaled = scale_stages(stages, total)
        assert sum(s.steps for s in scaled) == total
        assert [(s.stage, s.lr) for s in scaled] == [(s.stage, s.lr) for s in stages]
        assert all(s.steps >= 1 for s in scaled)
    assert [s.steps for s in scale_stages(stages, 5000)] == [4091, 227, 682]
    # A stage of no steps stays empty; too few steps for the stages is an error.
    assert [s.steps for s in scale_stages(parse_stages("0:0:1e-3,1:10:1e-3"), 7)] == [0, 7]
    with pytest.raises(ValueError, match="cannot hold"):
        scale_stages(stages, 2)


def test_rewrite_coords_mirrors_or_refuses():
    q = "Distance between (10, 20) and (30, 40)?"
    assert rewrite_coords(q, [(10, 20), (30, 40)], [(89, 20), (69, 40)]) == \
        "Distance between (89, 20) and (69, 40)?"
    assert rewrite_coords(q, [(11, 20), (30, 40)], [(0, 0), (0, 0)]) is None
    assert rewrite_coords(q, [(10, 20)], [(0, 0)]) is None


def _builder(model, tok, **aug):
    pipe = DepthVLMPipeline(model, tok, DepthVLMConfig(canonical_fx=100.0, device="cpu"),
                            model_canonical_fx=100.0)
    return SampleBuilder(pipe.prompt_ids, tok, tok.convert_tokens_to_ids("<|im_end|>"), 100.0,
                         64, AugmentConfig(**aug), TextMix(), gt_at_model_size=False), pipe


def test_flip_and_crop_keep_metric_geometry(plane_data):
    model, tok = make_tiny_model(0, **ARCHITECTURES["test"])
    rec = read_jsonl(plane_data[0])[0]
    b, pipe = _builder(model, tok, hflip=1.0, jitter=0.0)
    gt_full = np.asarray(Image.open(rec.image.parent / "depth_0.png"), np.float32) / 1000
    s = b.build(rec, np.random.default_rng(0), kind="point")
    assert s.info["flip"]
    assert np.allclose(s.gt.numpy(), gt_full[:, ::-1])
    # The text target reads the flipped map at the pixel it names.
    u, v = s.text.uv
    assert s.text.truth == pytest.approx(float(np.median(
        [x for x in s.gt.numpy()[v - 1:v + 2, u - 1:u + 2].ravel() if x > 0])), rel=1e-6)
    # A crop keeps fx: the crop window maps to exactly the requested token grid and its depth
    # scale stays ~1 (no hidden zoom); GT is cut, never resampled.
    c = b.build(rec, np.random.default_rng(1), crop_grid=(2, 3), kind="dense", augment=False)
    x0, y0, cw, ch = c.info["window"]
    assert c.info["grid"] == (2, 3)
    assert c.depth_scale == pytest.approx(1.0, abs=0.03)
    assert np.array_equal(c.gt.numpy(), gt_full[y0:y0 + ch, x0:x0 + cw])
    assert cw == round(3 * 32 * rec.original_fx / 100.0)
    # The prompt is the pipeline's own layout, the reply is supervised, the prompt is not.
    n_img = c.info["grid"][0] * c.info["grid"][1]
    assert c.input_ids[:len(pipe.prompt_ids(n_img, c.text.question))] == \
        pipe.prompt_ids(n_img, c.text.question)
    assert all(x == -100 for x in c.labels[:len(pipe.prompt_ids(n_img, c.text.question))])
    assert c.labels[-1] == tok.convert_tokens_to_ids("<|im_end|>")


def test_qa_flip_rewrites_question_and_marker_is_drawn(plane_data):
    model, tok = make_tiny_model(0, **ARCHITECTURES["test"])
    rec = read_jsonl(plane_data[0])[0]
    b, _ = _builder(model, tok, hflip=1.0, jitter=0.0)
    s = b.build(rec, np.random.default_rng(0), kind="qa")
    w = 160
    assert f"({w - 1 - 80}, 100)" in s.text.question and s.info["flip"]
    m = b.build(rec, np.random.default_rng(0), kind="marker", augment=False)
    assert "red circle" in m.text.question
    plain = b.build(rec, np.random.default_rng(0), kind="point", augment=False)
    assert not torch.equal(m.pixel_values, plain.pixel_values)


def test_bucket_plan_is_deterministic_and_disjoint_across_ranks():
    grids = [(3, 4)] * 10 + [(4, 4)] * 7
    plans = [BucketBatchPlan(grids, 2, 2, r, seed=5, crop_prob=0.5) for r in range(2)]
    again = BucketBatchPlan(grids, 2, 2, 1, seed=5, crop_prob=0.5)
    for k in range(plans[0].batches_per_epoch):
        a, b = plans[0].batch(k), plans[1].batch(k)
        assert not set(a[0]) & set(b[0])
        assert again.batch(k) == b
        assert len({grids[i] for i in a[0]}) == 1
        if a[1] is not None:
            assert a[1][0] <= grids[a[0][0]][0] and a[1][1] <= grids[a[0][0]][1]


def test_set_trainable_stages():
    model, _ = make_tiny_model(0, **ARCHITECTURES["test"])
    s1 = set_trainable(model, 1)
    assert s1 and all(n.startswith("depth_head.") for n in s1)
    s2 = set(set_trainable(model, 2))
    assert not any(n.startswith("model.visual.") for n in s2)  # incl. DeepStack mergers
    assert any(n.startswith("model.language_model.") for n in s2)
    assert any(n.startswith("depth_head.") for n in s2)
    assert len(set_trainable(model, 0)) == len(list(model.parameters()))


# ------------------------------------------------------------------------------------------------
def _train_cmd(train, val, out, stages, extra=()):
    return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
            "--master_addr", "127.0.0.1", "--master_port", str(free_port()),
            "-m", "depthvlm_ros.cli", "train", "--train", str(train), "--eval", str(val),
            "--out", str(out), "--arch", "test", "--canonical-fx", "100",
            "--max-image-tokens", "64", "--stages", stages, "--batch-size", "2",
            "--grad-accum", "2", "--workers", "0", "--threads", "1", "--log-every", "1",
            "--ckpt-every", "4", "--eval-every", "100", "--eval-images", "2", "--device", "cpu",
            "--text-mix", "dense=1,point=1,marker=1,qa=1", *extra]


def test_ddp_two_processes_identical_and_loss_falls(plane_data, tmp_path):
    train, val = plane_data
    out = tmp_path / "run"
    env = dict(os.environ, OMP_NUM_THREADS="1", DEPTHVLM_TRAIN_DUMP_PARAMS="1")
    res = run_process_tree(_train_cmd(train, val, out, "0:12:3e-3,1:2:1e-3,2:2:1e-3"), env)
    assert res.returncode == 0, res.stderr[-3000:]
    # Both ranks dumped a digest of their final parameters: they must be identical.
    digests = [json.loads((out / f"params_rank{r}.json").read_text()) for r in range(2)]
    assert digests[0]["world_size"] == 2
    assert digests[0]["params"] == digests[1]["params"]
    rows = [json.loads(x) for x in (out / "train_log.jsonl").read_text().splitlines()]
    tr = [r for r in rows if r["type"] == "train" and r["stage"] == 0]
    first = np.mean([r["depth_loss"] + r["lm_loss"] for r in tr[:3]])
    last = np.mean([r["depth_loss"] + r["lm_loss"] for r in tr[-3:]])
    assert last < first, (first, last)
    assert {r["stage"] for r in rows if r["type"] == "train"} == {0, 1, 2}
    assert any(r["type"] == "eval" for r in rows)
    assert (out / "loss.png").is_file()
    meta = json.loads((out / "final" / "depthvlm_meta.json").read_text())
    assert meta["stage"] == 2 and meta["steps"] == 16 and meta["canonical_fx"] == 100.0
    assert "depthvlm train" in meta["command"]
    assert meta["train_generators"] == ["test planes"]   # which images it learned from
    # The final folder is a standard model folder that the pipeline loads via model_path.
    pipe = DepthVLMPipeline.from_config(DepthVLMConfig(model_path=str(out / "final"),
                                                       head_backend="torch", device="cpu"))
    assert pipe.canonical_fx == 100.0
    rgb = np.asarray(Image.open(train.parent / "rgb_0.png"))
    pred = pipe.predict(rgb, Intrinsics(120, 120, 79.5, 63.5, 160, 128), "How far?")
    assert pred.depth.shape == (128, 160) and isinstance(pred.answer, str)


def test_memorised_images_score_high_through_the_inference_pipeline(tmp_path):
    """Training and inference agree on the metric conventions (canonical focal, depth scale,
    resizing): a model that has memorised four images scores them well through the very
    pipeline the node uses, and the same weights behind a wrongly configured pipeline do not.
    """
    train = write_plane_dataset(tmp_path / "data", 4, 0)
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "depthvlm_ros.cli", "train", "--train", str(train),
           "--eval", str(train), "--out", str(out), "--arch", "test", "--canonical-fx", "100",
           "--max-image-tokens", "64", "--stages", "0:150:3e-3", "--warmup", "10",
           "--batch-size", "1", "--grad-accum", "2", "--lm-weight", "0", "--text-mix", "dense=1",
           "--hflip", "0", "--jitter", "0", "--crop", "0", "--workers", "0", "--threads", "1",
           "--log-every", "10", "--ckpt-every", "1000", "--eval-every", "1000",
           "--eval-images", "4", "--eval-markers", "0", "--device", "cpu"]
    res = run_process_tree(cmd, dict(os.environ, OMP_NUM_THREADS="1"))
    assert res.returncode == 0, res.stderr[-3000:]
    rows = [json.loads(x) for x in (out / "train_log.jsonl").read_text().splitlines()]
    (final,) = [r for r in rows if r["type"] == "eval"]
    for group in ("indoor", "outdoor"):
        scores = final["depth"][group]
        assert scores["delta1_scale_aligned"] >= 0.9, final["depth"]
        assert scores["delta1"] >= 0.7, final["depth"]
        assert scores["delta1"] > scores["delta1_gt_median_constant"] + 0.3, final["depth"]
    # The saved folder, loaded as the node loads it (canonical focal from its meta file).
    pipe = DepthVLMPipeline.from_config(DepthVLMConfig(model_path=str(out / "final"),
                                                       head_backend="torch", device="cpu"))
    assert pipe.canonical_fx == 100.0
    records = read_jsonl(train)
    scores = []
    for rec in records:
        rgb = load_rgb(rec)
        h, w = rgb.shape[:2]
        depth = pipe.process_frame(rgb, record_intrinsics(rec, w, h)).depth
        scores.append(image_metrics(np.nan_to_num(depth, nan=0.0), load_gt_depth(rec)).delta1)
    assert np.mean(scores) >= 0.75, scores
    wrong = evaluate_model(pipe.model, pipe.tokenizer, records, canonical_fx=200.0,
                           max_tokens=64, markers_per_image=0)
    assert wrong["summary"]["delta1_min"] < final["summary"]["delta1_min"] - 0.2, wrong["depth"]


def test_resume_continues_exactly(plane_data, tmp_path):
    """Stopping at a checkpoint and resuming gives the same weights as an uninterrupted run."""
    train, val = plane_data
    base = [sys.executable, "-m", "depthvlm_ros.cli", "train", "--train", str(train),
            "--out", "OUT", "--arch", "test", "--canonical-fx", "100", "--max-image-tokens",
            "64", "--batch-size", "2", "--workers", "0", "--threads", "1", "--ckpt-every", "3",
            "--device", "cpu", "--log-every", "1"]
    env = dict(os.environ, OMP_NUM_THREADS="1", DEPTHVLM_TRAIN_DUMP_PARAMS="1")

    def run(out, stages, *extra):
        cmd = [str(out) if a == "OUT" else a for a in base] + ["--stages", stages, *extra]
        r = run_process_tree(cmd, env)
        assert r.returncode == 0, r.stderr[-3000:]

    run(tmp_path / "full", "0:6:2e-3")
    # Resume a second run from the uninterrupted run's step-3 checkpoint (as after a crash).
    ck = tmp_path / "full" / "checkpoints" / "step-0000003"
    assert (ck / "optimizer.safetensors").is_file() and (ck / "rng_rank0.safetensors").is_file()
    state = json.loads((ck / "trainer_state.json").read_text())
    assert state["global_step"] == 3
    run(tmp_path / "resumed", "0:6:2e-3", "--resume", str(ck))
    a = json.loads((tmp_path / "full" / "params_rank0.json").read_text())["params"]
    b = json.loads((tmp_path / "resumed" / "params_rank0.json").read_text())["params"]
    assert a == b


def test_fsdp_two_processes_one_stage(plane_data, tmp_path):
    """FSDP2 (fully_shard) on two Gloo ranks: trains, gathers full weights for the folder and
    for evaluation, and both ranks see the same full parameters."""
    train, val = plane_data
    out = tmp_path / "fsdp"
    env = dict(os.environ, OMP_NUM_THREADS="1", DEPTHVLM_TRAIN_DUMP_PARAMS="1")
    cmd = _train_cmd(train, val, out, "0:4:3e-3", ("--strategy", "fsdp"))
    cmd[cmd.index("--eval-every") + 1] = "4"
    res = run_process_tree(cmd, env)
    assert res.returncode == 0, res.stderr[-3000:]
    digests = [json.loads((out / f"params_rank{r}.json").read_text()) for r in range(2)]
    assert digests[0]["params"] == digests[1]["params"]
    assert (out / "best" / "model.safetensors").is_file()
    pipe = DepthVLMPipeline.from_config(DepthVLMConfig(model_path=str(out / "final"),
                                                       head_backend="torch", device="cpu"))
    assert pipe.canonical_fx == 100.0


def test_training_and_benchmark_share_one_intrinsics_rule(tmp_path):
    """A 640x480 record stored at 320x240 without a principal point: the centre is the centre
    of the annotated image, scaled with it (159.5, not 79.5), in training and in the bench."""
    from depthvlm_ros.core.bench import runner
    from depthvlm_ros.core.bench.jsonl import BenchRecord
    from depthvlm_ros.core.train import data, evaluate

    rec = BenchRecord(image=tmp_path / "x.png", depth_path=None, original_fx=500.0,
                      original_rgb_size=(640, 480))
    intr = record_intrinsics(rec, 320, 240)
    assert (intr.fx, intr.fy, intr.cx, intr.cy) == (250.0, 250.0, 159.5, 119.5)
    assert (intr.width, intr.height) == (320, 240)
    # Given fy is used as given; only a missing one means square pixels.
    assert record_intrinsics(dataclasses.replace(rec, fy=600.0), 640, 480).fy == 600.0
    with pytest.raises(Exception, match="fy|focal"):
        record_intrinsics(dataclasses.replace(rec, fy=0.0), 640, 480)
    # Every caller takes the one rule.
    for module in (runner, data, evaluate):
        assert module.record_intrinsics is record_intrinsics


def test_silog_lambda_option_reaches_the_loss():
    """``--silog-lambda`` sets the variance weight the training step's depth loss uses."""
    import argparse

    from depthvlm_ros.commands import train as train_cmd
    from depthvlm_ros.core.train.loop import DepthVLMTrainStep
    from depthvlm_ros.core.train.losses import SILOG_LAMBDA

    p = argparse.ArgumentParser()
    train_cmd.add_arguments(p)
    base = ["--train", "t.jsonl", "--out", "o"]
    assert train_cmd.config_from_args(p.parse_args(base)).silog_lambda == SILOG_LAMBDA
    cfg = train_cmd.config_from_args(p.parse_args(base + ["--silog-lambda", "0"]))
    assert cfg.silog_lambda == 0.0
    model, _ = make_tiny_model(0, **ARCHITECTURES["test"])
    assert DepthVLMTrainStep(model, cfg.silog_lambda).silog_lambda == 0.0
    # lambda 0 pays for a global scale error in full: the loss of a uniformly 2x map is log 2.
    gt = torch.full((1, 4, 4), 3.0)
    assert float(silog_loss(gt * 2, gt, lam=0.0)) == pytest.approx(math.log(2.0), rel=1e-4)
    assert float(silog_loss(gt * 2, gt, lam=SILOG_LAMBDA)) == pytest.approx(
        math.log(2.0) * math.sqrt(1 - SILOG_LAMBDA), rel=1e-4)
