"""Release-compatible preprocessing: the DepthVLM authors' resize chain, size for size and pixel
for pixel, picked by ``resize_mode: auto`` for their folders, with the depth left unscaled.

The reference chain below is written out from the authors' scripts (hanxunyu/DepthVLM:
``data_process/curate_datasets/create_data_pixel_level_*.py`` for ``canonical_size``,
``examples/run_demo.py`` / ``utils/datasets.py`` for the bilinear load, qwen_vl_utils
``fetch_image`` for the multiple-of-28 resize) and ends in the transformers Qwen2-VL image
processor itself, loaded from a checkpoint-like ``preprocessor_config.json``. It shares no code
with ``depthvlm_ros.core.camera`` / ``preprocess``.
"""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import (
    Qwen2VLImageProcessorPil,
    smart_resize as hf_smart_resize,
)

from depthvlm_ros.core.camera import Intrinsics, plan_release_resize, release_canonical_size
from depthvlm_ros.core.config import DepthVLMConfig
from depthvlm_ros.core.errors import InputError, ModelLoadError
from depthvlm_ros.core.folders import EMBEDDED_DIR, META_FILE, folder_resize_mode
from depthvlm_ros.core.pipeline import DepthVLMPipeline
from depthvlm_ros.core.preprocess import prepare_image, release_pixel_limits

#: The first five records of the authors' examples/examples.jsonl (ScanNet++ iPhone frames,
#: 1920x1440): (image, original_fx, canonical_size as the annotation gives it).
SCANNETPP_EXAMPLES = [
    ("5748ce6f01_frame_000000.jpg", 1430.94, (1342, 1006)),
    ("2a1a3afad9_frame_002760.jpg", 1434.29, (1339, 1004)),
    ("02455b3d20_frame_001020.jpg", 1432.49, (1340, 1005)),
    ("6ebe30292e_frame_003660.jpg", 1435.97, (1337, 1003)),
    ("5748ce6f01_frame_005940.jpg", 1431.47, (1341, 1006)),
]

#: Image-processor settings of a Qwen3-VL checkpoint (Qwen3-VL-4B's preprocessor_config.json).
CHECKPOINT_PREPROCESSOR = {
    "size": {"longest_edge": 16777216, "shortest_edge": 65536},
    "patch_size": 16, "temporal_patch_size": 2, "merge_size": 2,
    "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5],
    "processor_class": "Qwen3VLProcessor", "image_processor_type": "Qwen2VLImageProcessorFast",
}


# --------------------------------------------------------------------------------------------
# The authors' chain, written out independently


def _vl_utils_smart_resize(height, width, factor=28, min_pixels=4 * 28 * 28,
                           max_pixels=16384 * 28 * 28):
    """qwen_vl_utils.vision_process.smart_resize with process_vision_info's defaults."""
    h_bar = max(factor, round(height / factor) * factor)
    w_bar = max(factor, round(width / factor) * factor)
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h_bar = math.floor(height / beta / factor) * factor
        w_bar = math.floor(width / beta / factor) * factor
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


def _authors_sizes(width, height, fx, size=CHECKPOINT_PREPROCESSOR["size"]):
    scale = 1000.0 / fx  # CANONICAL_FX / fx, then round() per side
    canonical = (round(width * scale), round(height * scale))
    h28, w28 = _vl_utils_smart_resize(canonical[1], canonical[0])
    h32, w32 = hf_smart_resize(h28, w28, 32, size["shortest_edge"], size["longest_edge"])
    return canonical, (w28, h28), (w32, h32)


@pytest.fixture(scope="module")
def processor_dir(tmp_path_factory):
    def make(settings=CHECKPOINT_PREPROCESSOR):
        out = tmp_path_factory.mktemp("checkpoint_like")
        (out / "preprocessor_config.json").write_text(json.dumps(settings))
        return out
    return make


def _authors_chain(rgb, fx, processor_folder):
    """Their pixels: load + bilinear to canonical_size, fetch_image, then the image processor."""
    img = Image.fromarray(rgb)  # Image.open(path).convert("RGB")
    scale = 1000.0 / fx
    canonical_size = (round(img.width * scale), round(img.height * scale))
    if img.size != canonical_size:
        img = img.resize(canonical_size, Image.BILINEAR)
    h, w = _vl_utils_smart_resize(img.height, img.width)
    img = img.resize((w, h))  # fetch_image: PIL's default filter (bicubic for RGB)
    proc = Qwen2VLImageProcessorPil.from_pretrained(str(processor_folder))
    out = proc(images=[img], return_tensors="pt")
    return out["pixel_values"].float(), out["image_grid_thw"]


