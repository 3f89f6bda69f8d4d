"""Procedural synthetic RGB-D scenes with exact z-depth, spatial QA and a benchmark writer.

Scenes are built from a few analytic primitives (planes, axis-aligned boxes, vertical
cylinders) and rendered by vectorised numpy ray casting, so the depth is exact; colour is
deliberately decoupled from depth. Everything is deterministic by ``(seed, kind)``.

Modules, in the order a frame flows through them:

* :mod:`.constants`: version, scene kinds, depth caps and PNG scales, prompts, QA types;
* :mod:`.seeds`: how a seed becomes the independent random streams of a scene, and the
  per-image seeds of a benchmark;
* :mod:`.scene`: the scene description (materials, primitives, camera, light, result);
* :mod:`.raycast`: one ray per pixel, the nearest hit and its z-depth;
* :mod:`.shading`: normals, procedural albedo, lighting, the 8-bit image;
* :mod:`.draws`: random intrinsics, colours, materials and lights;
* :mod:`.world_v2`: indoor / outdoor layouts with real-world sizes (the default world), and
  the fixed camera mount of world ``mount``;
* :mod:`.world_v1`: the generator 1.0 layouts, kept to reproduce its files exactly;
* :mod:`.layouts`: :func:`build_scene` / :func:`render_scene` for any world;
* :mod:`.qa`: spatial questions and answers from a depth map;
* :mod:`.objects`: the objects a frame shows by colour and shape, the scene-kind and
  named-object questions;
* :mod:`.writer`: the DepthVLM-Bench folder (images, depth PNGs, JSONL, meta.json).
"""

from .constants import (ALL_QA_TYPES, DENSE_PROMPT, DENSE_SOLUTION, DEPTH_SCALE,
                        EMBEDDED_WORLD, GENERATOR_VERSION, KINDS, MAX_DEPTH, QA_TYPES,
                        SCENE_QA_TYPES, WORLDS)
from .layouts import build_scene, render_scene
from .objects import VisibleObject, visible_objects
from .qa import QAItem, backproject_pixel, make_qa
from .raycast import raycast
from .scene import Box, Camera, Cylinder, Light, Material, Plane, Scene, camera_rotation
from .seeds import scene_seed
from .shading import render
from .writer import benchmark_summary, write_benchmark

__all__ = [
    # constants
    "GENERATOR_VERSION", "WORLDS", "EMBEDDED_WORLD", "KINDS", "MAX_DEPTH", "DEPTH_SCALE",
    "DENSE_PROMPT", "DENSE_SOLUTION",
    "QA_TYPES", "SCENE_QA_TYPES", "ALL_QA_TYPES",
    # scene description, ray casting and shading
    "Material", "Plane", "Box", "Cylinder", "Camera", "Light", "Scene", "camera_rotation",
    "raycast", "render",
    # random scenes
    "build_scene", "render_scene",
    # questions and answers
    "QAItem", "backproject_pixel", "make_qa", "VisibleObject", "visible_objects",
    # benchmark folder
    "scene_seed", "write_benchmark", "benchmark_summary",
]
