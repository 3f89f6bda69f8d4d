"""Token geometry comes from the model: 32-pixel tokens (patch 16 x merge 2, DepthVLM-4B) and
16-pixel tokens (patch 8 x merge 2, small embedded models) through plans, preprocessing, the
model, the pipeline, training crops and the head export."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from depthvlm_ros.core import export as ex
from depthvlm_ros.core.camera import (TOKEN_PIXELS, Intrinsics, ResizePlan, check_token_pixels,
                                      plan_canonical_resize, plan_release_resize, plan_resize,
                                      token_pixels_of, vision_patching)
from depthvlm_ros.core.check import validate_model_folder
from depthvlm_ros.core.config import DepthVLMConfig
from depthvlm_ros.core.depth_head import DPTDepthHead
from depthvlm_ros.core.errors import InputError
from depthvlm_ros.core.folders import make_tiny_model, read_preprocessor, write_model_folder
from depthvlm_ros.core.pipeline import DepthVLMPipeline
from depthvlm_ros.core.preprocess import prepare_image
from depthvlm_ros.core.train.config import ARCHITECTURES
from depthvlm_ros.core.train.data import AugmentConfig, SampleBuilder, TextMix

#: (patch_size, token pixels): Qwen3-VL's geometry and the 16-pixel-token one.
GEOMETRIES = [(16, 32), (8, 16)]

#: A 160x120 camera with fx 100 at canonical fx 100: the image is its own canonical image.
INTR = Intrinsics(100.0, 100.0, 79.5, 59.5, 160, 120)


@pytest.fixture(scope="module", params=GEOMETRIES, ids=["32px", "16px"])
def geometry_model(request):
    """(model, tokenizer, patch_size, token_pixels) of a tiny random model."""
    patch, tp = request.param
    model, tok = make_tiny_model(0, patch_size=patch, **ARCHITECTURES["test"])
    return model.eval(), tok, patch, tp


def _rgb(w: int = 160, h: int = 120, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _pipe(model, tok) -> DepthVLMPipeline:
    return DepthVLMPipeline(model, tok, DepthVLMConfig(canonical_fx=100.0, device="cpu",
                                                       head_backend="torch"))


def test_the_model_reports_its_token_size(geometry_model):
    model, _, patch, tp = geometry_model
    assert vision_patching(model.config) == (patch, 2)
    assert token_pixels_of(model.config) == model.token_pixels == tp
    assert model.depth_head.token_pixels == tp
    # A config.json dict gives the same, and one without patch/merge is Qwen3-VL's.
    assert token_pixels_of(model.config.to_dict()) == tp
    assert token_pixels_of({"vision_config": {}}) == TOKEN_PIXELS == 32


@pytest.mark.parametrize("mode", ["metric", "release"])
@pytest.mark.parametrize("tp", [32, 16])
def test_plans_are_whole_tokens_of_the_given_size(mode, tp):
    for intr in (INTR, Intrinsics(600.0, 610.0, 319.5, 239.5, 640, 480),
                 Intrinsics(1000.0, 1000.0, 959.5, 539.5, 1920, 1080)):
        plan = plan_resize(intr, mode, 1000.0, max_tokens=2000, token_pixels=tp)
        assert plan.token_pixels == tp and plan.mode == mode
        assert plan.model_width % tp == 0 and plan.model_height % tp == 0
        assert (plan.grid_w, plan.grid_h) == (plan.model_width // tp, plan.model_height // tp)
        assert 4 <= plan.num_tokens <= 2000


def test_16_pixel_tokens_give_four_times_the_grid_at_the_same_size():
    big, small = (plan_canonical_resize(INTR, 100.0, token_pixels=tp) for tp in (32, 16))
    assert (small.model_width, small.model_height) == (big.model_width, big.model_height)
    assert (small.grid_w, small.grid_h) == (2 * big.grid_w, 2 * big.grid_h)
    # The release chain's processor step rounds to the token size; the 28 step stays.
    rel16 = plan_release_resize(INTR, 100.0, token_pixels=16)
    assert rel16.model_width % 16 == 0 and rel16.steps[-1][0] % 28 == 0


def test_bad_token_sizes_are_refused():
    for bad in (0, -32, 31, 16.0, True, "32"):
        with pytest.raises(InputError, match="token size"):
            check_token_pixels(bad)
        with pytest.raises(InputError):
            plan_canonical_resize(INTR, token_pixels=bad)
    with pytest.raises(InputError):
        ResizePlan(160, 128, 1.0, "metric", (), 7)
    # Positional plans written before the field existed keep 32-pixel tokens.
    assert ResizePlan(160, 128, 1.0, "metric", ()).grid_w == 5


def test_prepare_image_lays_out_the_models_patches(geometry_model):
    model, tok, patch, tp = geometry_model
    mi = prepare_image(_rgb(), INTR, 100.0, patch_size=patch, merge_size=2)
    plan = mi.plan
    assert plan.token_pixels == tp
    h, w = plan.model_height, plan.model_width
    assert mi.pixel_values.shape == ((h // patch) * (w // patch), 3 * 2 * patch * patch)
    assert mi.image_grid_thw.tolist() == [[1, h // patch, w // patch]]
    # Every merge window of 2 x 2 patch rows is one LLM image token.
    assert mi.pixel_values.shape[0] // 4 == plan.grid_h * plan.grid_w
    ids = _pipe(model, tok).prompt_ids(plan.num_tokens)
    assert ids.count(model.config.image_token_id) == plan.grid_h * plan.grid_w
    # A plan for the other geometry is refused instead of mis-cut.
    other = plan_canonical_resize(INTR, 100.0, token_pixels=48 - tp)
    with pytest.raises(InputError, match="tokens"):
        prepare_image(_rgb(), INTR, 100.0, plan=other, patch_size=patch, merge_size=2)


def test_encode_and_depth_follow_the_token_size(geometry_model):
    model, tok, patch, tp = geometry_model
    mi = prepare_image(_rgb(), INTR, 100.0, patch_size=patch, merge_size=2)
    ids = torch.tensor([_pipe(model, tok).prompt_ids(mi.plan.num_tokens)])
    with torch.no_grad():
        enc = model.encode(ids, mi.pixel_values, mi.image_grid_thw)
        depth = model.predict_depth(enc)
    gh, gw = enc.grid_hw
    assert (gh, gw) == (mi.plan.grid_h, mi.plan.grid_w)
    assert depth.shape == (1, tp * gh, tp * gw) == (1, mi.plan.model_height, mi.plan.model_width)
    assert torch.isfinite(depth).all()
    # The release calling convention defaults to the same size.
    feats = [f.reshape(1, gh * gw, -1) for f in enc.deepstack + [enc.image_hidden]]
    with torch.no_grad():
        assert model.depth_head.forward_tokens(feats, gh, gw).shape == depth.shape
        assert model.depth_head.forward_tokens(feats, gh, gw, token_pixels=8).shape == \
            (1, 8 * gh, 8 * gw)


def test_saved_folder_keeps_its_geometry(geometry_model, tmp_path):
    model, tok, patch, tp = geometry_model
    folder = write_model_folder(model, tok, tmp_path / "m")
    pre = read_preprocessor(folder)
    assert (pre["patch_size"], pre["merge_size"]) == (patch, 2)
    assert validate_model_folder(folder, device="none").ok
    assert ex.load_head_from_folder(folder).token_pixels == tp
    # A processor that cuts other patches than the model's tower is caught by the check.
    bad = json.loads((folder / "preprocessor_config.json").read_text())
    bad["patch_size"] = 24 - patch
    (folder / "preprocessor_config.json").write_text(json.dumps(bad))
    report = validate_model_folder(folder, device="none")
    assert not report.ok and "does not match vision_config.patch_size" in str(report.errors)


def _predict_from_folder(model, tok, folder):
    write_model_folder(model, tok, folder)
    pipe = DepthVLMPipeline.from_config(DepthVLMConfig(model_path=str(folder), device="cpu",
                                                       canonical_fx=100.0, head_backend="torch"))
    return pipe.predict(_rgb(), INTR)


def test_pipeline_predicts_at_the_input_size_with_32_pixel_tokens(tmp_path):
    model, tok = make_tiny_model(0, **ARCHITECTURES["test"])
    pred = _predict_from_folder(model, tok, tmp_path / "m32")
    assert pred.depth.shape == (120, 160) and np.isfinite(pred.depth).all()
    assert pred.frame.plan.token_pixels == 32


def test_pipeline_predicts_at_the_input_size_with_16_pixel_tokens(tmp_path):
    model, tok = make_tiny_model(0, patch_size=8, **ARCHITECTURES["test"])
    pred = _predict_from_folder(model, tok, tmp_path / "m16")
    assert pred.depth.shape == (120, 160) and np.isfinite(pred.depth).all()
    assert pred.frame.plan.token_pixels == 16
    assert pred.frame.plan.num_tokens == 4 * (160 // 32) * (128 // 32)


def test_training_crops_are_whole_tokens_of_the_model(geometry_model):
    model, tok, patch, tp = geometry_model
    pipe = _pipe(model, tok)
    builder = SampleBuilder(pipe.prompt_ids, tok, tok.convert_tokens_to_ids("<|im_end|>"), 100.0,
                            64, AugmentConfig(), TextMix(), patch_size=patch, merge_size=2)
    assert builder.token_pixels == tp
    window, crop_intr, plan = builder.crop_plan(INTR, (2, 3), np.random.default_rng(0))
    assert plan.token_pixels == tp and (plan.grid_h, plan.grid_w) == (2, 3)
    assert (plan.model_width, plan.model_height) == (3 * tp, 2 * tp)
    # At canonical fx = fx the window is the model image itself.
    assert window[2:] == (3 * tp, 2 * tp) == (crop_intr.width, crop_intr.height)
    x0, y0, cw, ch = window
    crop = np.ascontiguousarray(_rgb()[y0:y0 + ch, x0:x0 + cw])
    mi = prepare_image(crop, crop_intr, 100.0, plan=plan, patch_size=patch, merge_size=2)
    assert mi.pixel_values.shape[0] == 4 * 2 * 3


def test_export_sizes_follow_the_heads_token_size(tmp_path):
    head = DPTDepthHead(32, 16, (8, 16, 32, 32), token_pixels=16).eval()
    assert ex.head_token_pixels(head) == 16
    p16, p32 = ex.default_profile(1280, 16), ex.default_profile(1280)
    assert p16.out_min == (16, 16) and p16.out_max == (16 * 64, 16 * 64)
    assert p16.opt_grid == ex.canonical_grid(max_tokens=1280, token_pixels=16)
    # The 32-pixel profile's key is what it was before token_pixels existed: cached engines
    # keep matching; another token size is another key.
    assert "token_pixels" not in p32.as_dict() and p16.as_dict()["token_pixels"] == 16
    assert ex.canonical_grid() == p32.opt_grid == (30, 40)
    # verify_runtime and the benchmark probe the model image's size: 16 x the grid here.
    seen = []

    def runtime(*args):
        seen.append(tuple(args[4]))
        return head(*args)

    ex.verify_runtime(runtime, head, grid=(3, 4))
    assert seen == [(48, 64)]
    rows = ex.benchmark_head_backends(head, grid=(2, 3), repeats=1, warmup=0, backends=("torch",),
                                      cache_dir=tmp_path, print_table=False)
    assert rows[0]["out_hw"] == [32, 48]


def test_onnx_manifest_records_the_token_size_and_old_ones_read_as_32(tmp_path):
    head = DPTDepthHead(32, 16, (8, 16, 32, 32), token_pixels=16).eval()
    path, manifest = ex.cached_head_onnx(head, tmp_path)
    assert manifest["token_pixels"] == 16 == ex.manifest_token_pixels(manifest)
    assert ex.manifest_token_pixels({}) == 32
    # The same weights with 32-pixel tokens do not reuse the 16-pixel export's record...
    head32 = DPTDepthHead(32, 16, (8, 16, 32, 32)).eval()
    head32.load_state_dict(head.state_dict())
    _, again = ex.cached_head_onnx(head32, tmp_path)
    assert again["token_pixels"] == 32 and again["created_utc"] >= manifest["created_utc"]
    # ...and a record written before the key existed is read as 32 and reused.
    side = path.with_suffix(".json")
    old = json.loads(side.read_text())
    del old["token_pixels"]
    side.write_text(json.dumps(old))
    _, reused = ex.cached_head_onnx(head32, tmp_path)
    assert "token_pixels" not in reused
