"""Training data: DepthVLM-Bench JSONL records -> augmented, canonical-focal model inputs.

Every sample carries two targets from one image:

* dense metric depth (the GT map, metres, 0 = invalid), compared with the head's output after
  the prediction is scaled by the resize plan's ``depth_scale`` (so the loss is metric for the
  image actually fed to the model);
* a text target: a prompt and its reply, tokenized exactly as :class:`DepthVLMPipeline`
  builds prompts (``prompt_ids``), with the loss on the reply only. Kinds (mixed by weight):

  - ``dense``: the depth prompt, replied with a few "at (u, v): d m" facts read from the GT
    (the coordinates are chosen by the data, so they are masked out of the loss and only the
    distances are learned);
  - ``point``: "how far is the point at pixel (u, v)" -> a number of metres;
  - ``marker``: the point is marked with a red ring drawn into the image (the per-point
    protocol of ``depthvlm bench``) and the question asks for its distance;
  - ``qa``: a record's own prompt/solution (spatial QA items of the benchmark), used as is;
  - ``ground``: for an image with a record that names an object (``object_box`` and
    ``object_label``, as our synthetic ``object_distance`` items have), the pipeline's
    grounding follow-up to that record's question
    (:func:`~depthvlm_ros.core.spatial.grounding_prompt`), replied with the object's box in
    Qwen3-VL's format, so the measured answer can find what a question names. Any record of
    such an image may draw it (:func:`named_objects_by_image`), not only the object's own
    line: an image is one line of depth, several of questions and at most two of objects, and
    learning where a named thing is needs every image that shows one.

Augmentation keeps metric scale honest: horizontal flips mirror ``cx`` (and any pixel
coordinates in the text), colour jitter leaves geometry alone, and crops cut the original
image without resampling (``fx``/``fy`` stay, ``cx``/``cy`` shift) before the one canonical
resize of :func:`~depthvlm_ros.core.preprocess.prepare_image`. Nothing ever rescales an image
without rescaling its focal length.

Batches hold images with one token grid (the vision tower and ``encode`` need that), so
records are bucketed by the grid of their canonical resize, and a crop is decided per batch.
The batch for a given (micro-)step is a pure function of (seed, step, rank): resuming at a
step replays exactly the data an uninterrupted run would have seen.
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import torch
from PIL import Image

from ..bench.jsonl import DEFAULT_DEPTH_PROMPT, BenchRecord, load_gt_depth, load_rgb
from ..bench.metrics import resize_nearest
from ..camera import Intrinsics, ResizePlan, check_token_pixels, plan_canonical_resize
from ..frames import record_intrinsics
from ..preprocess import prepare_image
from ..spatial import Region, format_grounding, grounding_prompt, sample_depth
from .locate import object_classes

__all__ = [
    "AugmentConfig", "TextMix", "TextTarget", "Sample", "SampleBuilder", "BucketBatchPlan",
    "BatchDataset", "collate", "record_intrinsics", "format_metres", "draw_ring",
    "POINT_QUESTION", "MARKER_QUESTION", "DEPTH_PROMPT", "rewrite_coords", "first_number",
    "FLIPPABLE_QA", "NUMERIC_QA", "named_objects_by_image",
]

DEPTH_PROMPT = DEFAULT_DEPTH_PROMPT
#: Point question with explicit pixel coordinates (column u, row v of the input image); the
#: wording of the synthetic benchmark's ``point_depth`` items, so both teach one format.
POINT_QUESTION = ("How far is the point at pixel (u={u}, v={v}) from the camera? Give its depth "
                  "along the camera's optical axis in meters, rounded to two decimal places.")
#: The per-point question of ``depthvlm bench`` (kept equal to its DEPTHLM_QUESTION).
MARKER_QUESTION = ("How far from the camera is the point marked by the red circle, in metres? "
                   "Answer with a single number.")

_COORD = re.compile(r"\(\s*(u\s*=\s*)?(-?\d+(?:\.\d+)?)\s*,\s*(?:v\s*=\s*)?(-?\d+(?:\.\d+)?)\s*\)")
#: QA types whose text stays true under a horizontal flip once coordinates are mirrored
#: (a region given by its top-left / bottom-right corners would swap corners, so it is not).
FLIPPABLE_QA = ("point_depth", "nearer", "distance_3d", "scene_kind", "object_distance")
#: QA types with a numeric answer in metres (``nearer`` answers with a letter).
NUMERIC_QA = ("point_depth", "region_mean", "region_median", "distance_3d")
_NUMBER = re.compile(r"(?<![\w.])\d+(?:\.\d+)?")


def format_metres(d: float) -> str:
    """Three significant digits, as a plain number: 0.873, 2.35, 14.2, 63.0."""
    if d < 1.0:
        return f"{d:.3f}"
    if d < 10.0:
        return f"{d:.2f}"
    return f"{d:.1f}"


def first_number(text: str) -> float | None:
    """The first plain number in ``text`` (None when there is none)."""
    m = _NUMBER.search(text or "")
    return float(m.group(0)) if m else None


def rewrite_coords(prompt: str, old: Sequence[Sequence[float]],
                   new: Sequence[Sequence[float]]) -> str | None:
    """Replace the ``(u, v)`` pixel coordinates written in a prompt after a geometric change.

    Returns None when the prompt's coordinates cannot be matched one to one with ``old`` (the
    caller then leaves that sample's geometry alone rather than teach a wrong answer).
    """
    found = list(_COORD.finditer(prompt))
    if len(found) != len(old):
        return None
    out, last = [], 0
    for m, (ou, ov), (nu, nv) in zip(found, old, new):
        if abs(float(m.group(2)) - ou) > 0.51 or abs(float(m.group(3)) - ov) > 0.51:
            return None
        out.append(prompt[last:m.start()])
        if m.group(1):  # keep the "(u=.., v=..)" spelling of the synthetic benchmark
            out.append(f"(u={int(round(nu))}, v={int(round(nv))})")
        else:
            out.append(f"({int(round(nu))}, {int(round(nv))})")
        last = m.end()
    out.append(prompt[last:])
    return "".join(out)


def draw_ring(rgb: np.ndarray, u: float, v: float) -> np.ndarray:
    """Mark pixel (u, v) with the benchmark's red ring (white halo), on a copy of ``rgb``."""
    from ..bench.depthlm import draw_marker  # the bench's own marker, so train == test

    return draw_marker(rgb, u, v)


