"""Frames of several cameras in one model pass: the same depth, answers and caches as alone."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from depthvlm_ros.core.camera import Intrinsics
from depthvlm_ros.core.config import DepthVLMConfig
from depthvlm_ros.core.errors import InputError
from depthvlm_ros.core.pipeline import DepthVLMPipeline, split_cache

QUESTION = "How far is the point at pixel (10, 20)?"


@pytest.fixture(scope="module")
def pipe(tiny_model_and_tokenizer):
    model, tok = tiny_model_and_tokenizer
    return DepthVLMPipeline(model, tok, DepthVLMConfig(head_backend="torch", canonical_fx=300.0,
                                                   max_depth=10000.0))


def _frame(seed, w=160, h=120, fx=200.0):
    rgb = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    return rgb, Intrinsics(fx, fx, w / 2 - 0.5, h / 2 - 0.5, w, h)


def test_batched_frames_equal_frames_run_alone(pipe):
    """Three same-size frames share one pass, a wider view runs in its own; every depth map,
    first-token logit row and greedy answer equals the one of the frame alone."""
    frames = [_frame(1), _frame(2), _frame(3), _frame(4, w=320, h=120)]
    calls = []
    hook = pipe.model.model.visual.register_forward_hook(lambda *a: calls.append(1))
    try:
        batched = pipe.process_frames(frames)
    finally:
        hook.remove()
    assert len(calls) == 2, "same-size frames must share one vision pass"
    assert [r.batch_size for r in batched] == [3, 3, 3, 1]
    for (rgb, intr), got in zip(frames, batched):
        alone = pipe.process_frame(rgb, intr)
        assert got.depth.shape == (intr.height, intr.width)
        np.testing.assert_allclose(got.depth, alone.depth, rtol=1e-5, atol=1e-6)
        a = pipe.answer(got.context, QUESTION, max_new_tokens=8)
        b = pipe.answer(alone.context, QUESTION, max_new_tokens=8)
        torch.testing.assert_close(a.first_logits, b.first_logits, rtol=1e-4, atol=1e-5)
        assert a.token_ids == b.token_ids
        # Each context holds one row of its own, restored after the answer.
        assert got.context.cache.get_seq_length() == got.context.prefix_len
        assert got.context.cache.layers[0].keys.shape[0] == 1


def test_a_bad_frame_does_not_hold_back_the_others(pipe):
    good = _frame(5)
    results = pipe.process_frames([good, (good[0][..., :2].copy(), good[1]), _frame(6)])
    assert isinstance(results[1], InputError)
    assert [r.batch_size for r in (results[0], results[2])] == [2, 2]
    np.testing.assert_allclose(results[0].depth, pipe.process_frame(*good).depth,
                               rtol=1e-5, atol=1e-6)


def test_process_frame_raises_what_process_frames_returns(pipe):
    rgb, intr = _frame(7)
    with pytest.raises(InputError, match="RGB"):
        pipe.process_frame(rgb[..., :2].copy(), intr)


def test_split_cache_copies_rows(pipe):
    frames = [_frame(8), _frame(9)]
    mi = pipe.prepare(*frames[0])
    ids = torch.tensor([pipe.prompt_ids(mi.plan.num_tokens)] * 2)
    pixels = torch.cat([pipe.prepare(*f).pixel_values for f in frames])
    grid = torch.cat([mi.image_grid_thw] * 2)
    with torch.inference_mode():
        enc = pipe.model.encode(ids, pixels, grid, use_cache=True)
    parts = split_cache(enc.cache, 2)
    for row, part in enumerate(parts):
        for whole, own in zip(enc.cache.layers, part.layers):
            torch.testing.assert_close(own.keys, whole.keys[row:row + 1], rtol=0, atol=0)
            assert own.keys.data_ptr() != whole.keys[row:row + 1].data_ptr()


def test_memory_estimate_counts_batched_passes(tiny_model_and_tokenizer):
    from depthvlm_ros.core.check import estimate_memory

    config = tiny_model_and_tokenizer[0].config
    one = estimate_memory(config, 10**6, torch.float32, 300, frame_history=12)
    three = estimate_memory(config, 10**6, torch.float32, 300, frame_history=12, batch_frames=3)
    # The batched pass's own cache (3 frames) until it is split, and 3 frames of activations.
    assert three.frame_history == 15 and three.kv_cache == one.kv_cache * 15 // 12
    from depthvlm_ros.core.check.memory import _RUNTIME_BYTES

    per_frame = one.activations - _RUNTIME_BYTES
    assert three.activations == 3 * per_frame + _RUNTIME_BYTES


def test_the_load_is_sized_for_every_camera_and_the_batch(monkeypatch):
    """from_config asks the folder check for frame_history per camera and the batch it runs."""
    from depthvlm_ros.core import check
    from depthvlm_ros.core.errors import ModelLoadError

    seen = {}

    class Refused:
        warnings = ()

        def raise_if_failed(self):
            raise ModelLoadError("stop after the check")

    def fake_validate(folder, **kwargs):
        seen.update(kwargs)
        return Refused()

    monkeypatch.setattr(check, "validate_model_folder", fake_validate)
    cfg = DepthVLMConfig(model_path="embedded", cameras="front,left,arm", frame_history=4,
                         batch_frames=8, head_backend="torch")
    with pytest.raises(ModelLoadError, match="stop after the check"):
        DepthVLMPipeline.from_config(cfg)
    assert seen["frame_history"] == 12 and seen["batch_frames"] == 3
