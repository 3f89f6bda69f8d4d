"""How seeds become random streams: the rules that make every output reproducible.

A scene is determined by ``(seed, kind)``. It draws from five independent streams, so that
overriding one aspect (say the resolution, which skips the intrinsics draws) leaves the others
untouched. A benchmark derives one scene seed per image from its base seed, so image ``i``
does not depend on how many images come before it or on the number of worker processes.
Changing anything here changes every generated file: bump
:data:`~.constants.GENERATOR_VERSION` if you must.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

__all__ = ["KIND_ID", "SceneStreams", "scene_streams", "scene_seed"]

#: Number mixed into every seed so indoor and outdoor scenes of one seed are unrelated.
KIND_ID = {"indoor": 1, "outdoor": 2}


class SceneStreams(NamedTuple):
    """The independent generators of one scene, in their spawn order."""

    intrinsics: np.random.Generator
    layout: np.random.Generator
    appearance: np.random.Generator
    noise: np.random.Generator
    qa: np.random.Generator


def scene_streams(seed: int, kind: str) -> SceneStreams:
    """Independent generators for the intrinsics, layout, appearance, sensor noise and QA."""
    ss = np.random.SeedSequence([int(seed) & 0xFFFFFFFFFFFFFFFF, KIND_ID[kind], 0x5EED])
    return SceneStreams(*(np.random.default_rng(s) for s in ss.spawn(len(SceneStreams._fields))))


def scene_seed(base_seed: int, kind: str, index: int) -> int:
    """Seed of the ``index``-th ``kind`` image of a benchmark generated with ``base_seed``."""
    ss = np.random.SeedSequence([int(base_seed) & 0xFFFFFFFFFFFFFFFF, KIND_ID[kind], int(index)])
    return int(ss.generate_state(1, dtype=np.uint32)[0])
