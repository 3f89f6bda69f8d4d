"""Spatial question/answer scoring: the model's own text and the measured answer, side by side.

Any JSONL line with a ``qa_type`` of :data:`QA_TYPES` and an ``answer`` field is a QA item (our
synthetic sets write four per image). Each image is processed once; every question about it is
answered twice from that one frame: by the model's text, and by the answer composed from
measurements on the predicted depth map (:func:`depthvlm_ros.core.answers.answer_question`,
``measured`` mode). Both texts are scored the same way:

* numeric items (``point_depth``, ``region_mean``, ``region_median``, ``distance_3d``,
  ``object_distance``): the first
  distance in the text (:func:`~.answers.parse_metres`) within :data:`NUMERIC_TOLERANCE`
  (25 %) of the truth;
* comparisons (``nearer``): the first standalone ``A`` or ``B`` in the text is the truth's;
* the scene's kind (``scene_kind``): the first "indoor(s)" / "outdoor(s)" in the text is the
  truth's.

Pointing is scored for items with an ``object_box`` field ``[x1, y1, x2, y2]`` (inclusive input
pixels; our synthetic sets write one for each ``object_distance`` item): right when a point the
model located first (its point, or the centre of its box) lies inside the box.
"""

from __future__ import annotations

import re
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from ..distributed import gather_to_main, init_distributed, shard_indices
from ..errors import AnnotationError
from ..frames import record_intrinsics
from .answers import parse_metres
from .datasets import DatasetSpec
from .jsonl import BenchRecord, load_rgb, read_jsonl

__all__ = ["QA_TYPES", "NUMERIC_QA_TYPES", "CHOICE_QA_TYPES", "NUMERIC_TOLERANCE", "SOURCES",
           "QAOutcome", "QAFn", "score_text", "item_truth", "pointing_hit", "run_spatial_qa"]

NUMERIC_QA_TYPES = ("point_depth", "region_mean", "region_median", "distance_3d",
                    "object_distance")
CHOICE_QA_TYPES = ("nearer", "scene_kind")
#: qa_type values scored here.
QA_TYPES = NUMERIC_QA_TYPES + CHOICE_QA_TYPES
#: A numeric answer is right within this relative error of the truth.
NUMERIC_TOLERANCE = 0.25
#: The two answers scored for every item.
SOURCES = ("model", "measured")

_CHOICE = re.compile(r"\b([AB])\b")
_SCENE = re.compile(r"\b(indoor|outdoor)s?\b", re.IGNORECASE)
#: The accepted truths of each choice type.
_CHOICES = {"nearer": ("A", "B"), "scene_kind": ("indoors", "outdoors")}


@dataclass
class QAOutcome:
    """The two answers to one question, and where the model pointed (for pointing items).

    Attributes:
        model_text: the model's own text.
        measured_text: the measured answer ("" when the question could not be measured).
        located: ``(u, v)`` input pixels the model located (grounding), if any.
    """

    model_text: str
    measured_text: str
    located: tuple[tuple[float, float], ...] = ()


#: ``qa_fn(rgb, intrinsics, questions) -> [QAOutcome, ...]``: every question about one image,
#: answered from one processed frame.
QAFn = Callable[[Any, Any, Sequence[str]], Sequence[QAOutcome]]


def score_text(qa_type: str, truth: Any, text: str) -> bool:
    """Whether ``text`` answers a ``qa_type`` item whose answer is ``truth``.

    Raises:
        AnnotationError: an unknown type or a truth of the wrong kind.
    """
    if qa_type in NUMERIC_QA_TYPES:
        try:
            truth = float(truth)
        except (TypeError, ValueError):
            raise AnnotationError(f"{qa_type} answer must be a number, got {truth!r}") from None
        got = parse_metres(text)
        return got is not None and abs(got - truth) <= NUMERIC_TOLERANCE * abs(truth)
    if qa_type in CHOICE_QA_TYPES:
        if truth not in _CHOICES[qa_type]:
            raise AnnotationError(f"{qa_type} answer must be one of {_CHOICES[qa_type]}, "
                                  f"got {truth!r}")
        return _choice_in(qa_type, text) == truth
    raise AnnotationError(f"unknown qa_type {qa_type!r}")


