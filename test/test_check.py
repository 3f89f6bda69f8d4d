"""``depthvlm check`` and the memory refusal: folders validated from their headers alone.

Tiny folders are written in tmp_path (plain and sharded with an index), a fault is planted in
each, and the report must name it in exactly one error line; the memory estimate is checked
against the 4B architecture's arithmetic and the refusal against a device made small.
"""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from depthvlm_ros.cli import main as cli_main
from depthvlm_ros.core.check import (INDEX_FILE, SKIP_MEMORY_CHECK_ENV, estimate_memory,
                                     expected_weight_shapes, read_safetensors_header,
                                     validate_model_folder)
from depthvlm_ros.core.check import memory as memory_module
from depthvlm_ros.core.errors import ModelLoadError
from depthvlm_ros.core.folders import (EMBEDDED_DIR, folder_canonical_fx,
                                       write_sharded_safetensors)
from depthvlm_ros.core.model import check_model_folder, load_depthvlm
from depthvlm_ros.core.perf import qwen3_vl_4b_config

TOPICS = ("config", "weights", "tokenizer", "processor", "resize", "memory")


def _copy(src, dst):
    shutil.copytree(src, dst)
    return dst


@pytest.fixture(scope="module")
def sharded_dir(tmp_path_factory, tiny_model_dir, tiny_model_and_tokenizer):
    """The tiny model with its weights in four shards and an index, written by our streaming
    writer (the one the full-size fixture uses); no depthvlm_meta.json, as in the release."""
    model, _ = tiny_model_and_tokenizer
    out = tmp_path_factory.mktemp("sharded")
    for f in tiny_model_dir.iterdir():
        if f.suffix != ".safetensors" and f.name != "depthvlm_meta.json":
            shutil.copy(f, out / f.name)
    state = load_file(tiny_model_dir / "model.safetensors")
    total = sum(t.numel() * t.element_size() for t in state.values())
    write_sharded_safetensors([(k, tuple(v.shape), v.dtype) for k, v in state.items()], out,
                              lambda name, shape, dtype: state[name],
                              max_shard_bytes=total // 4 + 1)
    return out


def _shards(folder):
    return json.loads((folder / INDEX_FILE).read_text())["weight_map"]


def _only_error(report, *words):
    assert not report.ok
    assert len(report.errors) == 1, report.format()
    for word in words:
        assert word in report.errors[0], report.errors[0]
    return report.errors[0]


def test_good_folders_pass_every_check(tiny_model_dir, sharded_dir):
    for folder in (EMBEDDED_DIR, tiny_model_dir, sharded_dir):
        report = validate_model_folder(folder, device="cpu")
        assert report.ok, report.format()
        assert [f.topic for f in report.findings if f.level == "ok"] == list(TOPICS)
        assert len(report.format().splitlines()) <= 24  # one screen
    sharded = validate_model_folder(sharded_dir)
    assert f"{len(set(_shards(sharded_dir).values()))} shards, index consistent" in sharded.format()
    assert len(set(_shards(sharded_dir).values())) >= 4
    # Without depthvlm_meta.json a folder is the release's: release resize, focal 1000.
    assert (sharded.resize_mode, sharded.canonical_fx) == ("release", 1000.0)
    assert validate_model_folder("embedded").canonical_fx == folder_canonical_fx(EMBEDDED_DIR)


def test_sharded_folder_loads_with_the_same_weights(sharded_dir, tiny_model_and_tokenizer):
    model = load_depthvlm(sharded_dir)
    want = tiny_model_and_tokenizer[0].state_dict()
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, want[name]), name


def test_planted_wrong_shape_is_one_line(tmp_path, sharded_dir):
    folder = _copy(sharded_dir, tmp_path / "f")
    name = "depth_head.projects.0.weight"
    shard = folder / _shards(folder)[name]
    state = load_file(shard)
    want = list(state[name].shape)
    state[name] = state[name][:-1].clone()
    save_file(state, shard, metadata={"format": "pt"})
    line = _only_error(validate_model_folder(folder), "wrong shape", name, str(want))
    assert shard.name in line


def test_missing_shard_is_one_line_and_refused_by_the_loader(tmp_path, sharded_dir):
    folder = _copy(sharded_dir, tmp_path / "f")
    victim = sorted(set(_shards(folder).values()))[1]
    (folder / victim).unlink()
    _only_error(validate_model_folder(folder), "missing shard", victim)
    with pytest.raises(ModelLoadError, match=f"missing shard {victim}"):
        check_model_folder(folder)


def test_truncated_shard_is_one_line(tmp_path, sharded_dir):
    folder = _copy(sharded_dir, tmp_path / "f")
    shard = folder / sorted(set(_shards(folder).values()))[0]
    data = shard.read_bytes()
    shard.write_bytes(data[: len(data) - 100])
    assert read_safetensors_header(shard).truncated
    _only_error(validate_model_folder(folder), "truncated", shard.name)
    with pytest.raises(ModelLoadError, match="truncated"):
        load_depthvlm(folder)


def test_pickle_file_is_one_line(tmp_path, tiny_model_dir):
    folder = _copy(tiny_model_dir, tmp_path / "f")
    (folder / "pytorch_model.bin").write_bytes(b"\x80\x04not really")
    _only_error(validate_model_folder(folder), "pickle", "pytorch_model.bin")