@dataclass
class AugmentConfig:
    """Scale-honest augmentation.

    Attributes:
        hflip: probability of a horizontal flip (cx mirrored, text coordinates mirrored).
        jitter: strength of brightness / contrast / saturation jitter (0 = off).
        crop: probability that a batch is a random crop (fx kept, cx/cy shifted).
        crop_min_tokens: smallest crop grid side, in tokens.
    """

    hflip: float = 0.5
    jitter: float = 0.2
    crop: float = 0.0
    crop_min_tokens: int = 3


@dataclass
class TextMix:
    """Relative weights of the text-target kinds (see the module docstring)."""

    dense: float = 1.0
    point: float = 1.0
    marker: float = 1.0
    qa: float = 1.0
    ground: float = 0.0
    facts: int = 3

    def choose(self, rng: np.random.Generator, has_qa: bool, has_object: bool = False) -> str:
        names = (["dense", "point", "marker"] + (["qa"] if has_qa else [])
                 + (["ground"] if has_object else []))
        w = np.array([max(0.0, getattr(self, n)) for n in names], dtype=np.float64)
        if w.sum() <= 0:
            return "dense"
        return str(rng.choice(names, p=w / w.sum()))


@dataclass
class TextTarget:
    """A prompt and its reply as segments ``(text, trained)``; untrained text is context only."""

    kind: str
    question: str
    reply: list[tuple[str, bool]]
    truth: float | None = None
    uv: tuple[int, int] | None = None

    @property
    def reply_text(self) -> str:
        return "".join(t for t, _ in self.reply)


