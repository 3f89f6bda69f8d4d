"""The training loop: stages, DDP/FSDP, accumulation, autocast, logs and evaluation.

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
warm-up and cosine decay (:func:`lr_at`), and the data-parallel wrapper is rebuilt because DDP
fixes the set of trainable parameters at construction.

Checkpoints are model folders plus the trainer state (:mod:`.checkpoint`); the run's config
and stages are in :mod:`.config`, its curves in :mod:`.plots`.

:class:`Trainer` is the longest piece here on purpose: it owns what every phase of a run
shares (the rank, the model and its wrapper, the global step, the best score so far, the last
evaluation), and its methods are the phases in order (build, stage loop, evaluate, save).
Everything that does not need that state lives in the modules above as plain functions.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from contextlib import ExitStack, nullcontext
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn

from ..bench.jsonl import BenchRecord, read_jsonl
from ..camera import vision_patching
from ..config import DepthVLMConfig
from ..folders import make_tiny_model, read_meta
from ..model import DepthVLMForConditionalGeneration, load_depthvlm
from ..pipeline import DepthVLMPipeline
from .checkpoint import (gather_optimizer_state, load_optimizer, mark_latest, prune_checkpoints,
                         read_trainer_state, resolve_resume, restore_rngs, rng_state,
                         save_optimizer, save_torch_rngs, seed_rngs, write_folder_atomically,
                         write_param_digest, write_trainer_state)
from .config import ARCHITECTURES, StageSpec, TrainConfig, parse_stages, stage_at
from .data import BatchDataset, BucketBatchPlan, SampleBuilder, named_objects_by_image
from .distributed import (DistEnv, all_reduce_mean, barrier, fsdp_full_state_dict,
                          init_distributed, no_sync, shutdown_distributed, unwrap_model,
                          wrap_model)
from .evaluate import eval_subset, evaluate_model, selection_score
from .locate import (OBJECT_PROBES_FILE, READOUTS_FILE, LocateReadouts, ObjectProbes,
                     capture_attention_inputs, check_llm_layer, load_training_module,
                     locate_loss, object_loss, save_training_module, selection_loss)
from .losses import SILOG_LAMBDA, answer_lm_loss, silog_loss
from .plots import chain_logs, plot_losses

# StageSpec, TrainConfig, parse_stages, ARCHITECTURES (from .config) and chain_logs,
# plot_losses (from .plots) are re-exported: scripts and callers import them from here.
__all__ = ["StageSpec", "TrainConfig", "DepthVLMTrainStep", "Trainer", "set_trainable",
           "parse_stages", "ARCHITECTURES", "chain_logs", "plot_losses", "lr_at", "train"]


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

    def __init__(self, model: DepthVLMForConditionalGeneration,
                 silog_lambda: float = SILOG_LAMBDA,
                 readouts: LocateReadouts | None = None,
                 select_layer: int | None = None,
                 object_probes: ObjectProbes | None = None, object_layer: int | None = None
                 ) -> None:
        super().__init__()
        self.model = model
        self.silog_lambda = silog_lambda
        # Training-only position readouts (see .locate); None when --locate-weight is 0.
        self.readouts = readouts
        # LLM layer whose head 0 the selection loss supervises; None when --select-weight is 0.
        self.select_layer = select_layer
        # Training-only object probes and the LLM layer whose inputs they read (see .locate);
        # None when --object-weight is 0.
        self.object_probes = object_probes
        self.object_layer = object_layer if object_probes is not None else None

    def forward(self, input_ids: torch.Tensor, labels: torch.Tensor, pixel_values: torch.Tensor,
                image_grid_thw: torch.Tensor, gt: Sequence[torch.Tensor],
                depth_scale: torch.Tensor, locate_box: torch.Tensor | None = None,
                object_classes: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """Depth loss, answer loss, answer tokens and the grounding losses that are on.

        The last is a dict: ``locate_loss`` with position readouts, ``select_loss`` with a
        selection layer, ``object_loss`` with object probes (see .locate); empty without
        ``locate_box`` or any of them.
        """
        aux: dict[str, torch.Tensor] = {}
        selecting = self.select_layer is not None and locate_box is not None
        probing = (self.object_layer is not None and locate_box is not None
                   and object_classes is not None)
        layers = {self.select_layer} if selecting else set()
        if probing:
            layers.add(self.object_layer)
        with ExitStack() as stack:
            taps = {layer: stack.enter_context(capture_attention_inputs(self.model, layer))
                    for layer in layers}  # one capture serves both losses of one layer
            enc = self.model.encode(input_ids, pixel_values, image_grid_thw)
        pred = self.model.predict_depth(enc).float() * depth_scale[:, None, None]
        d_loss = silog_loss(list(pred), list(gt), lam=self.silog_lambda)
        lm_loss, n_tok = answer_lm_loss(enc.hidden, labels, self.model.lm_head)
        if self.readouts is not None and locate_box is not None:
            aux["locate_loss"] = locate_loss(self.readouts, enc.hidden, enc.image_hidden, labels,
                                             locate_box)
        image_mask = input_ids == self.model.config.image_token_id
        if selecting:
            aux["select_loss"] = selection_loss(taps[self.select_layer], image_mask, enc.grid_hw,
                                                labels, locate_box)
        if probing:
            aux["object_loss"] = object_loss(self.object_probes, taps[self.object_layer],
                                             image_mask, enc.grid_hw, locate_box, object_classes)
        return d_loss, lm_loss.float(), torch.tensor(float(n_tok)), aux


def lr_at(spec: StageSpec, local_step: int, warmup_steps: int, min_lr_ratio: float) -> float:
    """Learning rate at step ``local_step`` of a stage: linear warm-up, then cosine decay.

    The warm-up is at most a fifth of the stage; the decay ends at ``min_lr_ratio`` x peak.
    """
    warm = min(warmup_steps, max(1, spec.steps // 5))
    if local_step < warm:
        return spec.lr * (local_step + 1) / warm
    t = (local_step - warm) / max(1, spec.steps - warm)
    return spec.lr * (min_lr_ratio
                      + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, t))))


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
        resume_dir = resolve_resume(cfg.resume, self.ckpt_dir)
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
            self.eval_records.extend(eval_subset(read_jsonl(p), cfg.eval_images))
        self.resume_state: dict[str, Any] | None = None
        if resume_dir is not None:
            self.resume_state = read_trainer_state(resume_dir)
            self.global_step = int(self.resume_state["global_step"])
            self.best_score = float(self.resume_state.get("best_score", -math.inf))
            self.last_eval = self.resume_state.get("last_eval", {})
        self.resume_dir = resume_dir
        hidden = self.model.config.text_config.hidden_size
        self.readouts = self._build_training_head(
            cfg.locate_weight, lambda: LocateReadouts(hidden), READOUTS_FILE, resume_dir,
            "position readouts")
        self.object_probes = self._build_training_head(
            cfg.object_weight, lambda: ObjectProbes(hidden), OBJECT_PROBES_FILE, resume_dir,
            "object probes")
        if cfg.select_weight > 0 or cfg.object_weight > 0:
            check_llm_layer(self.model, cfg.select_layer)
        if cfg.select_weight > 0 and cfg.strategy == "fsdp":
            # The loss reruns the layer's projections after its forward, when FSDP has
            # already resharded their weights.
            raise ValueError("--select-weight needs --strategy ddp")
        if self.env.is_main:
            self.out.mkdir(parents=True, exist_ok=True)

    def _build_training_head(self, weight: float, make: Callable[[], nn.Module], file: str,
                             resume_dir: Path | None, what: str) -> nn.Module | None:
        """A training-only module of .locate (readouts, probes), or None when its weight is 0.

        Seeded from the run's seed (the model's random stream is left alone) and resumed from
        ``resume_dir/file`` when the checkpoint has it.
        """
        if weight <= 0:
            return None
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.cfg.seed)
            module = make()
        if resume_dir is not None and not load_training_module(module, resume_dir, file) \
                and self.env.is_main:
            print(f"[train] {resume_dir} has no {what}; they start afresh",
                  file=sys.stderr, flush=True)
        return module.to(self.env.device).train()

    @staticmethod
    def _in_stage(module: nn.Module | None, stage: int) -> nn.Module | None:
        """A training-only module (readouts, probes) if ``stage`` trains it: they read the LLM's
        states, so not in stage 1 (head only).

        Left out of a stage's train step, it is neither in its wrapper nor its optimizer.
        """
        return module if stage != 1 else None

    def _stage_select_layer(self, stage: int) -> int | None:
        """The layer the selection loss supervises in a stage: none in stage 1 (head only)."""
        return self.cfg.select_layer if self.cfg.select_weight > 0 and stage != 1 else None

    # ------------------------------------------------------------------------------------------
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
            if cfg.grow and resume_dir is None:  # a resumed checkpoint is grown already
                from .grow import grow_model, parse_grow

                model = grow_model(model, parse_grow(cfg.grow))
            tok = AutoTokenizer.from_pretrained(str(source), local_files_only=True)
            fx = read_meta(source).get("canonical_fx")
            return model, tok, float(fx) if fx else None
        if cfg.arch not in ARCHITECTURES:
            raise ValueError(f"unknown architecture {cfg.arch!r}: {', '.join(ARCHITECTURES)}")
        model, tok = make_tiny_model(seed=cfg.seed, vocab_size=cfg.vocab_size,
                                     patch_size=cfg.patch_size, **ARCHITECTURES[cfg.arch])
        return model, tok, None

    # ------------------------------------------------------------------------------------------
    def _loader(self, start_step: int, end_step: int):
        cfg, env = self.cfg, self.env
        # Crops and plans in whole tokens of the model being trained (its own patch x merge).
        patch, merge = vision_patching(self.pipe.model.config)
        builder = SampleBuilder(self.pipe.prompt_ids, self.tokenizer,
                                self.tokenizer.convert_tokens_to_ids("<|im_end|>"),
                                self.canonical_fx, cfg.max_image_tokens, cfg.augment, cfg.text_mix,
                                self.pipe.image_mean, self.pipe.image_std,
                                gt_at_model_size=cfg.gt_at_model_size,
                                patch_size=patch, merge_size=merge,
                                image_objects=named_objects_by_image(self.train_records))
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

    def _append_log(self, row: dict[str, Any]) -> None:
        with open(self.log_path, "a") as fh:
            fh.write(json.dumps(row) + "\n")

    # ------------------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        """Train through every stage; returns the last evaluation (rank 0) or {}."""
        cfg, env = self.cfg, self.env
        if self.resume_state is not None and "rng" in self.resume_state:
            restore_rngs(self.resume_dir, self.resume_state["rng"], env)
        else:
            seed_rngs(cfg.seed, env)
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
                write_param_digest(unwrap_model(self.model), self.out, env, self.global_step)
        finally:
            if bar is not None:
                bar.close()
            shutdown_distributed()
        return self.last_eval

    def _wrap_for_stage(self, index: int, spec: StageSpec, start: int, end: int
                        ) -> tuple[nn.Module, list[nn.Parameter], torch.optim.Optimizer]:
        """Freeze for the stage, wrap for data parallelism and build its optimizer.

        Returns:
            ``(wrapped, params, optimizer)``: the data-parallel train step, its trainable
            parameters and a fresh AdamW (resumed when this stage was interrupted).
        """
        cfg, env = self.cfg, self.env
        names = set_trainable(self.model, spec.stage)
        step_module = DepthVLMTrainStep(self.model, self.cfg.silog_lambda,
                                        self._in_stage(self.readouts, spec.stage),
                                        self._stage_select_layer(spec.stage),
                                        self._in_stage(self.object_probes, spec.stage),
                                        self.cfg.select_layer)
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
            load_optimizer(self.resume_dir, wrapped, opt)
        if env.is_main:
            print(f"[train] stage {spec.stage} ({index + 1}/{len(cfg.stages)}): steps "
                  f"{self.global_step}->{end}, lr {spec.lr:g}, {len(names)} trainable tensors, "
                  f"{sum(p.numel() for p in params):,} parameters", file=sys.stderr, flush=True)
        return wrapped, params, opt

    def _run_stage(self, index: int, spec: StageSpec, start: int, end: int, bar) -> None:
        cfg, env = self.cfg, self.env
        wrapped, params, opt = self._wrap_for_stage(index, spec, start, end)
        loader = self._loader(self.global_step, end)
        it = iter(loader)
        window: dict[str, list[float]] = {"depth_loss": [], "lm_loss": [], "tokens": []}
        if self._in_stage(self.readouts, spec.stage) is not None:
            window["locate_loss"] = []
        if self._stage_select_layer(spec.stage) is not None:
            window["select_loss"] = []
        if self._in_stage(self.object_probes, spec.stage) is not None:
            window["object_loss"] = []
        aux_weights = {"locate_loss": cfg.locate_weight, "select_loss": cfg.select_weight,
                       "object_loss": cfg.object_weight}
        t_last = time.perf_counter()
        while self.global_step < end:
            local = self.global_step - start
            lr = lr_at(spec, local, cfg.warmup_steps, cfg.min_lr_ratio)
            for g in opt.param_groups:
                g["lr"] = lr
            lm_w = cfg.lm_weight if spec.stage in (0, 2) else 0.0
            for micro in range(cfg.grad_accum):
                batch = next(it)
                dev = env.device
                with no_sync(wrapped, micro < cfg.grad_accum - 1), self._autocast():
                    d_loss, lm_loss, n_tok, aux = wrapped(
                        batch["input_ids"].to(dev), batch["labels"].to(dev),
                        batch["pixel_values"].to(dev), batch["image_grid_thw"].to(dev),
                        [g.to(dev) for g in batch["gt"]], batch["depth_scale"].to(dev),
                        batch["locate_box"].to(dev), batch["object_classes"].to(dev))
                    loss = ((cfg.depth_weight if spec.stage != 1 else 1.0) * d_loss
                            + lm_w * lm_loss
                            + sum(aux_weights[k] * v for k, v in aux.items()))
                (loss / cfg.grad_accum).backward()
                window["depth_loss"].append(float(d_loss.detach()))
                window["lm_loss"].append(float(lm_loss.detach()))
                window["tokens"].append(float(n_tok))
                for k, v in aux.items():
                    window[k].append(float(v.detach()))
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
                    self._append_log(row)
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
            self._append_log(res)
            s = res["summary"]
            print(f"[eval] step {self.global_step}: δ1(worst) {s['delta1_min']:.3f}, AbsRel(worst) "
                  f"{s['abs_rel_max']:.3f}, answers {s['answer_accuracy']:.3f} "
                  f"({res['seconds']:.0f} s)", file=sys.stderr, flush=True)
            score = selection_score(res)
            if score > self.best_score:
                self.best_score = score
                self._write_folder(self.out / "best",
                                   stage=stage_at(self.cfg.stages, self.global_step), model=model)
        else:
            # Every rank must agree on whether this step was evaluated: under FSDP the eval
            # starts with a collective gather, and the final "evaluate unless just done" check
            # would otherwise send rank 0 into the final save's gather and the others into an
            # eval gather that nobody matches (a deadlock).
            self.last_eval = {"step": self.global_step}
        barrier(env)

    # ------------------------------------------------------------------------------------------
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
                # What the training images were (e.g. "depthvlm_ros.synthetic 2.0-mount"),
                # so a folder says which world its depth is valid in.
                "train_generators": sorted({str(r.extra["generator"]) for r in self.train_records
                                            if r.extra.get("generator")}),
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
        write_folder_atomically(model, self.tokenizer, path, self._meta(stage, final))

    def _save(self, name: str, final: bool = False, wrapped=None, opt=None,
              stage_index: int | None = None, stage: int | None = None) -> None:
        """Write a checkpoint (model folder + trainer state); rank 0 writes, all ranks wait."""
        env, cfg = self.env, self.cfg
        full_sd = None
        if cfg.strategy == "fsdp" and env.distributed:
            # A collective: every rank takes part. FSDP2 shards the model in place, so the
            # plain model's state dict holds DTensors and is gathered here.
            full_sd = {"model." + k: v for k, v in fsdp_full_state_dict(self.model).items()}
        osd = gather_optimizer_state(wrapped, opt) if opt is not None else None
        stage = stage if stage is not None else stage_at(cfg.stages, self.global_step)
        path = (self.out / "final") if final else (self.ckpt_dir / name)
        if env.is_main:
            self._write_folder(path, stage, final, full_sd)
            if not final:
                write_trainer_state(path, {
                    "global_step": self.global_step, "stage_index": stage_index, "stage": stage,
                    "best_score": self.best_score, "rng": rng_state(),
                    "last_eval": self.last_eval, "config": cfg.to_json(),
                    "world_size": env.world_size})
                if osd is not None:
                    save_optimizer(path, osd)
                if self.readouts is not None:
                    save_training_module(self.readouts, path)
                if self.object_probes is not None:
                    save_training_module(self.object_probes, path, OBJECT_PROBES_FILE)
                mark_latest(self.ckpt_dir, name)
                prune_checkpoints(self.ckpt_dir, cfg.keep_checkpoints)
            if self.log_path.is_file():
                try:
                    plot_losses(self.log_path, self.out / "loss.png")
                except Exception as exc:  # noqa: BLE001 - a plot must never stop training
                    print(f"[train] loss plot failed: {exc}", file=sys.stderr)
        barrier(env)
        if not final:
            save_torch_rngs(path, env)
        barrier(env)


def train(cfg: TrainConfig) -> dict[str, Any]:
    """Run a training job in this process (call once per ``torchrun`` rank)."""
    return Trainer(cfg).run()
