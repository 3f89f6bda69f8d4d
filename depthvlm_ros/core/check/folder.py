"""Validate a model folder without loading its weights: :func:`validate_model_folder`.

Every check reads metadata only (``config.json``, safetensors headers, the shard index, the
tokenizer and processor files), and the architecture's expected weights come from the stock
``transformers`` Qwen3-VL class plus our head built on the meta device, where no tensor has
storage. So a 9 GB DepthVLM-4B folder is checked in seconds, and every fault a load would hit
minutes later (or a silent one, such as a config key left to a transformers default) is one
line of the report.
"""

from __future__ import annotations

import json
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..camera import token_pixels_of
from ..depth_head import DEFAULT_FEATURES, DPTDepthHead
from ..errors import ModelLoadError
from .headers import FLOAT_DTYPES, WeightLayout, read_weight_layout
from .memory import (MemoryEstimate, default_image_tokens, estimate_memory, format_bytes,
                     memory_shortfall)

__all__ = ["Finding", "CheckReport", "validate_model_folder", "PICKLE_SUFFIXES",
           "expected_weight_shapes"]

#: Files refused on sight: unpickling a checkpoint can run arbitrary code.
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")
LEVELS = ("ok", "warn", "error")
# Keys whose transformers defaults belong to another model size: a folder must spell them.
_REQUIRED_TEXT = ("hidden_size", "num_hidden_layers", "num_attention_heads",
                  "num_key_value_heads", "intermediate_size", "vocab_size")
_REQUIRED_VISION = ("depth", "hidden_size", "num_heads", "intermediate_size", "out_hidden_size",
                    "deepstack_visual_indexes")
_TOKEN_KEYS = {"<|image_pad|>": "image_token_id", "<|video_pad|>": "video_token_id",
               "<|vision_start|>": "vision_start_token_id",
               "<|vision_end|>": "vision_end_token_id"}
_SHOWN = 4  # names listed in one line before "... and N more"


@dataclass(frozen=True)
class Finding:
    """One line of a report: ``level`` is ok, warn or error; ``topic`` what was checked."""

    level: str
    topic: str
    text: str

    def line(self) -> str:
        return f"{self.level:<5} {self.topic:<10} {self.text}"


@dataclass
class CheckReport:
    """What :func:`validate_model_folder` found.

    Attributes:
        folder: the folder checked.
        findings: one per line, in check order.
        seconds: time the check took.
        memory: the memory estimate (None when the config or weights could not be read).
        resize_mode, canonical_fx: what ``resize_mode: auto`` and ``canonical_fx: 0`` pick.
        parameters: stored weight elements.
    """

    folder: Path
    findings: list[Finding] = field(default_factory=list)
    seconds: float = 0.0
    memory: MemoryEstimate | None = None
    resize_mode: str | None = None
    canonical_fx: float | None = None
    parameters: int = 0

    def add(self, level: str, topic: str, text: str) -> None:
        self.findings.append(Finding(level, topic, text))

    @property
    def errors(self) -> list[str]:
        return [f"{f.topic}: {f.text}" for f in self.findings if f.level == "error"]

    @property
    def warnings(self) -> list[str]:
        return [f"{f.topic}: {f.text}" for f in self.findings if f.level == "warn"]

    @property
    def ok(self) -> bool:
        return not self.errors

    def format(self) -> str:
        """The report as it fits one screen: a title, one line per finding, a verdict."""
        lines = [f"model folder {self.folder}"]
        lines += ["  " + f.line() for f in self.findings]
        verdict = "OK" if self.ok else "FAILED"
        lines.append(f"{verdict}: {len(self.errors)} error(s), {len(self.warnings)} warning(s) "
                     f"in {self.seconds:.1f} s")
        return "\n".join(lines)

    def raise_if_failed(self) -> None:
        """Raise :class:`ModelLoadError` with the first error (and how many more) if any."""
        errors = self.errors
        if errors:
            more = f" (and {len(errors) - 1} more problem(s): run depthvlm check {self.folder})" \
                if len(errors) > 1 else ""
            raise ModelLoadError(f"{self.folder}: {errors[0]}{more}")