def _choice_in(qa_type: str, text: str | None) -> str | None:
    """The choice a text makes (``A``/``B``, ``indoors``/``outdoors``), or None."""
    if qa_type == "scene_kind":
        m = _SCENE.search(text or "")
        return None if m is None else m.group(1).lower() + "s"
    m = _CHOICE.search(text or "")
    return None if m is None else m.group(1)


def item_truth(rec: BenchRecord) -> Any | None:
    """What a QA record's answer is scored against, or None when it has none to score.

    The ``answer`` field when it is a valid truth for the record's type; otherwise the truth
    read from its ``solution`` text with the rules that read a model's answer (first distance;
    first choice), so hand-written lines without an ``answer`` field score too.
    """
    ans = rec.extra.get("answer")
    if rec.qa_type in NUMERIC_QA_TYPES:
        if isinstance(ans, (int, float)) and not isinstance(ans, bool) and ans > 0:
            return float(ans)
        got = parse_metres(rec.solution or "")
        return got if got else None
    if rec.qa_type in CHOICE_QA_TYPES:
        if ans in _CHOICES[rec.qa_type]:
            return ans
        return _choice_in(rec.qa_type, rec.solution)
    return None


def _is_item(rec: BenchRecord) -> bool:
    return rec.qa_type in QA_TYPES and "answer" in rec.extra


def pointing_hit(located: Sequence[tuple[float, float]], box: Sequence[float]) -> bool:
    """Whether the first located ``(u, v)`` lies inside the inclusive box ``[x1, y1, x2, y2]``.

    Only the first counts: a model that lists many boxes must not score by covering the image.
    """
    if not located:
        return False
    u, v = located[0]
    return box[0] - 0.5 <= u <= box[2] + 0.5 and box[1] - 0.5 <= v <= box[3] + 0.5


def _hits_and_asked() -> list[int]:
    return [0, 0]


class _Counts:
    """Right / asked per (dataset, qa_type, source), plus pointing hits."""

    def __init__(self) -> None:
        self.asked: dict[tuple[str, str], int] = defaultdict(int)
        self.right: dict[tuple[str, str, str], int] = defaultdict(int)
        self.pointing: dict[str, list[int]] = defaultdict(_hits_and_asked)  # picklable factory
        self.seconds: list[float] = []
        self.examples: list[dict] = []

    def merge(self, other: "_Counts") -> None:
        """Add another rank's counts (examples: the first ones in image order)."""
        for mine, theirs in ((self.asked, other.asked), (self.right, other.right)):
            for key, n in theirs.items():
                mine[key] += n
        for ds, (hits, asked) in other.pointing.items():
            self.pointing[ds][0] += hits
            self.pointing[ds][1] += asked
        self.seconds += other.seconds
        self.examples = sorted(self.examples + other.examples, key=lambda e: e["order"])[:8]

    def add(self, dataset: str, rec: BenchRecord, outcome: QAOutcome, order: tuple) -> None:
        truth = rec.extra["answer"]
        self.asked[dataset, rec.qa_type] += 1
        texts = {"model": outcome.model_text, "measured": outcome.measured_text}
        verdict = {s: score_text(rec.qa_type, truth, texts[s]) for s in SOURCES}
        for source, ok in verdict.items():
            self.right[dataset, rec.qa_type, source] += int(ok)
        box = rec.extra.get("object_box")
        if box is not None:
            hit = pointing_hit(outcome.located, box)
            self.pointing[dataset][0] += int(hit)
            self.pointing[dataset][1] += 1
        if len(self.examples) < 8:
            self.examples.append({"order": order, "dataset": dataset, "qa_type": rec.qa_type,
                                  "question": rec.prompt, "truth": truth, **texts,
                                  "model_right": verdict["model"],
                                  "measured_right": verdict["measured"]})

    def table(self, datasets: Sequence[str]) -> dict[str, Any]:
        per_dataset = {}
        for ds in datasets:
            types = {}
            for qa_type in QA_TYPES:
                n = self.asked.get((ds, qa_type), 0)
                if n:
                    types[qa_type] = {"n": n, **{s: self.right[ds, qa_type, s] / n
                                                 for s in SOURCES}}
            n_all = sum(t["n"] for t in types.values())
            overall = {"n": n_all, **{s: (sum(self.right[ds, t, s] for t in types) / n_all
                                          if n_all else None) for s in SOURCES}}
            hits, asked = self.pointing.get(ds, (0, 0))
            per_dataset[ds] = {"by_type": types, "overall": overall,
                               "pointing": {"n": asked, "hit_rate": hits / asked if asked
                                            else None}}
        return per_dataset


