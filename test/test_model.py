"""DepthVLM model: checkpoint layout, loading an authors-style folder, one-pass equivalence."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import Qwen3VLConfig, Qwen3VLForConditionalGeneration

from depthvlm_ros.core.perf import qwen3_vl_4b_config
from depthvlm_ros.core.camera import Intrinsics
from depthvlm_ros.core.errors import ModelLoadError
from depthvlm_ros.core.model import DepthVLMForConditionalGeneration, load_depthvlm
from depthvlm_ros.core.pipeline import DepthVLMPipeline
from depthvlm_ros.core.config import DepthVLMConfig
from release_reference import reference_forward, release_key_shapes


def test_4b_state_dict_layout_is_stock_plus_release_head():
    cfg = qwen3_vl_4b_config()
    with torch.device("meta"):
        ours = DepthVLMForConditionalGeneration(cfg)
        stock = Qwen3VLForConditionalGeneration(qwen3_vl_4b_config())
    our_keys = {k: tuple(v.shape) for k, v in ours.state_dict().items()}
    stock_keys = {k: tuple(v.shape) for k, v in stock.state_dict().items()}
    head = {f"depth_head.{k}": s for k, s in release_key_shapes(2560).items()}
    assert our_keys == {**stock_keys, **head}
    # The DeepStack taps of the 4B model are ViT layers 5, 11 and 17.
    assert list(ours.model.visual.deepstack_visual_indexes) == [5, 11, 17]


@pytest.fixture(scope="module")
def authors_style_folder(tmp_path_factory, tiny_model_and_tokenizer):
    """A folder laid out like the DepthVLM release: stock Qwen3-VL weights + depth_head.*.

    Written without our model class: a stock model is saved, the head tensors (release layout,
    release channel widths) are added to the safetensors file, and config.json gets
    ``depth_head_type: dpt`` and the stock architecture name, as in the authors' folder.
    """
    _, tok = tiny_model_and_tokenizer
    src_cfg = tiny_model_and_tokenizer[0].config.to_dict()
    for k in ("depth_head_features", "depth_head_out_channels", "architectures"):
        src_cfg.pop(k, None)
    cfg = Qwen3VLConfig(**{k: v for k, v in src_cfg.items()
                           if k not in ("model_type", "transformers_version")})
    torch.manual_seed(3)
    stock = Qwen3VLForConditionalGeneration(cfg).eval()
    out = tmp_path_factory.mktemp("authors_style")
    stock.save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)
    weights = load_file(out / "model.safetensors")
    gen = torch.Generator().manual_seed(4)
    dim = cfg.text_config.hidden_size
    for k, shape in release_key_shapes(dim).items():
        weights[f"depth_head.{k}"] = torch.randn(shape, generator=gen) * 0.05
    save_file(weights, out / "model.safetensors", metadata={"format": "pt"})
    meta = json.loads((out / "config.json").read_text())
    meta["depth_head_type"] = "dpt"
    meta["architectures"] = ["Qwen3VLForConditionalGeneration"]
    (out / "config.json").write_text(json.dumps(meta))
    return out, stock


def test_authors_style_folder_loads_strictly_and_matches(authors_style_folder):
    folder, stock = authors_style_folder
    model = load_depthvlm(folder)  # raises on any missing / unexpected / mismatched key
    weights = load_file(folder / "model.safetensors")
    head_sd = {k[len("depth_head."):]: v for k, v in weights.items() if k.startswith("depth_head.")}
    for k, v in model.depth_head.state_dict().items():
        assert torch.equal(v, head_sd[k]), k

    pipe = DepthVLMPipeline(model, _tokenizer(folder), DepthVLMConfig(head_backend="torch"))
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (96, 128, 3), dtype=np.uint8)
    intr = Intrinsics(1000.0, 1000.0, 60.0, 50.0, 128, 96)
    mi = pipe.prepare(rgb, intr)
    ids = torch.tensor([pipe.prompt_ids(mi.plan.num_tokens, "How far is the wall?")])
    with torch.no_grad():
        enc = model.encode(ids, mi.pixel_values, mi.image_grid_thw)
        depth = model.predict_depth(enc)
        # The stock full forward (same weights) gives the same LLM states at the image tokens
        # and the same DeepStack features: one pass of ours is one pass of theirs.
        mm = (ids == model.config.image_token_id).int()
        ref_out = stock.model(input_ids=ids, pixel_values=mi.pixel_values,
                              image_grid_thw=mi.image_grid_thw, mm_token_type_ids=mm)
        ref_hidden = ref_out.last_hidden_state
        ref_vis = stock.model.get_image_features(mi.pixel_values, mi.image_grid_thw)
    torch.testing.assert_close(enc.hidden, ref_hidden, rtol=1e-4, atol=1e-5)
    gh, gw = enc.grid_hw
    ref_ds = [torch.cat(list(d)) for d in ref_vis.deepstack_features]
    for ours_ds, theirs in zip(enc.deepstack, ref_ds):
        torch.testing.assert_close(ours_ds.reshape(gh * gw, -1), theirs)
    feats = ref_ds + [ref_hidden[ids == model.config.image_token_id]]
    ref_depth = reference_forward(head_sd, [f[None].clone() for f in feats], gh, gw,
                                  (32 * gh, 32 * gw))
    torch.testing.assert_close(depth, ref_depth, rtol=1e-4, atol=1e-4)


def _tokenizer(folder):
    from transformers import AutoTokenizer
    return AutoTokenizer.from_pretrained(str(folder), local_files_only=True)


def test_folder_errors_are_one_clear_line(tmp_path, tiny_model_dir):
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_depthvlm(tmp_path / "nope")
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    (pickled / "config.json").write_text((tiny_model_dir / "config.json").read_text())
    (pickled / "pytorch_model.bin").write_bytes(b"\x80\x04not really")
    with pytest.raises(ModelLoadError, match="pickle"):
        load_depthvlm(pickled)
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "config.json").write_text((tiny_model_dir / "config.json").read_text())
    data = (tiny_model_dir / "model.safetensors").read_bytes()
    (corrupt / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelLoadError, match="truncated"):
        load_depthvlm(corrupt)
    badjson = tmp_path / "badjson"
    badjson.mkdir()
    (badjson / "config.json").write_text("{not json")
    with pytest.raises(ModelLoadError, match="not valid JSON"):
        load_depthvlm(badjson)


def test_missing_head_weights_are_refused(tmp_path, tiny_model_dir):
    folder = tmp_path / "headless"
    folder.mkdir()
    for f in tiny_model_dir.iterdir():
        (folder / f.name).write_bytes(f.read_bytes())
    weights = load_file(folder / "model.safetensors")
    weights = {k: v for k, v in weights.items() if not k.startswith("depth_head.scratch.refinenet1")}
    save_file(weights, folder / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ModelLoadError, match="missing_keys"):
        load_depthvlm(folder)


def test_encode_passes_an_all_ones_mask_so_repeated_positions_stay_causal(
        tiny_model_and_tokenizer):
    """Without a mask, transformers infers packed sequences from the text position row; releases
    that take the first M-RoPE row as that row see its repeats in the image block as sequence
    starts. ``encode`` passes an explicit all-ones mask, which keeps the plain causal mask."""
    from depthvlm_ros.core.model import mrope_position_ids

    model, tok = tiny_model_and_tokenizer
    pipe = DepthVLMPipeline(model, tok, DepthVLMConfig(head_backend="torch", canonical_fx=300.0))
    rgb = np.random.default_rng(7).integers(0, 256, (96, 128, 3), dtype=np.uint8)
    mi = pipe.prepare(rgb, Intrinsics(300.0, 300.0, 64.0, 48.0, 128, 96))
    ids = torch.tensor([pipe.prompt_ids(mi.plan.num_tokens)])
    seen = []
    hook = model.model.language_model.register_forward_pre_hook(
        lambda mod, args, kwargs: seen.append(kwargs.get("attention_mask")), with_kwargs=True)
    try:
        with torch.no_grad():
            enc = model.encode(ids, mi.pixel_values, mi.image_grid_thw)
    finally:
        hook.remove()
    assert len(seen) == 1 and seen[0] is not None
    assert seen[0].shape == ids.shape and bool((seen[0] == 1).all())
    # The failure the mask prevents, reproduced with this transformers by handing it the
    # temporal row as the text positions (what older releases derive from 3-row ids).
    cfg = model.config
    mask = ids == cfg.image_token_id
    with torch.no_grad():
        embeds, deepstack = model.image_features(mi.pixel_values, mi.image_grid_thw)
        inputs = model.model.get_input_embeddings()(ids).masked_scatter(mask[..., None], embeds)
        pos, _ = mrope_position_ids(ids, cfg.image_token_id, enc.grid_hw)
        pos4 = torch.cat([pos[:1], pos], 0)
        outs = [model.model.language_model(
            inputs_embeds=inputs, position_ids=pos4, attention_mask=am, use_cache=False,
            visual_pos_masks=mask, deepstack_visual_embeds=deepstack).last_hidden_state
            for am in (None, torch.ones_like(ids))]
    assert (outs[0] - enc.hidden).abs().max() > 1e-2  # packed masking: different states
    torch.testing.assert_close(outs[1], enc.hidden, rtol=1e-5, atol=1e-6)