def validate_model_folder(path: str | os.PathLike, dtype: str = "auto", device: str = "auto",
                          image_tokens: int | None = None,
                          frame_history: int | None = None,
                          batch_frames: int = 1) -> CheckReport:
    """Check a model folder (or ``embedded``) without loading its weights.

    Args:
        path: a model folder, or ``embedded``.
        dtype: dtype the model will be loaded in (``auto``: as the pipeline resolves it for
            ``device``).
        device: where it will be loaded (``auto``, ``cpu``, ``cuda``, ``cuda:N``), for the
            memory verdict; ``none`` gives the estimate without a verdict.
        image_tokens: image tokens per frame for the memory estimate (default: a 640x480
            camera with fx = 500, 1200 tokens).
        frame_history: held frames for the KV-cache estimate (default the config's).
        batch_frames: frames per model pass, for the memory estimate.

    Returns:
        The report; ``report.ok`` is False when any check failed. Never raises for a bad
        folder (only for a bad ``dtype`` / ``device`` argument).
    """
    from ..folders import resolve_model_path

    start = time.perf_counter()
    try:
        folder = resolve_model_path(str(path))
    except ModelLoadError as exc:
        report = CheckReport(Path(path))
        report.add("error", "folder", str(exc))
        return report
    report = CheckReport(folder)
    _check_pickles(folder, report)
    data, config = _check_config(folder, report)
    layout = read_weight_layout(folder)
    if config is not None:
        _check_weights(layout, config, data, report)
    else:
        _report_layout(layout, report)
    report.parameters = sum(info.numel for _, info in layout.tensors.values())
    if config is not None:
        _check_tokenizer(folder, config, report)
        _check_processor(folder, config, report)
    _check_resize(folder, report)
    if config is not None and report.parameters:
        _check_memory(config, report, dtype, device, image_tokens, frame_history, batch_frames)
    report.seconds = time.perf_counter() - start
    return report


# --------------------------------------------------------------------------------------------
def _listed(names: list[str]) -> str:
    more = f" ... and {len(names) - _SHOWN} more" if len(names) > _SHOWN else ""
    return ", ".join(names[:_SHOWN]) + more


def _count(n: int) -> str:
    return f"{n / 1e9:.2f} B" if n >= 1e8 else f"{n / 1e6:.1f} M"


def _check_pickles(folder: Path, report: CheckReport) -> None:
    pickles = sorted(p.name for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES)
    if pickles:
        report.add("error", "pickle", f"pickle file(s) present: {_listed(pickles)}; pickles are "
                   "refused because unpickling can run code: DepthVLM loads safetensors only "
                   "(convert or remove them)")


