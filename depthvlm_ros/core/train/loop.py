"""The training loop: stages, DDP/FSDP, accumulation, autocast, checkpoints, logs, evaluation.

Stages (what is trained; the rest is frozen):

* stage 0 — the whole model (vision tower, DeepStack mergers, LLM, lm_head, depth head) on
  depth + text. Only for models that start from random weights (the embedded model): the
  paper's stages assume a pretrained VLM, and freezing a random vision tower would freeze
  noise. This stage is our addition, not the paper's.
* stage 1 — the paper's first stage: VLM frozen, depth head trained with SILog.
* stage 2 — the paper's second stage: vision tower (incl. DeepStack mergers) frozen; LLM,
  lm_head and depth head trained with the answer-only LM loss + ``depth_weight`` x SILog.

A run executes a list of ``(stage, steps, lr)`` in order; the global step counts optimizer
steps over all of them. Each stage gets a fresh AdamW (its trainable set differs) with linear
warm-up and cosine decay, and the data-parallel wrapper is rebuilt because DDP fixes the set
of trainable parameters at construction.

Checkpoints are standard model folders (:func:`write_model_folder`, safetensors) that load
with ``model_path``, plus the trainer state next to the weights: ``trainer_state.json`` (step,
stage, RNG of Python / NumPy, config), ``optimizer.safetensors`` (AdamW moments keyed by
parameter name) and ``rng_rank{r}.safetensors`` (torch CPU / CUDA generator states per rank).
No pickle is written or read.
"""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import sys
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from ..bench.jsonl import BenchRecord, read_jsonl
from ..config import DepthVLMConfig
from ..folders import make_tiny_model, read_meta, write_model_folder
from ..model import DepthVLMForConditionalGeneration, load_depthvlm
from ..pipeline import DepthVLMPipeline
from .data import AugmentConfig, BatchDataset, BucketBatchPlan, SampleBuilder, TextMix
from .distributed import (DistEnv, all_reduce_mean, barrier, fsdp_full_state_dict,
                          init_distributed, no_sync, shutdown_distributed, unwrap_model,
                          wrap_model)
from .evaluate import evaluate_model
from .losses import answer_lm_loss, silog_loss

__all__ = ["StageSpec", "TrainConfig", "DepthVLMTrainStep", "Trainer", "set_trainable",
           "parse_stages", "ARCHITECTURES", "chain_logs", "plot_losses", "train"]

#: Named CPU-friendly architectures for models trained from scratch (sizes for tiny_config).
ARCHITECTURES: dict[str, dict[str, Any]] = {
    # ~0.5 M parameters: tests.
    "test": dict(text_hidden=32, text_layers=1, text_heads=2, text_kv_heads=1, vision_hidden=16,
                 vision_depth=3, vision_heads=1, head_features=16,
                 head_out_channels=(8, 16, 32, 32)),
    # ~3.6 M parameters (~14 MB float32): the embedded model.
    "embedded": dict(text_hidden=128, text_layers=4, text_heads=4, text_kv_heads=2,
                     vision_hidden=96, vision_depth=4, vision_heads=4, head_features=64,
                     head_out_channels=(32, 64, 128, 128)),
}


@dataclass
class StageSpec:
    """One stage of a run: which stage (0, 1, 2), how many optimizer steps, peak LR."""

    stage: int
    steps: int
    lr: float


def parse_stages(text: str) -> list[StageSpec]:
    """Parse ``"0:2000:1e-3,1:200:5e-4,2:600:2e-4"`` (stage:steps:lr, comma separated)."""
    out = []
    for part in text.split(","):
        bits = part.strip().split(":")
        if len(bits) != 3:
            raise ValueError(f"stage spec {part!r} must be stage:steps:lr")
        stage, steps, lr = int(bits[0]), int(bits[1]), float(bits[2])
        if stage not in (0, 1, 2) or steps < 0 or lr <= 0:
            raise ValueError(f"bad stage spec {part!r}")
        out.append(StageSpec(stage, steps, lr))
    if not out:
        raise ValueError("no stages given")
    return out