@dataclass
class Sample:
    """One model-ready training sample."""

    pixel_values: torch.Tensor
    image_grid_thw: torch.Tensor
    input_ids: list[int]
    labels: list[int]
    gt: torch.Tensor
    depth_scale: float
    text: TextTarget
    info: dict[str, Any] = field(default_factory=dict)
    # A grounding sample's object box as (x0, y0, x1, y1) fractions of the image (what the
    # training-only position and selection signals of .locate are taught); None for every
    # other sample.
    locate_box: tuple[float, float, float, float] | None = None
    # That object's name ("red box"), whose colour and shape the training-only object probes
    # of .locate are taught; None for every other sample.
    locate_label: str | None = None


def _object_box(record: BenchRecord, width: int, height: int) -> Region | None:
    """The record's named object as a region of the image, or None (no or a bad box)."""
    box, label = record.extra.get("object_box"), record.extra.get("object_label")
    if not isinstance(label, str) or not label or not isinstance(box, (list, tuple)) \
            or len(box) != 4:
        return None
    try:
        x1, y1, x2, y2 = (int(c) for c in box)
    except (TypeError, ValueError):
        return None
    if not (0 <= x1 <= x2 < width and 0 <= y1 <= y2 < height):
        return None
    return Region.from_corners(x1, y1, x2, y2)


def named_objects_by_image(records: Sequence[BenchRecord]) -> dict[Any, list[BenchRecord]]:
    """The records that name an object (``object_box`` + ``object_label``), by image path."""
    out: dict[Any, list[BenchRecord]] = {}
    for r in records:
        if isinstance(r.extra.get("object_label"), str) and r.extra.get("object_box") is not None:
            out.setdefault(r.image, []).append(r)
    return out


def _seeded(*parts: Any) -> np.random.Generator:
    # A stable hash (Python's hash() is salted per process) so every rank and every resumed
    # run derives the same stream from the same (seed, step, rank, slot).
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return np.random.default_rng(int.from_bytes(digest, "little"))


