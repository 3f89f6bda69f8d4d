"""The generator's fixed choices: version, scene kinds, depth caps and encodings, prompts.

Everything a reader of the written files may need to know lives here, so the renderer, the
question generator and the writer cannot disagree about it.
"""

from __future__ import annotations

__all__ = [
    "GENERATOR_VERSION",
    "WORLDS",
    "EMBEDDED_WORLD",
    "KINDS",
    "MAX_DEPTH",
    "DEPTH_SCALE",
    "DENSE_PROMPT",
    "DENSE_SOLUTION",
    "QA_TYPES",
    "SCENE_QA_TYPES",
    "ALL_QA_TYPES",
]

#: Bumped whenever the same seed would give different pixels (in the default world).
GENERATOR_VERSION = "2.0"

#: Layout rules by name, with the generator version whose files each reproduces: ``v2`` gives
#: things their real-world sizes (the default), ``mount`` shows v2's rooms and streets from one
#: robot's fixed camera mount (world_v2.ROBOT_MOUNT), ``robot`` the same through that robot's
#: one camera (world_v2.ROBOT_CAMERA: one image size and focal length), ``v1`` reproduces 1.0
#: files exactly.
WORLDS = {"v1": "1.0", "v2": "2.0", "mount": "2.0-mount", "robot": "2.0-robot"}

#: The world the shipped embedded model (``model_path: embedded``) was trained in. Sample bags
#: and README figures use it, so a demo shows the model on the kind of scene it learned.
EMBEDDED_WORLD = "robot"

KINDS = ("indoor", "outdoor")

#: Depth cap per kind; farther surfaces are still drawn but get depth 0 (invalid), as a
#: range-limited sensor would report them.
MAX_DEPTH = {"indoor": 10.0, "outdoor": 80.0}

#: Raw PNG value per metre. uint16 millimetres stop at 65.535 m, which is below the 80 m
#: outdoor cap, so outdoor maps use the KITTI convention (1/256 m steps, up to 256 m).
DEPTH_SCALE = {"indoor": 1000.0, "outdoor": 256.0}

#: The authors' dense-depth prompt and answer (DepthVLM-Bench examples.jsonl).
DENSE_PROMPT = ("Given this image, estimate the metric depth (in meters, rounded to two "
                "decimal places) for every pixel of the image.")
DENSE_SOLUTION = "OK, I will estimate the depth map of this image."

#: Questions answered from the depth map and the intrinsics alone (:mod:`.qa`).
QA_TYPES = ("point_depth", "region_mean", "region_median", "nearer", "distance_3d")
#: Questions that need what only the generator knows: the scene's kind and its named objects
#: (:mod:`.objects`).
SCENE_QA_TYPES = ("scene_kind", "object_distance")
#: Every ``qa_type`` of a spatial-QA line the writer produces.
ALL_QA_TYPES = QA_TYPES + SCENE_QA_TYPES