def _check_config(folder: Path, report: CheckReport) -> tuple[dict, Any]:
    """Parse config.json; returns (raw dict, Qwen3VLConfig) or (dict, None) on failure."""
    from transformers import Qwen3VLConfig

    path = folder / "config.json"
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        report.add("error", "config", f"{folder} has no config.json")
        return {}, None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        report.add("error", "config", f"config.json is not valid JSON: {exc}")
        return {}, None
    if not isinstance(data, dict) or data.get("model_type") != "qwen3_vl":
        got = data.get("model_type") if isinstance(data, dict) else type(data).__name__
        report.add("error", "config", f"model_type must be 'qwen3_vl' (got {got!r})")
        return data if isinstance(data, dict) else {}, None
    text, vision = data.get("text_config") or {}, data.get("vision_config") or {}
    problems = [f"text_config.{k}" for k in _REQUIRED_TEXT if k not in text]
    problems += [f"vision_config.{k}" for k in _REQUIRED_VISION if k not in vision]
    if problems:
        report.add("error", "config", f"config.json lacks {_listed(problems)} (transformers "
                   "would silently use another model size's defaults)")
        return data, None
    try:
        config = Qwen3VLConfig.from_dict(
            {k: v for k, v in data.items() if k not in ("model_type", "transformers_version")})
    except Exception as exc:  # noqa: BLE001 - any config parse failure is one line
        report.add("error", "config", f"transformers cannot read config.json: "
                   f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
        return data, None
    bad = _architecture_problems(config, data)
    for line in bad:
        report.add("error", "config", line)
    missing_ids = [k for k in _TOKEN_KEYS.values() if k not in data]
    if missing_ids:
        report.add("warn", "config", f"no {_listed(missing_ids)}: Qwen3-VL's default ids assumed")
    if "depth_head_type" not in data:
        report.add("warn", "config", "no depth_head_type: the DPT head is assumed")
    if bad:
        return data, None
    t, v = config.text_config, config.vision_config
    head = DPTDepthHead.from_config(data)
    widths = [int(p.out_channels) for p in head.projects]
    report.add("ok", "config", f"qwen3_vl: LLM {t.hidden_size} x {t.num_hidden_layers} layers "
               f"({t.num_attention_heads} heads, {t.num_key_value_heads} KV), vision "
               f"{v.hidden_size} x {v.depth}, DeepStack {list(v.deepstack_visual_indexes)}, "
               f"head dpt {head.scratch.output_conv1.in_channels} / {widths}")
    return data, config


def _architecture_problems(config: Any, data: dict) -> list[str]:
    """Config values our model cannot run with, one line each."""
    t, v = config.text_config, config.vision_config
    lines = []
    if v.out_hidden_size != t.hidden_size:
        lines.append(f"vision_config.out_hidden_size {v.out_hidden_size} does not match "
                     f"text_config.hidden_size {t.hidden_size} (the merger must output "
                     "LLM-width tokens)")
    taps = list(v.deepstack_visual_indexes)
    if len(taps) != 3 or not all(0 <= i < v.depth for i in taps):
        lines.append(f"deepstack_visual_indexes {taps} must be 3 layers of the {v.depth}-layer "
                     "vision tower (the depth head reads three DeepStack outputs)")
    head_dim = getattr(t, "head_dim", None) or t.hidden_size // t.num_attention_heads
    rope = getattr(t, "rope_parameters", None) or getattr(t, "rope_scaling", None) or {}
    section = rope.get("mrope_section") if isinstance(rope, dict) else None
    if section is not None and sum(section) != head_dim // 2:
        lines.append(f"mrope_section {section} sums to {sum(section)}, half the head_dim "
                     f"{head_dim} is {head_dim // 2}")
    if data.get("depth_head_type", "dpt") != "dpt":
        lines.append(f"depth_head_type {data['depth_head_type']!r} is not supported (only 'dpt')")
    channels = data.get("depth_head_out_channels")
    if channels is not None and (not isinstance(channels, list) or len(channels) != 4):
        lines.append(f"depth_head_out_channels {channels!r} needs 4 entries")
    if int(data.get("depth_head_features", DEFAULT_FEATURES)) % 2:
        lines.append(f"depth_head_features {data['depth_head_features']} must be even")
    return lines


def expected_weight_shapes(config: Any) -> tuple[dict[str, tuple[int, ...]], set[str]]:
    """Weight name -> shape the architecture of ``config`` stores, and the names it may omit.

    Built on the meta device (no storage): the stock Qwen3-VL class plus our head, exactly
    what loading instantiates. Names that are tied to another weight (``lm_head.weight`` when
    ``tie_word_embeddings``) may be left out of a folder.
    """
    from ..model import DepthVLMForConditionalGeneration

    with warnings.catch_warnings(), torch.device("meta"):
        warnings.simplefilter("ignore")
        model = DepthVLMForConditionalGeneration(config)
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    tied = getattr(model, "all_tied_weights_keys", None) or getattr(model, "_tied_weights_keys",
                                                                    None) or {}
    optional = set(tied) if getattr(config, "tie_word_embeddings", False) else set()
    return shapes, optional


def _report_layout(layout: WeightLayout, report: CheckReport) -> None:
    if not layout.files:
        report.add("error", "weights", "no .safetensors weights")
    for line in layout.problems:
        report.add("error", "weights", line)


def _check_weights(layout: WeightLayout, config: Any, data: dict, report: CheckReport) -> None:
    _report_layout(layout, report)
    if not layout.tensors:
        return
    expected, optional = expected_weight_shapes(config)
    found = {name: info for name, (_, info) in layout.tensors.items()}
    missing = sorted(k for k in expected
                     if k not in found and k not in optional and k not in layout.unreadable)
    unexpected = sorted(k for k in found if k not in expected)
    wrong = [f"{k} is {list(found[k].shape)} in {layout.tensors[k][0]}, config.json implies "
             f"{list(expected[k])}" for k in sorted(found)
             if k in expected and found[k].shape != expected[k]]
    for line in wrong[:_SHOWN]:
        report.add("error", "weights", f"wrong shape: {line}")
    if len(wrong) > _SHOWN:
        report.add("error", "weights", f"... and {len(wrong) - _SHOWN} more wrong shapes "
                   "(config.json of another model size?)")
    if missing:
        report.add("error", "weights", f"{len(missing)} weight(s) missing: {_listed(missing)}")
    if unexpected:
        report.add("error", "weights", f"{len(unexpected)} unexpected weight(s): "
                   f"{_listed(unexpected)}")
    not_float = sorted(k for k, info in found.items() if info.dtype not in FLOAT_DTYPES)
    if not_float:
        report.add("error", "weights", f"non-float weight(s): {_listed(not_float)}")
    dtypes = sorted({info.dtype for info in found.values()})
    declared = str(data.get("dtype") or data.get("torch_dtype") or "")
    short = {"bfloat16": "BF16", "float16": "F16", "float32": "F32"}.get(declared)
    if short and dtypes != [short]:
        report.add("warn", "weights", f"config.json says {declared}, the tensors are "
                   f"{', '.join(dtypes)}")
    if not (wrong or missing or unexpected or not_float or layout.problems):
        files = (f"{len(layout.files)} shards, index consistent" if layout.indexed
                 else layout.files[0])
        params = sum(info.numel for info in found.values())
        report.add("ok", "weights", f"{len(found)} tensors match the architecture, "
                   f"{_count(params)} parameters, {', '.join(dtypes)}, "
                   f"{format_bytes(layout.total_bytes)} in {files}")


def _check_tokenizer(folder: Path, config: Any, report: CheckReport) -> None:
    from transformers import AutoTokenizer

    if not any((folder / n).is_file() for n in ("tokenizer.json", "vocab.json")):
        report.add("error", "tokenizer", "no tokenizer.json (or vocab.json + merges.txt): "
                   "prompts cannot be built")
        return
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tok = AutoTokenizer.from_pretrained(str(folder), local_files_only=True,
                                                trust_remote_code=False)
    except Exception as exc:  # noqa: BLE001 - one clear line for a broken tokenizer
        report.add("error", "tokenizer", f"cannot load the tokenizer: {type(exc).__name__}: "
                   f"{str(exc).splitlines()[0] if str(exc) else ''}")
        return
    ids = {token: tok.convert_tokens_to_ids(token) for token in _TOKEN_KEYS}
    wrong = [f"{token} is id {ids[token]}, config.json says {getattr(config, key)}"
             for token, key in _TOKEN_KEYS.items() if ids[token] != getattr(config, key)]
    for line in wrong:
        report.add("error", "tokenizer", line)
    rows = int(config.text_config.vocab_size)
    if len(tok) > rows:
        report.add("error", "tokenizer", f"{len(tok)} tokens but the embedding has {rows} rows")
    end = tok.convert_tokens_to_ids("<|im_end|>")
    if not isinstance(end, int) or end < 0 or end == tok.unk_token_id:
        report.add("error", "tokenizer", "no <|im_end|> token: answers would never stop")
    if not wrong and len(tok) <= rows:
        shown = ", ".join(f"{t} {i}" for t, i in ids.items() if t != "<|video_pad|>")
        report.add("ok", "tokenizer", f"{len(tok)} tokens ({type(tok).__name__}); {shown} "
                   "match config.json")


def _check_processor(folder: Path, config: Any, report: CheckReport) -> None:
    from ..folders import read_preprocessor
    from ..preprocess import release_pixel_limits

    if not (folder / "preprocessor_config.json").is_file():
        report.add("warn", "processor", "no preprocessor_config.json: Qwen3-VL's defaults are used")
    try:
        pre = read_preprocessor(folder)
    except ModelLoadError as exc:
        report.add("error", "processor", str(exc))
        return
    v = config.vision_config
    # The model's vision_config decides the token size; a processor cutting other patches
    # would feed the tower rows of the wrong width.
    lines = [f"{key}={pre[key]} does not match vision_config.{name}={getattr(v, name)}"
             for key, name in (("patch_size", "patch_size"), ("merge_size", "spatial_merge_size"),
                               ("temporal_patch_size", "temporal_patch_size"))
             if int(pre[key]) != int(getattr(v, name))]
    lo, hi = release_pixel_limits(pre)
    token_area = (int(pre["patch_size"]) * int(pre["merge_size"])) ** 2
    if not token_area <= lo <= hi:
        lines.append(f"pixel limits {lo}..{hi} are not an area range of at least one token "
                     f"({token_area} pixels)")
    for key in ("image_mean", "image_std"):
        if len(pre.get(key, ())) != 3:
            lines.append(f"{key} {pre.get(key)!r} needs 3 values")
    for line in lines:
        report.add("error", "processor", line)
    if not lines:
        report.add("ok", "processor", f"patch {pre['patch_size']}, merge {pre['merge_size']}, "
                   f"temporal {pre['temporal_patch_size']}, pixels {lo}..{hi} "
                   f"({lo // token_area}..{hi // token_area} tokens), mean {pre['image_mean']}, "
                   f"std {pre['image_std']}")


def _check_resize(folder: Path, report: CheckReport) -> None:
    from ..folders import META_FILE, folder_canonical_fx, folder_resize_mode

    try:
        report.resize_mode = folder_resize_mode(folder)
    except ModelLoadError as exc:
        report.add("error", "resize", str(exc))
        return
    report.canonical_fx = folder_canonical_fx(folder)
    why = (f"recorded in {META_FILE}" if (folder / META_FILE).is_file()
           else f"no {META_FILE}: the authors' release")
    report.add("ok", "resize", f"auto -> {report.resize_mode} ({why}), canonical fx "
               f"{report.canonical_fx:g}")


def _check_memory(config: Any, report: CheckReport, dtype: str, device: str,
                  image_tokens: int | None, frame_history: int | None,
                  batch_frames: int = 1) -> None:
    from ..config import DepthVLMConfig
    from ..pipeline import resolve_device, resolve_dtype

    target = None if device == "none" else resolve_device(device)
    torch_dtype = resolve_dtype(dtype, target or torch.device("cpu"))
    estimate = estimate_memory(
        config, report.parameters, torch_dtype,
        image_tokens if image_tokens is not None
        else default_image_tokens(token_pixels=token_pixels_of(config)),
        frame_history if frame_history is not None else DepthVLMConfig().frame_history,
        batch_frames)
    report.memory = estimate
    if target is None:
        report.add("ok", "memory", estimate.describe())
        return
    short = memory_shortfall(estimate, target)
    if short:
        report.add("error", "memory", short)
    else:
        report.add("ok", "memory", f"{estimate.describe()}; fits on {target}")