def _jitter(rgb: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
    if strength <= 0:
        return rgb
    x = rgb.astype(np.float32) / 255.0
    b, c, s = (1.0 + rng.uniform(-strength, strength) for _ in range(3))
    x = x * b
    mean = x.mean()
    x = (x - mean) * c + mean
    grey = x.mean(axis=2, keepdims=True)
    x = (x - grey) * s + grey
    return (np.clip(x, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


class SampleBuilder:
    """Turns a record into a :class:`Sample` (augmentation, canonical resize, text target).

    Args:
        prompt_ids: ``(num_image_tokens, question) -> ids``; pass the pipeline's
            :meth:`DepthVLMPipeline.prompt_ids` so the training layout is the inference one.
        tokenizer: tokenizer of the model (for the replies).
        eos_id: id of ``<|im_end|>``, appended to each reply so the model learns to stop.
        canonical_fx: focal of the canonical camera.
        max_tokens: token budget of an uncropped image.
        augment: augmentation settings.
        text_mix: text-target kinds and weights.
        mean, std: image normalisation.
        gt_at_model_size: bring the GT map to the model image's size (nearest, as the
            benchmark's canonical grid; depth values untouched) instead of keeping it at the
            image's own resolution. The loss is then computed on the canonical grid, ~3x
            cheaper on CPU for VGA images; metric scale is unaffected.
        patch_size, merge_size: the model's ViT patch and spatial merge
            (:func:`~depthvlm_ros.core.camera.vision_patching` of its config); every plan and
            crop is in whole tokens of ``patch_size * merge_size`` pixels.
        image_objects: :func:`named_objects_by_image` of the training records, so that any
            record of an image with a named object can carry the ``ground`` target; without
            it only an object's own record can.
    """

    def __init__(self, prompt_ids: Callable[[int, str], list[int]], tokenizer, eos_id: int,
                 canonical_fx: float, max_tokens: int, augment: AugmentConfig | None = None,
                 text_mix: TextMix | None = None, mean: Sequence[float] = (0.5, 0.5, 0.5),
                 std: Sequence[float] = (0.5, 0.5, 0.5), gt_at_model_size: bool = True,
                 patch_size: int = 16, merge_size: int = 2,
                 image_objects: dict[Any, list[BenchRecord]] | None = None) -> None:
        self.image_objects = image_objects or {}
        self.gt_at_model_size = bool(gt_at_model_size)
        self.patch_size, self.merge_size = int(patch_size), int(merge_size)
        #: Pixels per side of one LLM token of the model being trained.
        self.token_pixels = check_token_pixels(self.patch_size * self.merge_size)
        self.prompt_ids = prompt_ids
        self.tokenizer = tokenizer
        self.eos_id = int(eos_id)
        self.canonical_fx = float(canonical_fx)
        self.max_tokens = int(max_tokens)
        self.augment = augment or AugmentConfig()
        self.text_mix = text_mix or TextMix()
        self.mean, self.std = tuple(mean), tuple(std)
        self._reply_cache: dict[str, list[int]] = {}

    # ------------------------------------------------------------------------------------------
    def full_grid(self, record: BenchRecord) -> tuple[int, int]:
        """Token grid (gh, gw) of a record's uncropped canonical resize (read from the header)."""
        with Image.open(record.image) as im:
            w, h = im.size
        plan = plan_canonical_resize(record_intrinsics(record, w, h), self.canonical_fx,
                                     self.max_tokens, token_pixels=self.token_pixels)
        return plan.grid_h, plan.grid_w

    def crop_plan(self, intr: Intrinsics, grid: tuple[int, int], rng: np.random.Generator
                  ) -> tuple[tuple[int, int, int, int], Intrinsics, ResizePlan]:
        """A window of the original image that maps to exactly ``grid`` tokens at canonical fx.

        The window is cut without resampling, so the focal lengths are unchanged and only the
        principal point moves; the single canonical resize then uses the window's own plan.
        """
        gh, gw = grid
        tp = self.token_pixels
        cw = min(intr.width, max(1, int(round(gw * tp * intr.fx / self.canonical_fx))))
        ch = min(intr.height, max(1, int(round(gh * tp * intr.fy / self.canonical_fx))))
        x0 = int(rng.integers(0, intr.width - cw + 1))
        y0 = int(rng.integers(0, intr.height - ch + 1))
        crop_intr = Intrinsics(intr.fx, intr.fy, intr.cx - x0, intr.cy - y0, cw, ch)
        mw, mh = gw * tp, gh * tp
        eff_fx = 0.5 * (intr.fx * mw / cw + intr.fy * mh / ch)
        return (x0, y0, cw, ch), crop_intr, ResizePlan(mw, mh, eff_fx / self.canonical_fx,
                                                       token_pixels=tp)

    # ------------------------------------------------------------------------------------------
    def build(self, record: BenchRecord, rng: np.random.Generator,
              crop_grid: tuple[int, int] | None = None, kind: str | None = None,
              augment: bool = True) -> Sample:
        """Load, augment and encode one record.

        Args:
            record: the annotation.
            rng: this sample's random stream.
            crop_grid: crop to this token grid (None: the whole image).
            kind: force a text-target kind (default: drawn from the mix).
            augment: apply flips and jitter.
        """
        rgb = load_rgb(record)
        h, w = rgb.shape[:2]
        gt = load_gt_depth(record)
        if gt is None:
            gt = np.zeros((h, w), dtype=np.float32)
        elif gt.shape != (h, w):
            gt = resize_nearest(gt, (w, h))
        intr = record_intrinsics(record, w, h)
        qa_coords = [tuple(c) for c in record.pixel_coords]
        has_qa = bool(record.qa_type and record.qa_type not in ("depth", "dense", "dense_depth")
                      and record.prompt and record.solution)
        named = self.image_objects.get(record.image) or (
            [record] if has_qa and _object_box(record, w, h) is not None else [])
        # QA text names pixels (and objects) of the whole image, so a cropped batch asks other
        # kinds; the grid of every sample in a batch must stay the batch's.
        kind = kind or self.text_mix.choose(rng, has_qa and crop_grid is None,
                                            bool(named) and crop_grid is None)
        box = None
        if kind == "ground" and named:
            named_record = named[int(rng.integers(len(named)))] if len(named) > 1 else named[0]
            box = _object_box(named_record, w, h)
        if kind == "ground" and box is None:
            kind = "dense"
        a = self.augment
        flip = augment and rng.random() < a.hflip
        qa_prompt = record.prompt
        if kind in ("qa", "ground"):
            # Their text names pixels or boxes of the full image: no crop.
            crop_grid = None
        if kind == "qa":
            # Flip only if the question's coordinates can be rewritten.
            if flip and record.qa_type not in FLIPPABLE_QA:
                flip = False
            if flip:
                mirrored = [(w - 1 - u, v) for u, v in qa_coords]
                rewritten = (rewrite_coords(record.prompt, qa_coords, mirrored) if qa_coords
                             else None)
                if rewritten is None and qa_coords:
                    flip = False
                elif rewritten is not None:
                    qa_prompt = rewritten
        if flip:
            rgb = np.ascontiguousarray(rgb[:, ::-1])
            gt = np.ascontiguousarray(gt[:, ::-1])
            intr = Intrinsics(intr.fx, intr.fy, w - 1 - intr.cx, intr.cy, w, h)
            if box is not None:
                box = Region(w - box.x_offset - box.width, box.y_offset, box.width, box.height)
        if augment:
            rgb = _jitter(rgb, a.jitter, rng)
        window = (0, 0, w, h)
        if crop_grid is not None:
            window, intr, plan = self.crop_plan(intr, crop_grid, rng)
            x0, y0, cw, ch = window
            rgb = np.ascontiguousarray(rgb[y0:y0 + ch, x0:x0 + cw])
            gt = np.ascontiguousarray(gt[y0:y0 + ch, x0:x0 + cw])
        else:
            plan = plan_canonical_resize(intr, self.canonical_fx, self.max_tokens,
                                         token_pixels=self.token_pixels)
        if kind == "ground":
            text = TextTarget("ground", grounding_prompt(named_record.prompt),
                              [(format_grounding([(named_record.extra["object_label"], box)],
                                                 w, h), True)])
        else:
            text = self._text(kind, record, qa_prompt, gt, rng)
        if text.kind == "marker" and text.uv is not None:
            rgb = draw_ring(rgb, *text.uv)
        mi = prepare_image(rgb, intr, self.canonical_fx, plan=plan, mean=self.mean, std=self.std,
                           patch_size=self.patch_size, merge_size=self.merge_size)
        if self.gt_at_model_size:
            gt = resize_nearest(gt, (plan.model_width, plan.model_height))
        ids = self.prompt_ids(plan.num_tokens, text.question)
        labels = [-100] * len(ids)
        for seg, trained in text.reply:
            seg_ids = self._encode(seg)
            ids = ids + seg_ids
            labels = labels + (seg_ids if trained else [-100] * len(seg_ids))
        ids.append(self.eos_id)
        labels.append(self.eos_id)
        locate_box = locate_label = None
        if text.kind == "ground":
            locate_box = (box.x_offset / w, box.y_offset / h,
                          (box.x_offset + box.width) / w, (box.y_offset + box.height) / h)
            locate_label = named_record.extra["object_label"]
        return Sample(mi.pixel_values, mi.image_grid_thw, ids, labels,
                      torch.from_numpy(np.ascontiguousarray(gt, dtype=np.float32)),
                      plan.depth_scale, text,
                      {"record": record.source, "flip": flip, "window": window,
                       "grid": (plan.grid_h, plan.grid_w)}, locate_box, locate_label)

    def _encode(self, text: str) -> list[int]:
        ids = self._reply_cache.get(text)
        if ids is None:
            ids = self.tokenizer(text, add_special_tokens=False,
                                 split_special_tokens=True).input_ids
            if len(self._reply_cache) < 4096:
                self._reply_cache[text] = ids
        return list(ids)

    def _valid_points(self, gt: np.ndarray, rng: np.random.Generator, n: int,
                      margin: int) -> list[tuple[int, int, float]]:
        h, w = gt.shape
        rows, cols = np.nonzero(gt > 0)
        keep = (rows >= margin) & (rows < h - margin) & (cols >= margin) & (cols < w - margin)
        rows, cols = rows[keep], cols[keep]
        out = []
        if rows.size == 0:
            return out
        for i in rng.choice(rows.size, size=min(n, rows.size), replace=False):
            u, v = int(cols[i]), int(rows[i])
            d = sample_depth(gt, u, v)  # 3x3 median, as spatial answers are read
            if math.isfinite(d) and d > 0:
                out.append((u, v, d))
        return out

    def _text(self, kind: str, record: BenchRecord, qa_prompt: str, gt: np.ndarray,
              rng: np.random.Generator) -> TextTarget:
        if kind == "qa":
            truth = first_number(record.solution)
            return TextTarget("qa", qa_prompt, [(record.solution.strip(), True)], truth)
        # The marker ring must fit inside the image so the point stays identifiable.
        margin = max(6, int(0.03 * min(gt.shape)))
        if kind in ("point", "marker"):
            pts = self._valid_points(gt, rng, 1, margin)
            if pts:
                u, v, d = pts[0]
                if kind == "marker":
                    return TextTarget(kind, MARKER_QUESTION, [(format_metres(d), True)], d, (u, v))
                return TextTarget(kind, POINT_QUESTION.format(u=u, v=v),
                                  [(f"{d:.2f} meters", True)], d, (u, v))
            kind = "dense"
        pts = self._valid_points(gt, rng, max(1, self.text_mix.facts), margin)
        if not pts:
            return TextTarget("dense", DEPTH_PROMPT, [("No valid depth in view.", True)])
        reply: list[tuple[str, bool]] = []
        for i, (u, v, d) in enumerate(pts):
            reply.append(("At " if i == 0 else "; at ", True))
            # The data picks the pixel, so its coordinates are context, not a target.
            reply.append((f"({u}, {v})", False))
            reply.append((f": {format_metres(d)} m", True))
        reply.append((".", True))
        return TextTarget("dense", DEPTH_PROMPT, reply, pts[0][2])


def collate(samples: Sequence[Sample], pad_id: int) -> dict[str, Any]:
    """Stack samples of one token grid into a batch (text right-padded, labels -100)."""
    grids = torch.cat([s.image_grid_thw for s in samples])
    if not bool((grids == grids[0]).all()):
        raise ValueError("a batch must hold images of one token grid")
    length = max(len(s.input_ids) for s in samples)
    ids = torch.full((len(samples), length), pad_id, dtype=torch.long)
    labels = torch.full((len(samples), length), -100, dtype=torch.long)
    for i, s in enumerate(samples):
        ids[i, :len(s.input_ids)] = torch.tensor(s.input_ids)
        labels[i, :len(s.labels)] = torch.tensor(s.labels)
    return {
        "input_ids": ids, "labels": labels,
        "pixel_values": torch.cat([s.pixel_values for s in samples]),
        "image_grid_thw": grids,
        "gt": [s.gt for s in samples],
        "depth_scale": torch.tensor([s.depth_scale for s in samples], dtype=torch.float32),
        "kinds": [s.text.kind for s in samples],
        "locate_box": torch.tensor([s.locate_box if s.locate_box is not None
                                    else (float("nan"),) * 4 for s in samples],
                                   dtype=torch.float32),
        "object_classes": torch.tensor([object_classes(s.locate_label) for s in samples],
                                       dtype=torch.long).reshape(len(samples), 2),
    }


class BucketBatchPlan:
    """Which records (and which crop) make up micro-batch ``k`` of rank ``r``.

    Records are grouped by their uncropped token grid. Each epoch shuffles every bucket,
    cuts it into batches, shuffles the batch order and deals batches to ranks round-robin;
    the leftover that does not fill a batch on every rank waits for the next epoch's shuffle.
    Everything derives from ``seed`` and the epoch number, so all ranks agree on the plan
    without communicating and a resumed run sees the same batches.

    Args:
        grids: uncropped token grid of each record.
        batch_size: samples per micro-batch on each rank.
        world_size, rank: data-parallel layout.
        seed: base seed.
        crop_prob: probability that a batch is cropped.
        crop_min_tokens: smallest crop side in tokens.
    """

    def __init__(self, grids: Sequence[tuple[int, int]], batch_size: int, world_size: int,
                 rank: int, seed: int, crop_prob: float = 0.0, crop_min_tokens: int = 3) -> None:
        self.buckets: dict[tuple[int, int], list[int]] = {}
        for i, g in enumerate(grids):
            self.buckets.setdefault(tuple(g), []).append(i)
        self.batch_size, self.world, self.rank, self.seed = batch_size, world_size, rank, seed
        self.crop_prob, self.crop_min = crop_prob, crop_min_tokens
        per_epoch = sum(len(v) // batch_size for v in self.buckets.values())
        self.batches_per_epoch = per_epoch // world_size
        if self.batches_per_epoch == 0:
            raise ValueError(f"{len(grids)} records in {len(self.buckets)} size buckets give no "
                             f"full batch of {batch_size} on each of {world_size} ranks")
        self._epoch_cache: tuple[int, list] | None = None

    def _epoch(self, epoch: int) -> list[tuple[list[int], tuple[int, int] | None]]:
        if self._epoch_cache and self._epoch_cache[0] == epoch:
            return self._epoch_cache[1]
        rng = _seeded("epoch", self.seed, epoch)
        batches = []
        for grid in sorted(self.buckets):
            idx = np.array(self.buckets[grid])
            rng.shuffle(idx)
            for j in range(len(idx) // self.batch_size):
                members = idx[j * self.batch_size:(j + 1) * self.batch_size].tolist()
                crop = None
                if rng.random() < self.crop_prob and max(grid) > self.crop_min:
                    gh = int(rng.integers(min(self.crop_min, grid[0]), grid[0] + 1))
                    gw = int(rng.integers(min(self.crop_min, grid[1]), grid[1] + 1))
                    crop = (gh, gw) if (gh, gw) != tuple(grid) else None
                batches.append((members, crop))
        order = rng.permutation(len(batches))
        batches = [batches[i] for i in order][:self.batches_per_epoch * self.world]
        mine = batches[self.rank::self.world]
        self._epoch_cache = (epoch, mine)
        return mine

    def batch(self, k: int) -> tuple[list[int], tuple[int, int] | None, int]:
        """Record indices, crop grid (or None) and epoch of this rank's micro-batch ``k``."""
        epoch, j = divmod(int(k), self.batches_per_epoch)
        members, crop = self._epoch(epoch)[j]
        return members, crop, epoch


class BatchDataset(torch.utils.data.Dataset):
    """Map-style dataset whose item ``k`` is this rank's whole micro-batch ``k`` (collated).

    Used with ``DataLoader(batch_size=None, sampler=range(start, stop))`` so loading overlaps
    compute in worker processes while the order stays a pure function of the step.
    """

    def __init__(self, records: Sequence[BenchRecord], builder: SampleBuilder,
                 plan: BucketBatchPlan, pad_id: int, seed: int, length: int) -> None:
        self.records, self.builder, self.plan = list(records), builder, plan
        self.pad_id, self.seed, self.length = pad_id, seed, length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, k: int) -> dict[str, Any]:
        members, crop, epoch = self.plan.batch(k)
        samples = [self.builder.build(self.records[i],
                                      _seeded("sample", self.seed, self.plan.rank, k, slot),
                                      crop_grid=crop)
                   for slot, i in enumerate(members)]
        out = collate(samples, self.pad_id)
        out["step"] = k
        out["epoch"] = epoch
        return out