def _scene(width, height, seed=0):
    """Edges, gradients and noise, so every filter's weights show in the result."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.stack([(xx * 0.7) % 256, (yy * 1.3) % 256, ((xx // 37 + yy // 29) % 2) * 255], -1)
    noise = np.random.default_rng(seed).normal(0, 25, (height, width, 3))
    return np.clip(base + noise, 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name,fx,canonical", SCANNETPP_EXAMPLES)
def test_release_sizes_are_the_authors(name, fx, canonical):
    assert release_canonical_size(1920, 1440, fx) == canonical, name
    want_canonical, want_28, want_32 = _authors_sizes(1920, 1440, fx)
    assert want_canonical == canonical
    plan = plan_release_resize(Intrinsics(fx, fx, 959.5, 719.5, 1920, 1440))
    assert plan.mode == "release" and plan.depth_scale == 1.0
    assert plan.steps == ((*canonical, "bilinear"), (*want_28, "bicubic"))
    assert (plan.model_width, plan.model_height) == want_32 == (1344, 1024)
    assert (plan.grid_w, plan.grid_h) == (42, 32)


@pytest.mark.parametrize("width,height,fx,fy,settings", [
    (1920, 1440, 1430.94, 1430.94, None),            # the first ScanNet++ example
    (1920, 1440, 1425.24, 1425.24, None),            # canonical 1347x1010: shrinks to 28s
    (640, 480, 500.0, 520.0, None),                  # fy is ignored, as in the release
    (160, 120, 600.0, 600.0, None),                  # processor min_pixels: ceil branch
    (1920, 1440, 1430.94, 1430.94,                   # a folder with a smaller max area
     {**CHECKPOINT_PREPROCESSOR, "size": {"shortest_edge": 65536, "longest_edge": 500 * 1024}}),
])
def test_release_pixels_equal_the_authors_chain(processor_dir, width, height, fx, fy, settings):
    settings = settings or CHECKPOINT_PREPROCESSOR
    rgb = _scene(width, height, seed=width + int(fx))
    ref_pixels, ref_grid = _authors_chain(rgb, fx, processor_dir(settings))
    intr = Intrinsics(fx, fy, width / 2 - 0.5, height / 2 - 0.5, width, height)
    ours = prepare_image(rgb, intr, 1000.0, resize_mode="release",
                         pixel_limits=release_pixel_limits(settings),
                         mean=settings["image_mean"], std=settings["image_std"])
    assert ours.image_grid_thw.tolist() == ref_grid.tolist()
    assert ours.plan.depth_scale == 1.0
    torch.testing.assert_close(ours.pixel_values, ref_pixels, rtol=0, atol=1e-6)


def test_release_plan_edge_cases():
    # A canonical image beyond 64 Mpx is not materialised: step 1 is skipped, sizes are kept.
    intr = Intrinsics(100.0, 100.0, 3999.5, 2999.5, 8000, 6000)
    plan = plan_release_resize(intr)
    _, want_28, want_32 = _authors_sizes(8000, 6000, 100.0)
    assert plan.steps == ((*want_28, "bicubic"),)
    assert (plan.model_width, plan.model_height) == want_32 and plan.depth_scale == 1.0
    # Qwen-VL preprocessing refuses aspect ratios above 200; so do we, with an InputError.
    with pytest.raises(InputError, match="aspect ratio"):
        plan_release_resize(Intrinsics(1000.0, 1000.0, 2000.0, 2.0, 4020, 20))


def test_release_pixel_limits_follow_transformers_reading():
    assert release_pixel_limits(None) == (65536, 16777216)
    assert release_pixel_limits(CHECKPOINT_PREPROCESSOR) == (65536, 16777216)
    assert release_pixel_limits({"size": {"shortest_edge": 3136, "longest_edge": 1003520}}) == \
        (3136, 1003520)
    # Top-level min/max_pixels override size, as Qwen2VLImageProcessor.__init__ does.
    assert release_pixel_limits({"size": {"shortest_edge": 1, "longest_edge": 2},
                                 "min_pixels": 4096, "max_pixels": 8192}) == (4096, 8192)


def _without_meta(src, dst):
    dst.mkdir()
    for f in src.iterdir():
        if f.name != META_FILE:
            shutil.copy(f, dst / f.name)
    return dst


def test_auto_picks_release_for_folders_without_meta_and_metric_for_ours(tmp_path,
                                                                        tiny_model_dir):
    release_like = _without_meta(tiny_model_dir, tmp_path / "authors_release")
    assert folder_resize_mode(release_like) == "release"
    assert folder_resize_mode(EMBEDDED_DIR) == "metric"  # meta without resize_mode
    assert folder_resize_mode(tiny_model_dir) == "metric"  # written with resize_mode: metric
    cfg = DepthVLMConfig(head_backend="torch", device="cpu")
    assert cfg.resize_mode == "auto"
    intr = Intrinsics(500.0, 500.0, 159.5, 119.5, 320, 240)
    rgb = _scene(320, 240)
    pipe = DepthVLMPipeline.from_config(cfg.replace(model_path=str(release_like)))
    assert pipe.resize_mode == "release" and pipe.prepare(rgb, intr).plan.mode == "release"
    emb = DepthVLMPipeline.from_config(cfg.replace(model_path="embedded"))
    assert emb.resize_mode == "metric" and emb.prepare(rgb, intr).plan.mode == "metric"
    # An explicit mode wins over the folder's.
    forced = DepthVLMPipeline.from_config(cfg.replace(model_path=str(release_like),
                                                      resize_mode="metric"))
    assert forced.resize_mode == "metric"
    # A folder of ours may record release; an unknown mode is refused with one clear line.
    meta = json.loads((tiny_model_dir / META_FILE).read_text())
    ours_release = _without_meta(tiny_model_dir, tmp_path / "ours_release")
    (ours_release / META_FILE).write_text(json.dumps({**meta, "resize_mode": "release"}))
    assert folder_resize_mode(ours_release) == "release"
    (ours_release / META_FILE).write_text(json.dumps({**meta, "resize_mode": "bogus"}))
    with pytest.raises(ModelLoadError, match="resize_mode"):
        DepthVLMPipeline.from_config(cfg.replace(model_path=str(ours_release)))


@pytest.fixture(scope="module")
def release_pipe(tiny_model_and_tokenizer):
    model, tok = tiny_model_and_tokenizer
    return DepthVLMPipeline(model, tok, DepthVLMConfig(head_backend="torch", resize_mode="release",
                                                       canonical_fx=1000.0, min_depth=0.0,
                                                       max_depth=10000.0))


def test_release_depth_is_the_head_output_unscaled(release_pipe):
    pipe = release_pipe
    rgb, intr = _scene(320, 240, seed=3), Intrinsics(500.0, 500.0, 161.0, 118.0, 320, 240)
    frame = pipe.process_frame(rgb, intr, keep_context=False)
    plan = frame.plan
    # 640x480 canonical -> 644x476 (28s) -> 640x480 (32s): 300 tokens, no correction.
    assert plan.steps == ((640, 480, "bilinear"), (644, 476, "bicubic"))
    assert (plan.model_width, plan.model_height, plan.depth_scale) == (640, 480, 1.0)
    mi = pipe.prepare(rgb, intr)
    ids = torch.tensor([pipe.prompt_ids(mi.plan.num_tokens)])
    with torch.no_grad():
        head = pipe.model.predict_depth(pipe.model.encode(ids, mi.pixel_values,
                                                          mi.image_grid_thw))
    assert head.shape[-2:] == (480, 640)
    # The only step after the head is the bilinear map back to the input resolution.
    want = F.interpolate(head[:, None].float(), size=(240, 320), mode="bilinear",
                         align_corners=False)[0, 0].numpy()
    assert np.isfinite(frame.depth).all()
    np.testing.assert_allclose(frame.depth, want, rtol=1e-6, atol=0)


def test_release_scales_depth_only_for_a_token_cap(release_pipe, constant_head):
    """A head reading 4 m gives exactly 4 m in release mode; only a budget below the release
    size shrinks the image further, and then the depth gets that shrink's exact factor."""
    pipe = release_pipe
    rgb, intr = _scene(320, 240, seed=4), Intrinsics(500.0, 500.0, 159.5, 119.5, 320, 240)
    capped_pipe = DepthVLMPipeline(pipe.model, pipe.tokenizer,
                                   pipe.config.replace(max_image_tokens=75))
    with constant_head(pipe.model, 4.0):
        free = pipe.process_frame(rgb, intr, keep_context=False)
        capped = capped_pipe.process_frame(rgb, intr, keep_context=False)
    np.testing.assert_allclose(free.depth, 4.0, rtol=1e-6)
    p = capped.plan
    # 20x15 tokens scaled by sqrt(75/300) = 0.5 round to 10x8 = 80, shaved to 9x8 = 72.
    assert (p.model_width, p.model_height) == (288, 256)
    assert p.steps == free.plan.steps  # same chain up to the last resample
    assert p.depth_scale == pytest.approx(0.5 * (288 / 640 + 256 / 480))
    np.testing.assert_allclose(capped.depth, 4.0 * p.depth_scale, rtol=1e-6)