@dataclass
class TrainConfig:
    """Everything a run needs; written into every checkpoint's meta."""

    train_jsonl: list[str]
    out_dir: str
    stages: list[StageSpec]
    eval_jsonl: list[str] = field(default_factory=list)
    init: str = "scratch"  # "scratch" or a model folder / "embedded"
    arch: str = "embedded"
    vocab_size: int = 512
    canonical_fx: float = 300.0
    max_image_tokens: int = 256
    batch_size: int = 8
    grad_accum: int = 1
    depth_weight: float = 1.0
    lm_weight: float = 1.0
    weight_decay: float = 0.01
    warmup_steps: int = 50
    min_lr_ratio: float = 0.1
    grad_clip: float = 1.0
    eval_every: int = 200
    ckpt_every: int = 100
    keep_checkpoints: int = 2
    log_every: int = 10
    eval_images: int = 40
    eval_points: int = 0
    eval_markers: int = 2
    seed: int = 0
    strategy: str = "ddp"
    device: str = "auto"
    num_workers: int = 1
    threads: int = 0
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    text_mix: TextMix = field(default_factory=TextMix)
    resume: str = ""  # "", "auto" (latest in out_dir) or a checkpoint folder
    command: str = ""
    max_depth: float = 1000.0
    gt_at_model_size: bool = True

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


# ----------------------------------------------------------------------------------------------
def set_trainable(model: DepthVLMForConditionalGeneration, stage: int) -> list[str]:
    """Freeze/unfreeze parameters for a stage; returns the names of the trainable ones."""
    for p in model.parameters():
        p.requires_grad_(stage == 0)
    if stage == 1:
        for p in model.depth_head.parameters():
            p.requires_grad_(True)
    elif stage == 2:
        # Vision tower incl. its merger and DeepStack mergers stays frozen; the LLM (with its
        # embeddings, tied to lm_head), lm_head and the head train.
        for mod in (model.model.language_model, model.lm_head, model.depth_head):
            for p in mod.parameters():
                p.requires_grad_(True)
        for p in model.model.visual.parameters():
            p.requires_grad_(False)
    elif stage != 0:
        raise ValueError(f"unknown stage {stage}")
    return [n for n, p in model.named_parameters() if p.requires_grad]


class DepthVLMTrainStep(nn.Module):
    """The module DDP wraps: one forward computes the depth and answer losses of a batch.

    Wrapping this (rather than the model) lets DDP see ``encode`` + ``predict_depth`` +
    ``lm_head`` as one forward, so its gradient hooks cover every trainable parameter.
    """

    def __init__(self, model: DepthVLMForConditionalGeneration) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, labels: torch.Tensor, pixel_values: torch.Tensor,
                image_grid_thw: torch.Tensor, gt: Sequence[torch.Tensor],
                depth_scale: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        enc = self.model.encode(input_ids, pixel_values, image_grid_thw)
        pred = self.model.predict_depth(enc).float() * depth_scale[:, None, None]
        d_loss = silog_loss(list(pred), list(gt))
        lm_loss, n_tok = answer_lm_loss(enc.hidden, labels, self.model.lm_head)
        return d_loss, lm_loss.float(), torch.tensor(float(n_tok))


def chain_logs(log_paths: Sequence[Path], branch_steps: Sequence[int | None] | None = None
               ) -> tuple[list[dict], list[dict], list[int]]:
    """Read the JSONL logs of runs that continue one another into one step axis.

    Run ``i + 1`` was started (``--init``) from a checkpoint of run ``i``: from the step
    ``branch_steps[i]`` (e.g. its ``best`` folder's ``steps``), or from its last logged step
    when that is None or not given. Rows of run ``i`` after its branch step are left out (they
    are not the continuation's ancestors); a step logged twice (a resumed run appends to its
    log) keeps its last row; unreadable lines are skipped.

    Returns:
        ``(train_rows, eval_rows, starts)``: rows with chained ``step`` and their run index in
        ``run``, and the chained step at which each run after the first starts.
    """
    runs = []
    for path in log_paths:
        rows: dict[tuple[str, int], dict] = {}
        for line in Path(path).read_text().splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            row["step"] = int(row.get("step", 0))
            rows[(str(row.get("type")), row["step"])] = row
        runs.append(sorted(rows.values(), key=lambda r: r["step"]))
    branches = list(branch_steps or [])
    train_rows, eval_rows, starts = [], [], []
    offset = 0
    for i, rows in enumerate(runs):
        last = max((r["step"] for r in rows), default=0)
        branch = branches[i] if i < len(branches) and branches[i] is not None else None
        end = last if branch is None or i == len(runs) - 1 else int(branch)
        for row in rows:
            if row["step"] > end:
                continue
            row = {**row, "step": offset + row["step"], "run": i}
            (eval_rows if row.get("type") == "eval" else train_rows).append(row)
        offset += end
        if i < len(runs) - 1:
            starts.append(offset)
    return train_rows, eval_rows, starts