def run_spatial_qa(datasets: Sequence[DatasetSpec], qa_fn: QAFn, *, limit: int | None = None,
                   progress: bool = True) -> dict[str, Any]:
    """Answer and score every QA item of the test sets.

    Args:
        datasets: the test sets (items are read from the same JSONL files as the depth lines).
        qa_fn: answers the questions about one image (see :data:`QAFn`).
        limit: at most this many images per dataset.
        progress: show a tqdm progress bar.

    Returns:
        The ``spatial_qa`` section of ``results.json``: definitions, per-dataset accuracy per
        type and source, pointing hit rates, timing, a few examples; ``n_items`` 0 when the
        sets have no QA items.

    Raises:
        AnnotationError: bad annotation or image file.
    """
    from tqdm import tqdm

    env = init_distributed(device="cpu")  # a process group only under torchrun
    counts = _Counts()
    names = []
    for ds_index, spec in enumerate(datasets):
        items = [r for r in read_jsonl(spec.jsonl, image_root=spec.image_root,
                                       depth_root=spec.depth_root) if _is_item(r)]
        if not items:
            continue
        names.append(spec.name)
        by_image: dict[str, list[BenchRecord]] = defaultdict(list)
        for rec in items:
            by_image[str(rec.image)].append(rec)
        images = list(by_image.values())[:limit] if limit is not None else list(by_image.values())
        tag = f" [rank {env.rank}/{env.world_size}]" if env.distributed else ""
        for i in tqdm(shard_indices(len(images), env), desc=f"{spec.name} QA{tag}", unit="img",
                      disable=not progress, leave=False, position=env.rank):
            recs = images[i]
            rgb = load_rgb(recs[0])
            h, w = rgb.shape[:2]
            if recs[0].original_rgb_size and tuple(recs[0].original_rgb_size) != (w, h):
                # The questions' pixels refer to original_rgb_size.
                raise AnnotationError(f"{recs[0].source}: QA items need the image stored at "
                                      "original_rgb_size")
            t0 = time.perf_counter()
            outcomes = qa_fn(rgb, record_intrinsics(recs[0], w, h), [r.prompt for r in recs])
            counts.seconds.append(time.perf_counter() - t0)
            for j, (rec, outcome) in enumerate(zip(recs, outcomes)):
                counts.add(spec.name, rec, outcome, (ds_index, i, j))
    gathered = gather_to_main((counts, names), env)
    if gathered is None:
        return {}
    counts, names = gathered[0]
    for other, other_names in gathered[1:]:
        counts.merge(other)
        names += [n for n in other_names if n not in names]
    names = [s.name for s in datasets if s.name in names]
    for e in counts.examples:
        e.pop("order", None)
    n_items = sum(counts.asked.values())
    return {
        "definitions": {
            "numeric": f"first distance in the text within {NUMERIC_TOLERANCE:.0%} of the truth "
                       f"({', '.join(NUMERIC_QA_TYPES)})",
            "choice": "first standalone A or B (nearer), first indoor(s) / outdoor(s) "
                      "(scene_kind) is the truth",
            "model": "the model's own text",
            "measured": "the answer composed from measurements on the predicted depth map",
            "pointing": "the first located point (or centre of a located box) inside the "
                        "item's object_box",
        },
        "n_items": n_items,
        "datasets": counts.table(names),
        "seconds_per_image": (sum(counts.seconds) / len(counts.seconds)
                              if counts.seconds else None),
        "examples": counts.examples,
    }
