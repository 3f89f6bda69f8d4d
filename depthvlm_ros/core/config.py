"""The single source of defaults for the pipeline and the node.

Each field carries a description and, for numbers, an inclusive range in its metadata. The ROS
node declares one parameter per field from this metadata, the YAML in ``config/`` mirrors it
(a test keeps them equal) and :meth:`DepthVLMConfig.validate` enforces it everywhere.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Mapping

from .cameras import parse_camera_names
from .errors import ConfigError

__all__ = ["DepthVLMConfig", "FieldSpec", "field_specs"]


@dataclass(frozen=True)
class FieldSpec:
    """Description and limits of one configuration field."""

    name: str
    default: Any
    type: type
    description: str
    range: tuple[float, float] | None = None
    choices: tuple[str, ...] | None = None


def _f(default: Any, description: str, range: tuple[float, float] | None = None,
       choices: tuple[str, ...] | None = None) -> Any:
    return field(default=default, metadata={"description": description, "range": range,
                                            "choices": choices})


@dataclass
class DepthVLMConfig:
    """Settings of the depth pipeline and of ``depthvlm_node``."""

    # --- model and pipeline ---
    model_path: str = _f("embedded", "Local Hugging Face-format DepthVLM folder, or 'embedded' for "
                         "the small model shipped in the package.")
    device: str = _f("auto", "Torch device: auto (cuda when available), cpu, cuda or cuda:N.")
    dtype: str = _f("auto", "Model precision: auto (bfloat16 on GPU, float32 on CPU), float32, "
                    "bfloat16 or float16.", choices=("auto", "float32", "bfloat16", "float16"))
    canonical_fx: float = _f(0.0, "Focal length (pixels) of the canonical camera the model "
                             "was trained for; images are resized by canonical_fx / fx. 0 = the "
                             "model folder's own value (1000 for DepthVLM-4B).",
                             range=(0.0, 10000.0))
    resize_mode: str = _f("auto", "How images are resized for the model: release (the DepthVLM "
                          "authors' chain, fx only, depth used as is), metric (one resample to "
                          "square canonical pixels) or auto (the model folder's own: release "
                          "without depthvlm_meta.json, else its recorded mode, metric if none).",
                          choices=("auto", "release", "metric"))
    max_image_tokens: int = _f(16384, "Token budget per image (one token = patch x merge pixels a "
                               "side: 32x32 for Qwen3-VL). Larger "
                               "canonical images are scaled down and the depth is rescaled to "
                               "stay metric.", range=(4, 65536))
    min_image_tokens: int = _f(4, "Smallest token grid area; smaller canonical images are scaled "
                               "up.", range=(1, 4096))
    head_backend: str = _f("auto", "Depth-head runtime: torch, onnxruntime, tensorrt or auto "
                           "(tensorrt, then onnxruntime, then torch).",
                           choices=("auto", "torch", "onnxruntime", "tensorrt"))
    engine_cache_dir: str = _f("", "Folder for exported ONNX files and TensorRT engines "
                               "(empty: ~/.cache/depthvlm_ros).")
    max_new_tokens: int = _f(32, "Longest answer, in tokens.", range=(1, 1024))
    max_query_chars: int = _f(512, "Longest accepted question, in characters.", range=(1, 16384))
    answer_mode: str = _f("auto", "Where an answer's text comes from: auto (measured on the depth "
                          "map when the query gives or the question writes pixels or regions, "
                          "or the model locates the object it names; the model's text "
                          "otherwise), measured (always measured; says so when nothing can be "
                          "measured) or model (the model's text only).",
                          choices=("auto", "measured", "model"))
    system_prompt: str = _f("You are a helpful assistant.", "System message placed before the "
                            "image, as in the DepthVLM release.")
    min_depth: float = _f(0.001, "Depths below this (metres) are published as NaN.",
                          range=(0.0, 1000.0))
    max_depth: float = _f(100.0, "Depths above this (metres) are published as NaN.",
                          range=(0.001, 10000.0))

    # --- node ---
    autostart: bool = _f(True, "Bring the lifecycle node to active on its own.")
    image_qos: str = _f("sensor_data", "QoS of the image and camera_info subscriptions: "
                        "sensor_data (best effort) or reliable.",
                        choices=("sensor_data", "reliable"))
    image_transport: str = _f("raw", "How images arrive: raw (sensor_msgs/Image on 'image') or "
                              "compressed (sensor_msgs/CompressedImage, JPEG or PNG, on "
                              "'image/compressed' under the remapped name of 'image', as "
                              "image_transport names it).", choices=("raw", "compressed"))
    cameras: str = _f("", "Cameras served by this one model, as comma-separated names (e.g. "
                      "'front,left,right'); each camera's topics stand under its name "
                      "(front/image, front/camera_info, front/depth/image, ...). Empty: one "
                      "unnamed camera on the plain topics.")
    batch_frames: int = _f(1, "Most frames of different cameras run through the vision tower, "
                           "prefill and head in one batch when their model images have the "
                           "same size (1: one frame at a time). A batch is what is waiting "
                           "when the model is free; it pays where the device has compute to "
                           "spare (a GPU), not on a CPU.", range=(1, 16))
    depth_encoding: str = _f("32FC1", "Encoding of 'depth/image': 32FC1 (metres, NaN invalid) "
                             "or 16UC1 (millimetres, 0 invalid); REP 118 allows both.",
                             choices=("32FC1", "16UC1"))
    publish_points: bool = _f(True, "Publish the organized point cloud on 'points'.")
    points_rgb: bool = _f(True, "Add packed rgb to the point cloud.")
    points_stride: int = _f(1, "Keep every Nth pixel of every Nth row in the point cloud "
                            "(1 = every pixel); a costmap rarely needs more than a few "
                            "thousand points.", range=(1, 64))
    points_min_range: float = _f(0.0, "Cloud points nearer than this distance from the camera "
                                 "(metres) become NaN (0 = no limit); the depth image is not "
                                 "affected.", range=(0.0, 1000.0))
    points_max_range: float = _f(0.0, "Cloud points farther than this distance from the "
                                 "camera (metres) become NaN (0 = no limit beyond max_depth); "
                                 "the depth image is not affected.", range=(0.0, 10000.0))
    publish_colorized: bool = _f(False, "Publish an rgb8 preview on 'depth/colorized'.")
    fallback_hfov_deg: float = _f(0.0, "Horizontal field of view used when no camera_info "
                                  "arrives (0 = wait for camera_info).", range=(0.0, 179.0))
    sync_tolerance_s: float = _f(0.0, "Largest stamp difference when pairing image and "
                                 "camera_info (0 = exact match).", range=(0.0, 1.0))
    camera_info_buffer: int = _f(50, "camera_info messages kept for pairing by stamp.",
                                 range=(1, 10000))
    query_queue_size: int = _f(8, "Pending questions; more are answered with status busy.",
                               range=(1, 1024))
    frame_history: int = _f(4, "Processed frames whose prefill is kept for stamped questions.",
                            range=(1, 64))
    diagnostics_period_s: float = _f(1.0, "Period of /diagnostics messages (seconds).",
                                     range=(0.05, 60.0))
    warn_throttle_s: float = _f(5.0, "Least time between repeated warnings (seconds).",
                                range=(0.0, 3600.0))

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> "DepthVLMConfig":
        """Build a config from a mapping, rejecting unknown keys, and validate it."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown configuration keys: {', '.join(unknown)}")
        cfg = cls(**dict(values))
        cfg.validate()
        return cfg

    @property
    def frames_per_pass(self) -> int:
        """Most frames one model pass runs: ``batch_frames``, at most one per camera."""
        return min(self.batch_frames, len(parse_camera_names(self.cameras)))

    def replace(self, **changes: Any) -> "DepthVLMConfig":
        """Return a validated copy with some fields changed."""
        cfg = dataclasses.replace(self, **changes)
        cfg.validate()
        return cfg

    def validate(self) -> None:
        """Raise :class:`ConfigError` listing every field that is out of its range or choices."""
        problems = []
        for spec in field_specs():
            value = getattr(self, spec.name)
            if spec.type is bool:
                if not isinstance(value, bool):
                    problems.append(f"{spec.name}={value!r} is not a boolean")
                continue
            if spec.type in (int, float):
                if isinstance(value, bool) or not isinstance(value, (int, float)):
                    problems.append(f"{spec.name}={value!r} is not a number")
                    continue
                if spec.type is int and not float(value).is_integer():
                    problems.append(f"{spec.name}={value!r} is not an integer")
                if value != value:  # NaN
                    problems.append(f"{spec.name} is NaN")
                elif spec.range and not spec.range[0] <= value <= spec.range[1]:
                    problems.append(f"{spec.name}={value} outside [{spec.range[0]}, {spec.range[1]}]")
            elif not isinstance(value, str):
                problems.append(f"{spec.name}={value!r} is not a string")
            elif spec.choices and value not in spec.choices:
                problems.append(f"{spec.name}={value!r} not one of {', '.join(spec.choices)}")
        if self.min_depth >= self.max_depth:
            problems.append("min_depth must be smaller than max_depth")
        if self.points_max_range and self.points_min_range >= self.points_max_range:
            problems.append("points_min_range must be smaller than points_max_range")
        if self.min_image_tokens > self.max_image_tokens:
            problems.append("min_image_tokens must not exceed max_image_tokens")
        try:
            parse_camera_names(self.cameras)
        except ConfigError as exc:
            problems.append(str(exc))
        dev = self.device
        if not (dev in ("auto", "cpu", "cuda") or (dev.startswith("cuda:") and dev[5:].isdigit())):
            problems.append(f"device={dev!r} must be auto, cpu, cuda or cuda:N")
        if problems:
            raise ConfigError("invalid configuration: " + "; ".join(problems))


def field_specs() -> list[FieldSpec]:
    """Describe every field of :class:`DepthVLMConfig` (name, default, type, description, limits)."""
    specs = []
    for f in dataclasses.fields(DepthVLMConfig):
        specs.append(FieldSpec(
            name=f.name, default=f.default, type=type(f.default),
            description=f.metadata["description"], range=f.metadata["range"],
            choices=f.metadata["choices"]))
    return specs