def plot_losses(log_path: Path | Sequence[Path], png_path: Path,
                branch_steps: Sequence[int | None] | None = None) -> None:
    """Plot training losses and evaluation scores from the JSONL log into a PNG.

    ``log_path`` may also be a sequence of logs of runs that continue one another, with the
    steps they branched from; see :func:`chain_logs`. Where each continuation starts is
    drawn as a solid line.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    logs = [Path(log_path)] if isinstance(log_path, (str, Path)) else [Path(p) for p in log_path]
    train_rows, eval_rows, boundaries = chain_logs(logs, branch_steps)
    if not train_rows:
        return
    fig, axes = plt.subplots(1, 2 if eval_rows else 1, figsize=(12 if eval_rows else 7, 4.2))
    axes = np.atleast_1d(axes)
    steps = [r["step"] for r in train_rows]
    window = max(1, len(train_rows) // 40)  # the raw rows are single small batches: noisy
    for key, label in (("depth_loss", "SILog (depth)"), ("lm_loss", "LM (answers)")):
        values = np.array([r[key] for r in train_rows], dtype=float)
        line, = axes[0].plot(steps, values, alpha=0.25, lw=0.8)
        smooth = np.convolve(values, np.ones(window) / window, mode="valid")
        axes[0].plot(steps[window - 1:], smooth, color=line.get_color(),
                     label=f"{label}, mean of {window} logs" if window > 1 else label)
    for r0, r1 in zip(train_rows, train_rows[1:]):
        if r0["stage"] != r1["stage"] and r0["run"] == r1["run"]:
            axes[0].axvline(r1["step"], color="grey", ls="--", lw=0.8)
    for b in boundaries:
        for ax in axes:
            ax.axvline(b, color="black", lw=1.2)
    axes[0].set_xlabel("optimizer step")
    axes[0].set_yscale("log")
    axes[0].set_title("training loss (dashed: stage change" +
                      (", solid: next run)" if len(logs) > 1 else ")"))
    axes[0].legend()
    if eval_rows:
        es = [r["step"] for r in eval_rows]
        groups = sorted({g for r in eval_rows for g in r.get("depth", {})})
        series = [(f"δ1 {g}", [r.get("depth", {}).get(g, {}).get("delta1") for r in eval_rows])
                  for g in groups]
        series += [(label, [r["summary"].get(key) for r in eval_rows])
                   for key, label in (("abs_rel_max", "AbsRel (worst split)"),
                                      ("answer_accuracy", "answers within 25%"))]
        top = 1.0
        for label, values in series:
            values = [math.nan if v is None else float(v) for v in values]
            axes[1].plot(es, values, marker="o", label=label)
            top = max([top] + [v for v in values if math.isfinite(v)])
        axes[1].set_xlabel("optimizer step")
        axes[1].set_ylim(0, min(top * 1.05, 5.0))
        axes[1].set_title("held-out evaluation")
        axes[1].legend()
    fig.tight_layout()
    fig.savefig(png_path, dpi=110)
    plt.close(fig)


# ----------------------------------------------------------------------------------------------
def _rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    return {"python": repr(random.getstate()),
            "numpy": [np_state[0], np_state[1].tolist(), *np_state[2:]]}


def _set_rng_state(state: dict[str, Any]) -> None:
    import ast

    random.setstate(_to_tuple(ast.literal_eval(state["python"])))
    n = state["numpy"]
    np.random.set_state((n[0], np.array(n[1], dtype=np.uint32), *n[2:]))


def _to_tuple(x):
    return tuple(_to_tuple(v) for v in x) if isinstance(x, (list, tuple)) else x


def _flatten_optimizer(osd: dict[str, Any]) -> tuple[dict[str, torch.Tensor], list[dict]]:
    tensors = {}
    for name, st in osd["state"].items():
        for k, v in st.items():
            t = v if torch.is_tensor(v) else torch.tensor(v)
            tensors[f"{name}::{k}"] = t.detach().to("cpu").contiguous()
    return tensors, osd["param_groups"]


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], groups: list[dict]) -> dict[str, Any]:
    state: dict[str, dict[str, torch.Tensor]] = {}
    for key, t in tensors.items():
        name, k = key.rsplit("::", 1)
        state.setdefault(name, {})[k] = t
    return {"state": state, "param_groups": groups}


class Trainer:
    """Runs a :class:`TrainConfig` on this process (one rank of a ``torchrun`` job)."""

    def __init__(self, cfg: TrainConfig) -> None:
        self.cfg = cfg
        self.env: DistEnv = init_distributed(cfg.device)
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        self.out = Path(cfg.out_dir)
        self.ckpt_dir = self.out / "checkpoints"
        self.log_path = self.out / "train_log.jsonl"
        self.global_step = 0
        self.best_score = -math.inf
        self.last_eval: dict[str, Any] = {}
        resume_dir = self._resolve_resume()
        self.model, self.tokenizer, self.meta_fx = self._build_model(resume_dir)
        self.canonical_fx = float(cfg.canonical_fx or self.meta_fx or 1000.0)
        self.model.to(self.env.device).train()
        self.pipe = DepthVLMPipeline(
            self.model, self.tokenizer,
            DepthVLMConfig(canonical_fx=self.canonical_fx, max_image_tokens=cfg.max_image_tokens,
                           device="cpu", head_backend="torch"),
            model_canonical_fx=self.canonical_fx)
        self.train_records = [r for p in cfg.train_jsonl for r in read_jsonl(p)]
        self.eval_records: list[BenchRecord] = []
        for p in cfg.eval_jsonl:
            self.eval_records.extend(self._eval_subset(read_jsonl(p)))
        self.resume_state: dict[str, Any] | None = None
        if resume_dir is not None:
            self.resume_state = json.loads((resume_dir / "trainer_state.json").read_text())
            self.global_step = int(self.resume_state["global_step"])
            self.best_score = float(self.resume_state.get("best_score", -math.inf))
            self.last_eval = self.resume_state.get("last_eval", {})
        self.resume_dir = resume_dir
        if self.env.is_main:
            self.out.mkdir(parents=True, exist_ok=True)

    # ------------------------------------------------------------------------------------------
    def _eval_subset(self, records: list[BenchRecord]) -> list[BenchRecord]:
        # Up to eval_images images (with all their lines), spread evenly over datasets, so a
        # capped evaluation still covers indoor and outdoor.
        n = self.cfg.eval_images
        groups: dict[str, dict[str, list[BenchRecord]]] = {}
        for r in records:
            groups.setdefault(r.dataset or "all", {}).setdefault(str(r.image), []).append(r)
        if n <= 0:
            return records
        per = max(1, n // len(groups))
        return [r for g in sorted(groups) for img in list(groups[g])[:per] for r in groups[g][img]]

    def _resolve_resume(self) -> Path | None:
        r = self.cfg.resume
        if not r:
            return None
        if r == "auto":
            latest = self.ckpt_dir / "latest"
            if not latest.is_file():
                return None
            path = self.ckpt_dir / latest.read_text().strip()
        else:
            path = Path(r)
        if not (path / "trainer_state.json").is_file():
            raise FileNotFoundError(f"{path} is not a training checkpoint (no trainer_state.json)")
        return path

    def _build_model(self, resume_dir: Path | None):
        from transformers import AutoTokenizer

        cfg = self.cfg
        source = None
        if resume_dir is not None:
            source = resume_dir
        elif cfg.init != "scratch":
            from ..folders import resolve_model_path

            source = resolve_model_path(cfg.init)
        if source is not None:
            model = load_depthvlm(source)
            tok = AutoTokenizer.from_pretrained(str(source), local_files_only=True)
            fx = read_meta(source).get("canonical_fx")
            return model, tok, float(fx) if fx else None
        if cfg.arch not in ARCHITECTURES:
            raise ValueError(f"unknown architecture {cfg.arch!r}: {', '.join(ARCHITECTURES)}")
        model, tok = make_tiny_model(seed=cfg.seed, vocab_size=cfg.vocab_size,
                                     **ARCHITECTURES[cfg.arch])
        return model, tok, None

    # ------------------------------------------------------------------------------------------
    def _loader(self, stage_start_global: int, stage_index: int, start_step: int, end_step: int):
        cfg, env = self.cfg, self.env
        builder = SampleBuilder(self.pipe.prompt_ids, self.tokenizer,
                                self.tokenizer.convert_tokens_to_ids("<|im_end|>"),
                                self.canonical_fx, cfg.max_image_tokens, cfg.augment, cfg.text_mix,
                                self.pipe.image_mean, self.pipe.image_std,
                                gt_at_model_size=cfg.gt_at_model_size)
        if not hasattr(self, "_grids"):
            self._grids = [builder.full_grid(r) for r in self.train_records]
        plan = BucketBatchPlan(self._grids, cfg.batch_size, env.world_size, env.rank,
                               cfg.seed, cfg.augment.crop, cfg.augment.crop_min_tokens)
        # Micro-batch k of the whole run: global optimizer step x accumulation.
        first = start_step * cfg.grad_accum
        last = end_step * cfg.grad_accum
        ds = BatchDataset(self.train_records, builder, plan, self.tokenizer.pad_token_id,
                          cfg.seed, last)
        return torch.utils.data.DataLoader(
            ds, batch_size=None, sampler=range(first, last), num_workers=cfg.num_workers,
            persistent_workers=False, prefetch_factor=2 if cfg.num_workers else None,
            collate_fn=lambda x: x)

    def _autocast(self):
        if self.env.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return nullcontext()

    def _lr(self, spec: StageSpec, local_step: int) -> float:
        warm = min(self.cfg.warmup_steps, max(1, spec.steps // 5))
        if local_step < warm:
            return spec.lr * (local_step + 1) / warm
        t = (local_step - warm) / max(1, spec.steps - warm)
        floor = self.cfg.min_lr_ratio
        return spec.lr * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, t))))

    # ------------------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        """Train through every stage; returns the last evaluation (rank 0) or {}."""
        cfg, env = self.cfg, self.env
        if self.resume_state is not None and "rng" in self.resume_state:
            _set_rng_state(self.resume_state["rng"])
            rng_file = self.resume_dir / f"rng_rank{env.rank}.safetensors"
            if rng_file.is_file():
                from safetensors.torch import load_file

                st = load_file(str(rng_file))
                torch.set_rng_state(st["torch_cpu"])
                if "torch_cuda" in st and torch.cuda.is_available():
                    torch.cuda.set_rng_state(st["torch_cuda"], env.device)
        else:
            random.seed(cfg.seed + env.rank)
            np.random.seed(cfg.seed + env.rank)
            torch.manual_seed(cfg.seed)  # same init on all ranks (DDP also broadcasts it)
        start = 0
        bar = None
        if env.is_main:
            from tqdm import tqdm

            total = sum(s.steps for s in cfg.stages)
            bar = tqdm(total=total, initial=self.global_step, desc="train", dynamic_ncols=True,
                       file=sys.stderr)
        try:
            for index, spec in enumerate(cfg.stages):
                end = start + spec.steps
                if self.global_step < end:
                    self._run_stage(index, spec, start, end, bar)
                start = end
            if self.eval_records and self.last_eval.get("step") != self.global_step:
                self._evaluate()
            self._save("final", final=True)
            if os.environ.get("DEPTHVLM_TRAIN_DUMP_PARAMS"):
                self._dump_params()
        finally:
            if bar is not None:
                bar.close()
            shutdown_distributed()
        return self.last_eval

    def _run_stage(self, index: int, spec: StageSpec, start: int, end: int, bar) -> None:
        cfg, env = self.cfg, self.env
        model = self.model
        names = set_trainable(model, spec.stage)
        step_module = DepthVLMTrainStep(model)
        shard = ()
        if cfg.strategy == "fsdp" and env.distributed and index > 0:
            # fully_shard converts parameters to DTensors in place and cannot be re-applied
            # with a different trainable set; run each stage as its own job (--init the
            # previous stage's folder) under FSDP.
            raise RuntimeError("with --strategy fsdp run one stage per job (pass the previous "
                               "stage's final folder as --init)")
        if cfg.strategy == "fsdp":
            from transformers.models.qwen3_vl.modeling_qwen3_vl import (
                Qwen3VLTextDecoderLayer, Qwen3VLVisionBlock)

            shard = (Qwen3VLTextDecoderLayer, Qwen3VLVisionBlock)
        wrapped = wrap_model(step_module, env, cfg.strategy, shard)
        params = [p for n, p in wrapped.named_parameters() if p.requires_grad]
        decay = [p for p in params if p.dim() >= 2]
        no_decay = [p for p in params if p.dim() < 2]
        opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                                 {"params": no_decay, "weight_decay": 0.0}],
                                lr=spec.lr, betas=(0.9, 0.95), fused=False)
        if (self.resume_state is not None and self.resume_state.get("stage_index") == index
                and self.global_step > start):
            self._load_optimizer(wrapped, opt)
        loader = self._loader(start, index, self.global_step, end)
        it = iter(loader)
        window: dict[str, list[float]] = {"depth_loss": [], "lm_loss": [], "tokens": []}
        t_last = time.perf_counter()
        if env.is_main:
            print(f"[train] stage {spec.stage} ({index + 1}/{len(cfg.stages)}): steps "
                  f"{self.global_step}->{end}, lr {spec.lr:g}, {len(names)} trainable tensors, "
                  f"{sum(p.numel() for p in params):,} parameters", file=sys.stderr, flush=True)
        while self.global_step < end:
            local = self.global_step - start
            lr = self._lr(spec, local)
            for g in opt.param_groups:
                g["lr"] = lr
            lm_w = cfg.lm_weight if spec.stage in (0, 2) else 0.0
            for micro in range(cfg.grad_accum):
                batch = next(it)
                dev = env.device
                with no_sync(wrapped, micro < cfg.grad_accum - 1), self._autocast():
                    d_loss, lm_loss, n_tok = wrapped(
                        batch["input_ids"].to(dev), batch["labels"].to(dev),
                        batch["pixel_values"].to(dev), batch["image_grid_thw"].to(dev),
                        [g.to(dev) for g in batch["gt"]], batch["depth_scale"].to(dev))
                    loss = (cfg.depth_weight if spec.stage != 1 else 1.0) * d_loss + lm_w * lm_loss
                (loss / cfg.grad_accum).backward()
                window["depth_loss"].append(float(d_loss.detach()))
                window["lm_loss"].append(float(lm_loss.detach()))
                window["tokens"].append(float(n_tok))
            if cfg.grad_clip > 0:
                gnorm = float(torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip))
            else:
                gnorm = float("nan")
            opt.step()
            opt.zero_grad(set_to_none=True)
            self.global_step += 1
            if bar is not None:
                bar.update(1)
                bar.set_postfix(stage=spec.stage, silog=f"{window['depth_loss'][-1]:.3f}",
                                lm=f"{window['lm_loss'][-1]:.3f}")
            done = self.global_step == end
            if self.global_step % cfg.log_every == 0 or done:
                now = time.perf_counter()
                vals = {k: float(np.mean(v)) for k, v in window.items() if v}
                vals["grad_norm"] = gnorm
                vals = all_reduce_mean(vals, env)
                n_steps = len(window["depth_loss"]) / cfg.grad_accum
                row = {"type": "train", "step": self.global_step, "stage": spec.stage, "lr": lr,
                       **vals, "sec_per_step": (now - t_last) / max(1.0, n_steps),
                       "time": time.time()}
                t_last = now
                window = {k: [] for k in window}
                if env.is_main:
                    with open(self.log_path, "a") as fh:
                        fh.write(json.dumps(row) + "\n")
            if self.eval_records and (self.global_step % cfg.eval_every == 0):
                self._evaluate()
            if self.global_step % cfg.ckpt_every == 0 or done:
                self._save(f"step-{self.global_step:07d}", wrapped=wrapped, opt=opt,
                           stage_index=index, stage=spec.stage)
        del it, loader

    # ------------------------------------------------------------------------------------------
    def _eval_model(self) -> nn.Module | None:
        """The model to evaluate on rank 0: itself, or under FSDP a gathered CPU copy.

        A sharded model's forward is a collective, so rank 0 cannot run it alone; every rank
        takes part in the gather, then rank 0 evaluates a plain copy.
        """
        if self.cfg.strategy == "fsdp" and self.env.distributed:
            sd = fsdp_full_state_dict(self.model)  # full tensors on rank 0 only (CPU offload)
            if not self.env.is_main:
                return None
            copy = DepthVLMForConditionalGeneration(self.model.config)
            copy.load_state_dict(sd)
            return copy
        return unwrap_model(self.model)

    def _evaluate(self) -> None:
        env = self.env
        model = self._eval_model()
        if env.is_main:
            t0 = time.perf_counter()
            res = evaluate_model(model, self.tokenizer, self.eval_records,
                                 self.canonical_fx, self.cfg.max_image_tokens,
                                 self.cfg.eval_points, self.cfg.eval_markers, seed=self.cfg.seed,
                                 max_depth=self.cfg.max_depth)
            res["step"] = self.global_step
            res["type"] = "eval"
            res["seconds"] = time.perf_counter() - t0
            self.last_eval = res
            with open(self.log_path, "a") as fh:
                fh.write(json.dumps(res) + "\n")
            s = res["summary"]
            print(f"[eval] step {self.global_step}: δ1(worst) {s['delta1_min']:.3f}, AbsRel(worst) "
                  f"{s['abs_rel_max']:.3f}, answers {s['answer_accuracy']:.3f} "
                  f"({res['seconds']:.0f} s)", file=sys.stderr, flush=True)
            score = self._score(res)
            if score > self.best_score:
                self.best_score = score
                self._write_folder(self.out / "best", stage=self._stage_at(self.global_step),
                                   model=model)
        else:
            # Every rank must agree on whether this step was evaluated: under FSDP the eval
            # starts with a collective gather, and the final "evaluate unless just done" check
            # would otherwise send rank 0 into the final save's gather and the others into an
            # eval gather that nobody matches (a deadlock).
            self.last_eval = {"step": self.global_step}
        barrier(env)

    @staticmethod
    def _score(res: dict[str, Any]) -> float:
        s = res["summary"]
        d1 = s["delta1_min"] if s["delta1_min"] == s["delta1_min"] else 0.0
        acc = s["answer_accuracy"] if s["answer_accuracy"] == s["answer_accuracy"] else 0.0
        return d1 + acc

    def _stage_at(self, step: int) -> int:
        start = 0
        for spec in self.cfg.stages:
            if step <= start + spec.steps:
                return spec.stage
            start += spec.steps
        return self.cfg.stages[-1].stage

    def _meta(self, stage: int, final: bool) -> dict[str, Any]:
        return {"stage": stage, "steps": self.global_step, "final": final,
                "canonical_fx": self.canonical_fx, "max_image_tokens": self.cfg.max_image_tokens,
                "metrics": self.last_eval.get("summary", {}),
                "metrics_detail": {k: self.last_eval.get(k) for k in ("depth", "answers", "step")
                                   if k in self.last_eval},
                "command": self.cfg.command, "arch": self.cfg.arch,
                "recipe": "stage 0 (whole model, depth+text; embedded only) -> stage 1 (head, "
                          "SILog) -> stage 2 (LLM+lm_head+head, LM + depth)",
                "stages": [asdict(s) for s in self.cfg.stages],
                "world_size": self.env.world_size}

    def _write_folder(self, path: Path, stage: int, final: bool = False,
                      state_dict: dict[str, torch.Tensor] | None = None,
                      model: nn.Module | None = None) -> None:
        model = model if model is not None else unwrap_model(self.model)
        if state_dict is not None:
            cpu = DepthVLMForConditionalGeneration(model.config)
            cpu.load_state_dict({k.removeprefix("model."): v for k, v in state_dict.items()},
                                strict=False)
            model = cpu
        tmp = path.with_name(path.name + ".tmp")
        if tmp.exists():
            shutil.rmtree(tmp)
        write_model_folder(model, self.tokenizer, tmp, self._meta(stage, final))
        if path.exists():
            shutil.rmtree(path)
        tmp.rename(path)

    def _save(self, name: str, final: bool = False, wrapped=None, opt=None,
              stage_index: int | None = None, stage: int | None = None) -> None:
        """Write a checkpoint (model folder + trainer state); rank 0 writes, all ranks wait."""
        env, cfg = self.env, self.cfg
        from safetensors.torch import save_file

        full_sd = None
        if cfg.strategy == "fsdp" and env.distributed:
            # A collective: every rank takes part. FSDP2 shards the model in place, so the
            # plain model's state dict holds DTensors and is gathered here.
            full_sd = {"model." + k: v for k, v in fsdp_full_state_dict(self.model).items()}
        osd = None
        if opt is not None:
            from torch.distributed.checkpoint.state_dict import (StateDictOptions,
                                                                 get_optimizer_state_dict)

            osd = get_optimizer_state_dict(wrapped, opt, options=StateDictOptions(
                full_state_dict=True, cpu_offload=True))
        stage = stage if stage is not None else self._stage_at(self.global_step)
        path = (self.out / "final") if final else (self.ckpt_dir / name)
        if env.is_main:
            self._write_folder(path, stage, final, full_sd)
            if not final:
                state = {"global_step": self.global_step, "stage_index": stage_index,
                         "stage": stage, "best_score": self.best_score, "rng": _rng_state(),
                         "last_eval": self.last_eval, "config": cfg.to_json(),
                         "world_size": env.world_size}
                (path / "trainer_state.json").write_text(json.dumps(state, default=str) + "\n")
                if osd is not None:
                    tensors, groups = _flatten_optimizer(osd)
                    save_file(tensors, str(path / "optimizer.safetensors"))
                    (path / "optimizer_groups.json").write_text(json.dumps(groups, default=str))
                (self.ckpt_dir / "latest.tmp").write_text(name + "\n")
                os.replace(self.ckpt_dir / "latest.tmp", self.ckpt_dir / "latest")
                self._prune()
            if self.log_path.is_file():
                try:
                    plot_losses(self.log_path, self.out / "loss.png")
                except Exception as exc:  # noqa: BLE001 - a plot must never stop training
                    print(f"[train] loss plot failed: {exc}", file=sys.stderr)
        barrier(env)
        if not final:
            rng = {"torch_cpu": torch.get_rng_state()}
            if env.device.type == "cuda":
                rng["torch_cuda"] = torch.cuda.get_rng_state(env.device)
            save_file(rng, str(path / f"rng_rank{env.rank}.safetensors"))
        barrier(env)

    def _dump_params(self) -> None:
        """Write an exact digest of this rank's parameters (tests compare ranks and resumes)."""
        import hashlib

        digest = {}
        for name, p in unwrap_model(self.model).state_dict().items():
            t = p.full_tensor() if hasattr(p, "full_tensor") else p
            digest[name] = hashlib.sha256(t.detach().cpu().contiguous().numpy().tobytes()
                                          ).hexdigest()[:16]
        (self.out / f"params_rank{self.env.rank}.json").write_text(json.dumps(
            {"rank": self.env.rank, "world_size": self.env.world_size, "step": self.global_step,
             "params": digest}, indent=0))

    def _prune(self) -> None:
        ckpts = sorted(p for p in self.ckpt_dir.glob("step-*") if p.is_dir()
                       and not p.name.endswith(".tmp"))
        for old in ckpts[:-max(1, self.cfg.keep_checkpoints)]:
            shutil.rmtree(old, ignore_errors=True)

    def _load_optimizer(self, wrapped, opt) -> None:
        from safetensors.torch import load_file
        from torch.distributed.checkpoint.state_dict import (StateDictOptions,
                                                             set_optimizer_state_dict)

        path = self.resume_dir
        if not (path / "optimizer.safetensors").is_file():
            return
        groups = json.loads((path / "optimizer_groups.json").read_text())
        osd = _unflatten_optimizer(load_file(str(path / "optimizer.safetensors")), groups)
        set_optimizer_state_dict(wrapped, opt, osd,
                                 options=StateDictOptions(full_state_dict=True))


def train(cfg: TrainConfig) -> dict[str, Any]:
    """Run a training job in this process (call once per ``torchrun`` rank)."""
    return Trainer(cfg).run()