def test_shard_index_inconsistencies(tmp_path, sharded_dir):
    extra = _copy(sharded_dir, tmp_path / "extra")
    first = sorted(set(_shards(extra).values()))[0]
    shutil.copy(extra / first, extra / "model-extra.safetensors")
    # The copy also puts every tensor of `first` in two files, but the loader never reads
    # an unindexed file, so the extra file is the one fault.
    _only_error(validate_model_folder(extra), "extra safetensors", "model-extra.safetensors")

    twice = _copy(sharded_dir, tmp_path / "twice")
    names = sorted(set(_shards(twice).values()))
    a, b = load_file(twice / names[0]), load_file(twice / names[1])
    moved = sorted(a)[0]
    save_file({**b, moved: a[moved]}, twice / names[1], metadata={"format": "pt"})
    report = validate_model_folder(twice)
    assert any("two shards" in e and moved in e for e in report.errors), report.format()


def test_config_tokenizer_and_processor_faults(tmp_path, tiny_model_dir):
    folder = _copy(tiny_model_dir, tmp_path / "ids")
    cfg = json.loads((folder / "config.json").read_text())
    cfg["image_token_id"] = cfg["image_token_id"] - 1
    (folder / "config.json").write_text(json.dumps(cfg))
    _only_error(validate_model_folder(folder), "<|image_pad|>", "config.json says")

    folder = _copy(tiny_model_dir, tmp_path / "keys")
    cfg = json.loads((folder / "config.json").read_text())
    del cfg["text_config"]["num_hidden_layers"]
    (folder / "config.json").write_text(json.dumps(cfg))
    _only_error(validate_model_folder(folder), "text_config.num_hidden_layers")

    folder = _copy(tiny_model_dir, tmp_path / "patch")
    pre = json.loads((folder / "preprocessor_config.json").read_text())
    pre["patch_size"] = 14
    (folder / "preprocessor_config.json").write_text(json.dumps(pre))
    _only_error(validate_model_folder(folder), "patch_size=14")


def test_check_command_exit_codes(tmp_path, tiny_model_dir, capsys):
    assert cli_main(["check", str(tiny_model_dir), "--device", "cpu"]) == 0
    assert "OK: 0 error(s)" in capsys.readouterr().out
    folder = _copy(tiny_model_dir, tmp_path / "f")
    (folder / "model.safetensors").unlink()
    assert cli_main(["check", str(folder)]) == 1
    assert "FAILED" in capsys.readouterr().out


def test_memory_estimate_of_the_4b_architecture():
    cfg = qwen3_vl_4b_config()
    shapes, optional = expected_weight_shapes(cfg)
    params = sum(torch.Size(s).numel() for k, s in shapes.items() if k not in optional)
    assert 4.4e9 < params < 4.5e9
    bf16 = estimate_memory(cfg, params, torch.bfloat16, image_tokens=1200, frame_history=4)
    fp32 = estimate_memory(cfg, params, torch.float32, image_tokens=1200, frame_history=4)
    assert bf16.weights == 2 * params and fp32.weights == 4 * params
    # K and V, 36 layers, 8 KV heads of 128, two bytes each: 144 KiB per token.
    assert bf16.kv_per_token == 2 * 36 * 8 * 128 * 2 == 147456
    assert bf16.kv_cache == bf16.kv_per_token * (1200 + 96) * 4
    assert fp32.total > 2 * bf16.weights
    assert "144 KiB/token" in bf16.describe()


def test_loading_is_refused_before_it_starts_when_memory_is_short(monkeypatch, tiny_model_dir):
    monkeypatch.setattr(memory_module, "available_memory", lambda device: (1 << 20, "test"))
    with pytest.raises(ModelLoadError, match="refusing to load .*not enough memory on cpu"):
        load_depthvlm(tiny_model_dir)
    report = validate_model_folder(tiny_model_dir, device="cpu")
    _only_error(report, "not enough memory")
    assert validate_model_folder(tiny_model_dir, device="none").ok  # estimate only
    monkeypatch.setenv(SKIP_MEMORY_CHECK_ENV, "1")
    assert load_depthvlm(tiny_model_dir) is not None


def test_the_pipeline_load_runs_the_folder_check_first(tmp_path, tiny_model_dir):
    """The node's configure step, replay and bench load through ``from_config``: a fault only
    the folder check sees (the weights alone would load) fails there with the check's line."""
    from depthvlm_ros.core.config import DepthVLMConfig
    from depthvlm_ros.core.pipeline import DepthVLMPipeline

    folder = _copy(tiny_model_dir, tmp_path / "patch")
    pre = json.loads((folder / "preprocessor_config.json").read_text())
    pre["patch_size"] = 14
    (folder / "preprocessor_config.json").write_text(json.dumps(pre))
    assert load_depthvlm(folder) is not None
    with pytest.raises(ModelLoadError, match="processor: .*patch_size=14"):
        DepthVLMPipeline.from_config(DepthVLMConfig(model_path=str(folder), device="cpu"))
    good = DepthVLMPipeline.from_config(DepthVLMConfig(model_path=str(tiny_model_dir),
                                                       device="cpu"))
    assert good.check_report is not None and good.check_report.ok
