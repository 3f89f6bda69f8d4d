"""DepthVLM-Bench JSONL reader: the authors' format, our extra fields, and clear errors."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from PIL import Image

from depthvlm_ros.core.bench.jsonl import (BenchRecord, apply_gt_masks, load_gt_depth, load_rgb,
                                           read_jsonl)
from depthvlm_ros.core.errors import AnnotationError


def _files(root, w=8, h=6):
    (root / "rgb").mkdir(parents=True, exist_ok=True)
    (root / "depth").mkdir(exist_ok=True)
    Image.fromarray(np.full((h, w, 3), 90, np.uint8)).save(root / "rgb" / "a.jpg")
    depth_mm = (np.arange(w * h, dtype=np.uint16).reshape(h, w) * 100 + 500)
    Image.fromarray(depth_mm).save(root / "depth" / "a.png")
    return depth_mm


def _line(**over):
    rec = {"scene_id": "s1", "image": "rgb/a.jpg", "depth_path": "depth/a.png",
           "depth_scale": 1000.0, "original_rgb_size": [8, 6], "original_depth_size": [8, 6],
           "original_fx": 1430.94, "canonical_fx": 1000.0, "canonical_size": [6, 4],
           "prompt": "Given this image, estimate the metric depth.", "solution": "OK.",
           "pixel_coords": [[1, 2], [7, 5]], "depth": [1.021, 0.785], "depth_type": "z_depth"}
    rec.update(over)
    return json.dumps({k: v for k, v in rec.items() if v is not ...})


def _write(path, *lines):
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_reads_the_authors_format(tmp_path):
    _files(tmp_path)
    f = _write(tmp_path / "ann.jsonl", _line(), "", _line(image="/rgb/a.jpg"))
    recs = read_jsonl(f)
    assert len(recs) == 2  # the blank line is skipped
    r = recs[0]
    assert isinstance(r, BenchRecord)
    assert r.image == tmp_path / "rgb" / "a.jpg"
    assert r.depth_path == tmp_path / "depth" / "a.png"
    assert r.original_fx == 1430.94 and r.canonical_fx == 1000.0
    assert r.canonical_size == (6, 4) and r.original_rgb_size == (8, 6)
    assert r.pixel_coords == ((1.0, 2.0), (7.0, 5.0)) and r.depth == (1.021, 0.785)
    assert r.depth_type == "z_depth" and r.extra == {"scene_id": "s1"}
    assert r.source == f"{f}:1" and recs[1].source == f"{f}:3"
    # A leading slash is relative to the root, as the reference's lstrip("/") join.
    assert recs[1].image == tmp_path / "rgb" / "a.jpg"
    assert r.fy is None and r.cx is None and r.dataset is None


def test_tolerates_synthetic_generator_fields_and_defaults(tmp_path):
    _files(tmp_path)
    f = _write(tmp_path / "ann.jsonl",
               _line(fy=1431.5, cx=3.5, cy=2.5, dataset="synthetic_indoor", qa_type="point",
                     prompt=..., solution=..., depth_scale=..., canonical_fx=..., depth_type=...))
    r = read_jsonl(f)[0]
    assert (r.fy, r.cx, r.cy) == (1431.5, 3.5, 2.5)
    assert r.dataset == "synthetic_indoor" and r.qa_type == "point"
    assert r.depth_scale == 1000.0 and r.canonical_fx == 1000.0 and r.depth_type == "z_depth"
    assert "metric depth" in r.prompt


def test_roots_override_the_jsonl_folder(tmp_path):
    _files(tmp_path / "data")
    (tmp_path / "ann").mkdir()
    f = _write(tmp_path / "ann" / "x.jsonl", _line())
    with pytest.raises(AnnotationError, match="image not found"):
        read_jsonl(f)
    r = read_jsonl(f, image_root=tmp_path / "data")[0]
    assert r.depth_path == tmp_path / "data" / "depth" / "a.png"
    assert read_jsonl(f, check_files=False)[0].image == tmp_path / "ann" / "rgb" / "a.jpg"


def test_limit(tmp_path):
    _files(tmp_path)
    f = _write(tmp_path / "ann.jsonl", *[_line()] * 5)
    assert len(read_jsonl(f, limit=2)) == 2


@pytest.mark.parametrize("line,pattern", [
    ("{not json", r":2: invalid JSON"),
    ("[1, 2]", r":2: expected a JSON object"),
    (_line(image=...), r":2: missing required field 'image'"),
    (_line(original_fx=...), r":2: missing required field 'original_fx'"),
    (_line(original_fx="1000"), r":2: field 'original_fx' must be a finite number"),
    (_line(original_fx=-5), r":2: field 'original_fx' must be > 0"),
    (_line(original_fx=True), r":2: field 'original_fx' must be a finite number"),
    (_line(depth=[1.0]), r":2: 2 pixel_coords but 1 depth values"),
    (_line(depth=["1.0", 2.0]), r":2: depth\[0\] must be a finite number"),
    (_line(depth=...), r":2: 'pixel_coords' and 'depth' must be given together"),
    (_line(pixel_coords=[[1], [2, 3]]), r":2: pixel_coords\[0\] must be \[col, row\]"),
    (_line(canonical_size=[6.5, 4]), r":2: field 'canonical_size' must be \[width, height\]"),
    (_line(canonical_size=[6, 0]), r":2: field 'canonical_size' must be \[width, height\]"),
    (_line(image=3), r":2: field 'image' must be a string"),
    ('{"image": "rgb/a.jpg", "original_fx": NaN, "depth_path": "depth/a.png"}',
     r":2: invalid JSON: non-finite"),
    (_line(depth_path=..., pixel_coords=..., depth=...), r":2: needs 'depth_path' or"),
    (_line(depth_path="depth/missing.png"), r":2: depth map not found"),
    (_line(depth_format="exr"), r":2: unknown depth_format"),
    (_line(original_fx=10 ** 400), r":2: field 'original_fx' must be a finite number"),
])
def test_malformed_lines_name_file_and_line(tmp_path, line, pattern):
    _files(tmp_path)
    f = _write(tmp_path / "ann.jsonl", _line(), line)
    with pytest.raises(AnnotationError, match=re.escape(str(f)) + pattern):
        read_jsonl(f)


def test_file_level_errors(tmp_path):
    with pytest.raises(AnnotationError, match="annotation file not found"):
        read_jsonl(tmp_path / "nope.jsonl")
    with pytest.raises(AnnotationError, match="contains no records"):
        read_jsonl(_write(tmp_path / "empty.jsonl", "", "  "))
    (tmp_path / "bin.jsonl").write_bytes(b'{"image": "\xff"}\n')
    with pytest.raises(AnnotationError, match=r"bin.jsonl:1: not valid UTF-8"):
        read_jsonl(tmp_path / "bin.jsonl")


def test_load_rgb_and_gt_depth(tmp_path):
    depth_mm = _files(tmp_path)
    r = read_jsonl(_write(tmp_path / "ann.jsonl", _line()))[0]
    rgb = load_rgb(r)
    assert rgb.shape == (6, 8, 3) and rgb.dtype == np.uint8
    gt = load_gt_depth(r)
    assert gt.dtype == np.float32
    np.testing.assert_allclose(gt, depth_mm / 1000.0, rtol=1e-6)


def test_gt_masks_and_npy_depth(tmp_path):
    depth_mm = _files(tmp_path)
    mask = np.full((6, 8), 255, np.uint8)
    mask[0, :] = 0
    Image.fromarray(mask).save(tmp_path / "mask.png")
    np.save(tmp_path / "d.npy", depth_mm.astype(np.float32))
    f = _write(tmp_path / "ann.jsonl", _line(mask_valid_path="mask.png", depth_path="d.npy"))
    rec = read_jsonl(f)[0]
    gt = load_gt_depth(rec)
    assert (gt[0] == 0).all() and (gt[1:] > 0).all()
    # The sparse protocol reads GT unmasked (as the authors' sparse branch); masking later gives
    # the same map and leaves the unmasked one untouched.
    raw = load_gt_depth(rec, masks=False)
    assert (raw > 0).all()
    masked = apply_gt_masks(rec, raw)
    np.testing.assert_array_equal(masked, gt)
    assert (raw > 0).all()
    no_mask = read_jsonl(_write(tmp_path / "b.jsonl", _line(depth_path="d.npy")))[0]
    assert apply_gt_masks(no_mask, raw) is raw


def test_unreadable_files_raise_annotation_error(tmp_path):
    _files(tmp_path)
    (tmp_path / "rgb" / "bad.jpg").write_bytes(b"not an image")
    (tmp_path / "depth" / "bad.png").write_bytes(b"nope")
    rgb_bad = read_jsonl(_write(tmp_path / "a.jsonl", _line(image="rgb/bad.jpg")))[0]
    with pytest.raises(AnnotationError, match=r"a.jsonl:1: cannot read image"):
        load_rgb(rgb_bad)
    d_bad = read_jsonl(_write(tmp_path / "b.jsonl", _line(depth_path="depth/bad.png")))[0]
    with pytest.raises(AnnotationError, match=r"b.jsonl:1: cannot read depth map"):
        load_gt_depth(d_bad)


# ---------------------------------------------------------------- fuzz: parse or AnnotationError

_json_leaf = st.one_of(st.none(), st.booleans(), st.integers(-10 ** 30, 10 ** 30),
                       st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=8))
_json = st.recursive(_json_leaf, lambda c: st.one_of(st.lists(c, max_size=4),
                                                    st.dictionaries(st.text(max_size=6), c,
                                                                    max_size=4)), max_leaves=12)
_field = st.sampled_from(["image", "depth_path", "depth_scale", "original_fx", "canonical_fx",
                          "canonical_size", "prompt", "solution", "pixel_coords", "depth",
                          "depth_type", "original_rgb_size", "fy", "cx", "cy",
                          "mask_valid_path", "depth_format", "dataset", "qa_type"])


@st.composite
def _fuzzed_line(draw):
    kind = draw(st.integers(0, 3))
    if kind == 0:
        return draw(st.text(max_size=40))  # arbitrary text
    if kind == 1:
        return json.dumps(draw(_json))  # arbitrary JSON
    base = json.loads(_line())
    for _ in range(draw(st.integers(1, 3))):  # a valid record with fields replaced or removed
        key = draw(_field)
        if draw(st.booleans()):
            base[key] = draw(_json)
        else:
            base.pop(key, None)
    text = json.dumps(base)
    if kind == 3 and text:  # and maybe truncated
        text = text[: draw(st.integers(0, len(text)))]
    return text


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=st.lists(_fuzzed_line(), min_size=1, max_size=3))
def test_fuzz_parses_or_raises_annotation_error(tmp_path, lines):
    _files(tmp_path)
    f = tmp_path / "fuzz.jsonl"
    f.write_text("\n".join(lines), encoding="utf-8")
    try:
        recs = read_jsonl(f)
    except AnnotationError as exc:
        assert str(exc).startswith(str(f))  # always names the file (and the line)
        return
    for r in recs:
        assert isinstance(r, BenchRecord) and r.original_fx > 0
        assert len(r.pixel_coords) == len(r.depth)


def test_record_seed_does_not_depend_on_how_the_path_is_written(tmp_path, monkeypatch):
    """The constant baseline and the per-point baseline sample with the record's seed: the same
    file given as a relative or an absolute path must give the same figures."""
    from depthvlm_ros.core.bench.jsonl import BenchRecord

    a = BenchRecord(image=tmp_path / "x.png", depth_path=None, original_fx=500.0,
                    source=f"{tmp_path}/set/synthetic.jsonl:7")
    b = BenchRecord(image=tmp_path / "x.png", depth_path=None, original_fx=500.0,
                    source="set/synthetic.jsonl:7")
    c = BenchRecord(image=tmp_path / "x.png", depth_path=None, original_fx=500.0,
                    source="set/synthetic.jsonl:8")
    assert a.seed == b.seed != c.seed
