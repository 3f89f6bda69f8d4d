"""Named objects of a rendered scene and the questions only the generator can answer.

The renderer knows which primitive every pixel shows. From that id map this module finds the
objects a person could name unambiguously in the picture: a box or a cylinder that covers a
clear patch of the image, is mostly one colour, and is the only visible one of its colour and
shape ("the red box", "the grey cylinder"). Colours are named from the rendered pixels (after
light, white balance and gamma), so the name says what the image shows, not the material's
albedo.

Two question types come from here (:data:`~.constants.SCENE_QA_TYPES`):

* ``scene_kind``: "Is the scene indoors or outdoors?", answered ``indoors`` / ``outdoors``;
* ``object_distance``: "How far is the red box from the camera?", answered with the median
  depth of the object's visible pixels; the line carries the object's box in input pixels
  (``object_box``, inclusive ``[x1, y1, x2, y2]``) and its ``object_label``, so pointing can be
  scored and a grounding reply in Qwen3-VL's format
  (:func:`~depthvlm_ros.core.spatial.format_grounding`) can be trained.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .raycast import group_by_object
from .scene import Box, Cylinder

__all__ = ["VisibleObject", "colour_names", "visible_objects", "SCENE_QUESTION",
           "OBJECT_QUESTION", "scene_answer", "object_answer", "OBJECTS_PER_IMAGE",
           "COLOUR_NAMES", "OBJECT_SHAPES"]

#: The scene-kind question and its two answers, by scene kind.
SCENE_QUESTION = "Is the scene indoors or outdoors?"
_SCENE_ANSWER = {"indoor": "indoors", "outdoor": "outdoors"}
#: The object-distance question; ``{label}`` is e.g. "red box".
OBJECT_QUESTION = "How far is the {label} from the camera?"

#: An object must cover this fraction of the image to be named.
MIN_AREA = 0.008
#: Most object questions written per image.
OBJECTS_PER_IMAGE = 2
#: Share of its pixels that must carry its dominant colour name.
MIN_COLOUR_SHARE = 0.6
#: Its visible pixels must fill this share of their bounding box (no object seen in pieces).
MIN_FILL = 0.45
#: A rival of the same name counts when it covers this fraction of the image.
RIVAL_AREA = 0.002

#: Hue bins (degrees, upper bounds) of the chromatic colour names.
_HUES = ((15.0, "red"), (40.0, "orange"), (70.0, "yellow"), (165.0, "green"), (255.0, "blue"),
         (330.0, "purple"), (360.0, "red"))
#: Every colour word an object's label can start with (the indices colour_names returns).
COLOUR_NAMES = ("black", "grey", "white", "brown", "red", "orange", "yellow", "green", "blue",
                "purple")
#: Every shape word an object's label can end with.
OBJECT_SHAPES = ("box", "cylinder")


@dataclass(frozen=True)
class VisibleObject:
    """An object that can be named in the image.

    Attributes:
        label: colour and shape, e.g. ``"red box"``.
        box: inclusive ``(x1, y1, x2, y2)`` input pixels around its visible pixels.
        area: visible pixels.
        depth: median depth (metres) of its visible pixels with valid depth.
        index: the primitive's index in the scene.
    """

    label: str
    box: tuple[int, int, int, int]
    area: int
    depth: float
    index: int


def colour_names(rgb: np.ndarray) -> np.ndarray:
    """The colour name index (into ``COLOUR_NAMES``) of each ``(N, 3)`` uint8 pixel."""
    x = np.asarray(rgb, dtype=np.float32).reshape(-1, 3) / 255.0
    mx, mn = x.max(1), x.min(1)
    chroma = mx - mn
    sat = np.where(mx > 0, chroma / np.maximum(mx, 1e-6), 0.0)
    r, g, b = x[:, 0], x[:, 1], x[:, 2]
    safe = np.maximum(chroma, 1e-6)
    hue = np.where(mx == r, ((g - b) / safe) % 6.0,
                   np.where(mx == g, (b - r) / safe + 2.0, (r - g) / safe + 4.0)) * 60.0
    out = np.full(len(x), COLOUR_NAMES.index("grey"), dtype=np.int8)
    out[mx > 0.78] = COLOUR_NAMES.index("white")
    out[mx < 0.2] = COLOUR_NAMES.index("black")
    chromatic = (sat >= 0.3) & (mx >= 0.2)
    bins = np.array([h for h, _ in _HUES])
    hue_name = np.array([COLOUR_NAMES.index(n) for _, n in _HUES], dtype=np.int8)
    named = hue_name[np.minimum(np.searchsorted(bins, hue, side="right"), len(bins) - 1)]
    # Dark orange and red read as brown.
    dark_warm = (hue < 40.0) | (hue >= 330.0)
    brown = chromatic & dark_warm & (mx < 0.5)
    out[chromatic] = named[chromatic]
    out[brown] = COLOUR_NAMES.index("brown")
    return out


def _shape(primitive) -> str | None:
    if isinstance(primitive, Box):
        return OBJECT_SHAPES[0]
    if isinstance(primitive, Cylinder):
        return OBJECT_SHAPES[1]
    return None


def visible_objects(rgb: np.ndarray, depth: np.ndarray, ids: np.ndarray,
                    objects: Sequence) -> list[VisibleObject]:
    """The objects of a rendered frame that a person could name unambiguously.

    Args:
        rgb: (H, W, 3) uint8, as saved.
        depth: (H, W) metres as saved (0 invalid).
        ids: (H, W) primitive index per pixel (-1 for sky), from the same render.
        objects: the scene's primitives.

    Returns:
        The nameable objects, largest first.
    """
    h, w = ids.shape
    flat_ids = ids.reshape(-1)
    names = colour_names(rgb)
    candidates = []
    rivals: dict[str, int] = {}
    order, bounds = group_by_object(flat_ids, len(objects))
    for k in np.flatnonzero(np.diff(bounds)):
        shape = _shape(objects[k])
        if shape is None:
            continue
        pix = order[bounds[k]:bounds[k + 1]]
        if pix.size < RIVAL_AREA * h * w:
            continue
        counts = np.bincount(names[pix], minlength=len(COLOUR_NAMES))
        colour = COLOUR_NAMES[int(counts.argmax())]
        label = f"{colour} {shape}"
        rivals[label] = rivals.get(label, 0) + 1
        if pix.size < MIN_AREA * h * w or counts.max() < MIN_COLOUR_SHARE * pix.size:
            continue
        rows, cols = pix // w, pix % w
        box = (int(cols.min()), int(rows.min()), int(cols.max()), int(rows.max()))
        if pix.size < MIN_FILL * (box[2] - box[0] + 1) * (box[3] - box[1] + 1):
            continue
        d = depth.reshape(-1)[pix]
        d = d[d > 0]
        if d.size < 0.5 * pix.size:
            continue
        candidates.append(VisibleObject(label, box, int(pix.size), float(np.median(d)), int(k)))
    named = [c for c in candidates if rivals[c.label] == 1]
    return sorted(named, key=lambda c: -c.area)


def scene_answer(kind: str) -> str:
    """``indoors`` or ``outdoors``."""
    return _SCENE_ANSWER[kind]


def object_answer(obj: VisibleObject) -> str:
    """The reference answer to :data:`OBJECT_QUESTION` about ``obj`` (the point-depth form)."""
    return f"{obj.depth:.2f} meters"
