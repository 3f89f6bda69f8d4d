"""Metrics of DepthVLM-Bench against an independent re-implementation of the authors' arithmetic.

The ``_ref_*`` functions below are written straight from the reference (hanxunyu/DepthVLM
eval/eval.py ``compute_delta1`` and the sparse/dense branches of its main loop;
utils/datasets.py ``_load_depth`` and the sparse-points branch of ``dataset_pixel_depth_eval``),
with plain Python loops for the OpenCV resizes, so they share no code with the package.
``_ref_eval_record`` is one record through the authors' loader and eval loop (sparse branch only
for records with points, masks in the dense branch only, raw prediction indexing); the runner
tests at the end score files on disk with ``run_benchmark`` and compare with it.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from depthvlm_ros.core.bench.metrics import (DepthBins, ImageMetrics, aggregate, apply_depth_range,
                                             dense_pair, group_average, image_metrics,
                                             resize_linear, resize_nearest, sample_points,
                                             sparse_targets)
from depthvlm_ros.core.bench.answers import parse_metres, point_metrics
from depthvlm_ros.core.bench.depthlm import draw_marker


# ---------------------------------------------------------------- independent reference

def _ref_delta1(pred, gt):
    pred_flat, gt_flat = pred.ravel(), gt.ravel()
    valid = (gt_flat > 0) & (pred_flat > 0)
    if valid.sum() == 0:
        return 0.0
    p, g = pred_flat[valid], gt_flat[valid]
    return float((np.maximum(p / g, g / p) < 1.25).mean())


def _ref_nearest(a, w, h):
    # cv2 INTER_NEAREST: sx = min(floor(dx * (1 / (dw / sw))), sw - 1), same for rows.
    sh, sw = a.shape
    out = np.zeros((h, w), dtype=a.dtype)
    for y in range(h):
        sy = min(math.floor(y * (1.0 / (h / sh))), sh - 1)
        for x in range(w):
            sx = min(math.floor(x * (1.0 / (w / sw))), sw - 1)
            out[y, x] = a[sy, sx]
    return out


def _ref_linear(a, w, h):
    # cv2 INTER_LINEAR: half-pixel centres, border replicated.
    sh, sw = a.shape

    def tap(d, src, dst):
        f = (d + 0.5) * (src / dst) - 0.5
        s = math.floor(f)
        t = f - s
        if s < 0:
            return 0, 0, 0.0
        if s >= src - 1:
            return src - 1, src - 1, 0.0
        return s, s + 1, t

    out = np.zeros((h, w), dtype=np.float64)
    for y in range(h):
        y0, y1, ty = tap(y, sh, h)
        for x in range(w):
            x0, x1, tx = tap(x, sw, w)
            top = a[y0, x0] * (1 - tx) + a[y0, x1] * tx
            bot = a[y1, x0] * (1 - tx) + a[y1, x1] * tx
            out[y, x] = top * (1 - ty) + bot * ty
    return out.astype(np.float32)


def _ref_dense_delta1(pred, gt_raw, min_d, max_d, canonical_size):
    depth_m = gt_raw.astype(np.float32).copy()
    depth_m[(depth_m < min_d) | (depth_m > max_d)] = 0.0
    tw, th = canonical_size
    if depth_m.shape[1] != tw or depth_m.shape[0] != th:
        depth_m = _ref_nearest(depth_m, tw, th)
    if (depth_m > 0).sum() == 0:
        return 0.0  # the loader returns None, the eval loop then appends 0.0
    if pred.shape != depth_m.shape:
        pred = _ref_linear(pred, depth_m.shape[1], depth_m.shape[0])
    return _ref_delta1(pred, depth_m)


def _ref_sparse_delta1(pred_canon, coords, depth_jsonl, orig_size, canonical_size, gt_raw,
                       min_d, max_d):
    orig = np.array(coords, dtype=np.float64)
    w_orig, h_orig = orig_size
    w_c, h_c = canonical_size
    tr = orig.copy()
    tr[:, 0] = orig[:, 0] * (w_c / w_orig)
    tr[:, 1] = orig[:, 1] * (h_c / h_orig)
    pix = np.round(tr).astype(np.int64)
    gmap = gt_raw.astype(np.float32).copy()
    gmap[(gmap < min_d) | (gmap > max_d)] = 0.0
    gmap = _ref_nearest(gmap, w_c, h_c)
    gts = []
    for k in range(len(pix)):
        x, y = int(pix[k][0]), int(pix[k][1])
        if 0 <= x < w_c and 0 <= y < h_c:
            val = gmap[y, x]
            gts.append(val if val > 0 else depth_jsonl[k])
        else:
            gts.append(0.0)
    ph, pw = pred_canon.shape
    pa, ga = [], []
    for k in range(len(pix)):
        x, y = int(pix[k][0]), int(pix[k][1])
        if 0 <= x < pw and 0 <= y < ph:
            pa.append(pred_canon[y, x])
            ga.append(gts[k])
    return _ref_delta1(np.array(pa, dtype=np.float32), np.array(ga, dtype=np.float32))


def _ref_load_depth(depth_m, min_d, max_d, canonical_size, mask_valid=None, mask_transp=None):
    # utils/datasets.py _load_depth: masks (nearest-resized to the depth map), range, resize to
    # canonical_size (INTER_NEAREST); None when no valid pixel is left.
    depth_m = np.array(depth_m, dtype=np.float32, copy=True)
    for mask in (mask_valid, mask_transp):
        if mask is not None:
            if mask.shape[:2] != depth_m.shape[:2]:
                mask = _ref_nearest(mask, depth_m.shape[1], depth_m.shape[0])
            depth_m[mask == 0] = 0.0
    depth_m[(depth_m < min_d) | (depth_m > max_d)] = 0.0
    if canonical_size:
        tw, th = canonical_size
        if depth_m.shape[1] != tw or depth_m.shape[0] != th:
            depth_m = _ref_nearest(depth_m, tw, th)
    if (depth_m > 0).sum() == 0:
        return None
    return depth_m


def _ref_eval_record(rec, depth_m, pred_map, min_d, max_d, mask_valid=None, mask_transp=None):
    """delta1 of one record: dataset_pixel_depth_eval.__getitem__ + the eval.py loop body.

    ``rec`` is the JSONL dict, ``depth_m`` the raw map in metres, ``pred_map`` the model's output
    as the authors' eval receives it (indexed raw in the sparse branch).
    """
    canonical_size = rec.get("canonical_size")
    if "pixel_coords" in rec and "depth" in rec:
        # Sparse-points branch: no masks are passed to _load_depth here.
        orig_coords = np.array(rec["pixel_coords"], dtype=np.float64)
        gt_depths_jsonl = np.array(rec["depth"], dtype=np.float32)
        orig_rgb_size = rec.get("original_rgb_size")
        if orig_rgb_size and canonical_size:
            w_orig, h_orig = orig_rgb_size
            w_canon, h_canon = canonical_size
            transformed = orig_coords.copy()
            transformed[:, 0] = orig_coords[:, 0] * (w_canon / w_orig)
            transformed[:, 1] = orig_coords[:, 1] * (h_canon / h_orig)
            pixel_coords = np.round(transformed).astype(np.int64)
        else:
            pixel_coords = orig_coords.astype(np.int64)
        gt_map = _ref_load_depth(depth_m, min_d, max_d, canonical_size)
        assert gt_map is not None  # the reference has no GT at all then (it fails)
        map_h, map_w = gt_map.shape
        gt_from_map = []
        for k in range(len(pixel_coords)):
            x, y = int(pixel_coords[k][0]), int(pixel_coords[k][1])
            if 0 <= x < map_w and 0 <= y < map_h:
                val = gt_map[y, x]
                gt_from_map.append(val if val > 0 else gt_depths_jsonl[k])
            else:
                gt_from_map.append(0.0)
        gt_depths = np.array(gt_from_map, dtype=np.float32)
        pred_h, pred_w = pred_map.shape
        pa, ga = [], []
        for k in range(len(pixel_coords)):
            x, y = int(pixel_coords[k][0]), int(pixel_coords[k][1])
            if 0 <= x < pred_w and 0 <= y < pred_h:
                pa.append(pred_map[y, x])
                ga.append(gt_depths[k])
        return _ref_delta1(np.array(pa, dtype=np.float32), np.array(ga, dtype=np.float32))
    gt_map = _ref_load_depth(depth_m, min_d, max_d, canonical_size, mask_valid, mask_transp)
    if gt_map is None:
        return 0.0
    if pred_map.shape != gt_map.shape:
        pred_map = _ref_linear(pred_map, gt_map.shape[1], gt_map.shape[0])
    return _ref_delta1(pred_map, gt_map)


# ---------------------------------------------------------------- hand-computed cases

def test_hand_computed_metrics():
    pred = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    gt = np.array([1.0, 1.5, 2.0, 0.0, 4.0])  # 4th point invalid (gt 0)
    m = image_metrics(pred, gt)
    # ratios: 1, 4/3, 1.5, 1.25 -> < 1.25: only the first (1.25 itself fails the strict test)
    assert m.n_valid == 4
    assert m.delta1 == pytest.approx(1 / 4)
    assert m.delta2 == pytest.approx(1.0)  # all < 1.5625
    assert m.delta3 == pytest.approx(1.0)
    assert m.abs_rel == pytest.approx((0 + 0.5 / 1.5 + 1 / 2 + 1 / 4) / 4)
    assert m.rmse == pytest.approx(math.sqrt((0 + 0.25 + 1 + 1) / 4))
    d = np.log([1, 2, 3, 5]) - np.log([1, 1.5, 2, 4])
    assert m.silog == pytest.approx(100 * math.sqrt(np.mean(d ** 2) - np.mean(d) ** 2))


def test_silog_is_scale_invariant_and_zero_for_scaled_prediction():
    gt = np.array([1.0, 2.0, 7.0, 11.0])
    assert image_metrics(gt * 3.0, gt).silog == pytest.approx(0.0, abs=1e-4)
    assert image_metrics(gt * 3.0, gt).delta3 == 0.0  # but it is wrong by 3x everywhere


def test_no_valid_pixel_scores_zero_delta_and_nan_errors():
    m = image_metrics(np.array([np.nan, -1.0, 0.0]), np.array([1.0, 2.0, 3.0]))
    assert (m.delta1, m.delta2, m.delta3, m.n_valid) == (0.0, 0.0, 0.0, 0)
    assert math.isnan(m.abs_rel) and math.isnan(m.rmse) and math.isnan(m.silog)


def test_nan_prediction_is_invalid_not_wrong():
    m = image_metrics(np.array([1.0, np.nan]), np.array([1.0, 1.0]))
    assert m.n_valid == 1 and m.delta1 == 1.0


def test_per_image_average_differs_from_pixel_pooling():
    small = image_metrics(np.ones(4), np.ones(4))  # all correct, 4 pixels
    big = image_metrics(np.full(100, 2.0), np.ones(100))  # all wrong, 100 pixels
    agg = aggregate([small, big])
    assert agg.delta1 == pytest.approx(0.5)  # pooled would be 4 / 104
    assert agg.n_images == 2 and agg.n_points == 104


def test_aggregate_counts_empty_images_as_zero_for_deltas_only():
    good = image_metrics(np.ones(3), np.ones(3))
    empty = image_metrics(np.zeros(3), np.ones(3))
    agg = aggregate([good, empty])
    assert agg.delta1 == pytest.approx(0.5)
    assert agg.abs_rel == pytest.approx(0.0)  # the empty image is skipped here


def test_group_average_is_unweighted_over_datasets():
    a = aggregate([image_metrics(np.ones(3), np.ones(3))] * 9)
    b = aggregate([image_metrics(np.full(3, 2.0), np.ones(3))])
    g = group_average({"a": a, "b": b, "c": a}, ["a", "b", "missing"])
    assert g.delta1 == pytest.approx(0.5)
    assert g.n_images == 10
    assert group_average({"a": a}, ["zzz"]) is None


def test_depth_range_caps_gt_like_the_loader():
    gt = np.array([0.001, 0.05, 50.0, 120.0, 121.0, np.inf, np.nan])
    out = apply_depth_range(gt, 0.05, 120.0)
    # float32 0.05 is kept at a 0.05 bound: the comparison runs in float32 as in the reference.
    np.testing.assert_array_equal(out, np.array([0, 0.05, 50.0, 120.0, 0, 0, 0], np.float32))


def test_resizes_hand_cases():
    a = np.arange(4, dtype=np.float32).reshape(1, 4)
    np.testing.assert_array_equal(resize_nearest(a, (2, 1)), [[0, 2]])
    np.testing.assert_array_equal(resize_nearest(a, (8, 1)), [[0, 0, 1, 1, 2, 2, 3, 3]])
    # Half-pixel centres: output pixel 0 of a 2x downscale sits between inputs 0 and 1.
    np.testing.assert_allclose(resize_linear(a, (2, 1)), [[0.5, 2.5]])
    np.testing.assert_allclose(resize_linear(a, (8, 1)),
                               [[0, 0.25, 0.75, 1.25, 1.75, 2.25, 2.75, 3]])


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 9), st.integers(1, 9), st.integers(1, 12), st.integers(1, 12),
       st.integers(0, 2 ** 31 - 1))
def test_resizes_match_reference_loops(h, w, H, W, seed):
    a = np.random.default_rng(seed).uniform(0.1, 30.0, (h, w)).astype(np.float32)
    np.testing.assert_array_equal(resize_nearest(a, (W, H)), _ref_nearest(a, W, H))
    np.testing.assert_allclose(resize_linear(a, (W, H)), _ref_linear(a, W, H), rtol=1e-5)


def test_resizes_match_opencv_when_available():
    cv2 = pytest.importorskip("cv2")
    rng = np.random.default_rng(3)
    for (h, w, H, W) in [(48, 64, 100, 134), (144, 192, 100, 134), (7, 5, 13, 3)]:
        a = rng.uniform(0.1, 50, (h, w)).astype(np.float32)
        np.testing.assert_array_equal(
            resize_nearest(a, (W, H)), cv2.resize(a, (W, H), interpolation=cv2.INTER_NEAREST))
        np.testing.assert_allclose(
            resize_linear(a, (W, H)), cv2.resize(a, (W, H), interpolation=cv2.INTER_LINEAR),
            rtol=2e-5)


# ---------------------------------------------------------------- against the reference on random data

@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2 ** 31 - 1))
def test_delta1_matches_reference_on_random_arrays(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 300))
    gt = rng.uniform(0.0, 20.0, n).astype(np.float32)
    gt[rng.random(n) < 0.2] = 0.0
    pred = (gt * rng.uniform(0.6, 1.6, n)).astype(np.float32)
    pred[rng.random(n) < 0.1] = rng.choice([0.0, -1.0, np.nan])
    pred[rng.random(n) < 0.1] = rng.uniform(0.01, 30.0)
    assert image_metrics(pred, gt).delta1 == _ref_delta1(pred, gt)


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2 ** 31 - 1))
def test_dense_protocol_matches_reference(seed):
    rng = np.random.default_rng(seed)
    gh, gw = int(rng.integers(3, 14)), int(rng.integers(3, 14))
    gt_raw = rng.uniform(0.0, 15.0, (gh, gw)).astype(np.float32)
    gt_raw[rng.random((gh, gw)) < 0.2] = 0.0
    canon = (int(rng.integers(2, 18)), int(rng.integers(2, 18)))
    ph, pw = int(rng.integers(2, 16)), int(rng.integers(2, 16))
    pred = rng.uniform(0.5, 12.0, (ph, pw)).astype(np.float32)
    min_d, max_d = 0.5, 10.0
    p, g = dense_pair(pred, apply_depth_range(gt_raw, min_d, max_d), canon)
    ours = image_metrics(p, g).delta1
    ref = _ref_dense_delta1(pred, gt_raw, min_d, max_d, canon)
    assert ours == pytest.approx(ref, abs=1e-12)


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2 ** 31 - 1))
def test_sparse_protocol_matches_reference(seed):
    rng = np.random.default_rng(seed)
    ow, oh = int(rng.integers(4, 30)), int(rng.integers(4, 30))
    canon = (int(rng.integers(3, 25)), int(rng.integers(3, 25)))
    gt_raw = rng.uniform(0.0, 15.0, (oh, ow)).astype(np.float32)
    gt_raw[rng.random((oh, ow)) < 0.3] = 0.0
    n = int(rng.integers(1, 12))
    coords = np.stack([rng.integers(-1, ow + 1, n), rng.integers(-1, oh + 1, n)], 1).tolist()
    depth = rng.uniform(0.1, 15.0, n).astype(np.float32)
    pred_canon = rng.uniform(0.5, 12.0, (canon[1], canon[0])).astype(np.float32)
    min_d, max_d = 0.5, 10.0
    tg = sparse_targets(coords, depth, (ow, oh), canon, apply_depth_range(gt_raw, min_d, max_d),
                        min_d, max_d)
    pv, gv = sample_points(pred_canon, tg)
    ref = _ref_sparse_delta1(pred_canon, coords, depth, (ow, oh), canon, gt_raw, min_d, max_d)
    assert image_metrics(pv, gv).delta1 == pytest.approx(ref, abs=1e-12)


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2 ** 31 - 1))
def test_sparse_targets_match_reference_raw_prediction_and_missing_sizes(seed):
    # The prediction is indexed as given on a grid that is not canonical_size (the authors'
    # model predicts on a multiple-of-32 grid); original_rgb_size and canonical_size may be missing.
    rng = np.random.default_rng(seed)
    ow, oh = int(rng.integers(4, 30)), int(rng.integers(4, 30))
    canon = (int(rng.integers(3, 25)), int(rng.integers(3, 25))) if rng.random() < 0.8 else None
    orig = (ow, oh) if rng.random() < 0.6 else None
    gh, gw = int(rng.integers(3, 30)), int(rng.integers(3, 30))
    gt_raw = rng.uniform(0.0, 15.0, (gh, gw)).astype(np.float32)
    gt_raw[rng.random((gh, gw)) < 0.3] = 0.0
    min_d, max_d = 0.5, 10.0
    if _ref_load_depth(gt_raw, min_d, max_d, canon) is None:
        return  # the reference fails without any GT; nothing to compare
    n = int(rng.integers(1, 12))
    if orig is not None:
        coords = np.stack([rng.integers(-1, ow + 1, n), rng.integers(-1, oh + 1, n)], 1).tolist()
    else:
        # Fractional coordinates show the truncation (-0.7 -> 0, 3.9 -> 3).
        bw, bh = canon or (gw, gh)
        coords = np.stack([rng.uniform(-0.9, bw + 1, n), rng.uniform(-0.9, bh + 1, n)], 1).tolist()
    depth = np.round(rng.uniform(0.1, 15.0, n), 3).tolist()
    base = canon or orig or (gw, gh)
    pw, ph = base[0] + int(rng.integers(-2, 7)), base[1] + int(rng.integers(-2, 7))
    pred = rng.uniform(0.5, 12.0, (max(1, ph), max(1, pw))).astype(np.float32)
    rec = {"pixel_coords": coords, "depth": depth}
    if orig is not None:
        rec["original_rgb_size"] = list(orig)
    if canon is not None:
        rec["canonical_size"] = list(canon)
    tg = sparse_targets(coords, depth, orig, canon, apply_depth_range(gt_raw, min_d, max_d),
                        min_d, max_d)
    pv, gv = sample_points(pred, tg)
    ref = _ref_eval_record(rec, gt_raw, pred, min_d, max_d)
    assert image_metrics(pv, gv).delta1 == pytest.approx(ref, abs=1e-12)
    assert tg.grid_size == (tuple(canon) if canon else orig)


def test_sparse_without_original_rgb_size_truncates_and_still_uses_canonical_gt():
    # GT map 4x2 -> canonical 8x4 (nearest: each GT pixel becomes 2x2). Raw coordinate
    # (5.9, 1.2) truncates to (5, 1): canonical pixel (5, 1) = GT pixel (2, 0).
    gt = np.array([[1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0]], dtype=np.float32)
    tg = sparse_targets([[5.9, 1.2], [-0.5, 3.99]], [9.0, 9.0], None, (8, 4), gt)
    assert tg.coords.tolist() == [[5, 1], [0, 3]]
    assert tg.gt.tolist() == [3.0, 5.0]
    assert tg.grid_size == (8, 4)


def test_sparse_fallback_keeps_uncapped_jsonl_value_unless_strict():
    gt_raw = np.full((4, 4), 200.0, dtype=np.float32)  # beyond the 120 m cap everywhere
    args = ([[1, 1]], [200.0], (4, 4), None, apply_depth_range(gt_raw, 0.05, 120.0), 0.05, 120.0)
    assert sparse_targets(*args).gt.tolist() == [200.0]  # the reference's behaviour
    assert sparse_targets(*args, strict_range=True).gt.tolist() == [0.0]


def test_sparse_rounds_half_to_even_like_numpy_round():
    # 1 * 2.5 = 2.5 -> 2 (banker's rounding), 3 * 2.5 = 7.5 -> 8
    tg = sparse_targets([[1, 0], [3, 0]], [1.0, 1.0], (4, 1), (10, 1), None)
    assert tg.coords[:, 0].tolist() == [2, 8]


# ---------------------------------------------------------------- bins and the per-point baseline

def test_depth_bins_count_pixels_by_gt_depth():
    b = DepthBins(edges=(0.0, 1.0, 10.0))
    b.add(np.array([0.5, 5.0, 9.0, 50.0]), np.array([0.5, 5.0, 5.0, 40.0]))
    assert b.valid.tolist() == [1, 3]  # 40 m lands in the last bin
    assert b.delta1() == [1.0, pytest.approx(1 / 3)]


@pytest.mark.parametrize("text,expected", [
    ("2.35 m", 2.35), ("about 3 meters", 3.0), ("1,5", 1.5), ("It is 1,5 m away.", 1.5),
    ("250 cm", 2.5), ("The point is roughly 12.4 metres from the camera.", 12.4),
    ("Point 1 is 2.3 m away", 2.3), ("<answer>4.07</answer>", 4.07), ("1,500 m", 1500.0),
    ("0.8m", 0.8), ("10 ft", 3.048), (".5 m", 0.5), ("Depth: 7", 7.0),
    ("garbage", None), ("", None), ("-3 m", None), ("0 m", None), (None, None),
    ("I cannot tell.", None), ("nan", None),
])
def test_parse_metres(text, expected):
    got = parse_metres(text)
    if expected is None:
        assert got is None
    else:
        assert got == pytest.approx(expected)


def test_draw_marker_rings_the_point_and_keeps_it_visible():
    rgb = np.zeros((60, 80, 3), dtype=np.uint8)
    out = draw_marker(rgb, 40, 30, radius=6)
    assert rgb.sum() == 0  # input untouched
    assert tuple(out[30, 40]) == (0, 0, 0)  # the marked pixel itself is not painted
    assert tuple(out[30, 46]) == (255, 0, 0)  # on the ring
    assert tuple(out[30, 34]) == (255, 0, 0)
    assert tuple(out[0, 0]) == (0, 0, 0)  # far away: untouched
    # Near a corner the marker is clipped, not an error.
    draw_marker(rgb, 0, 0)
    draw_marker(rgb, 500, 500)


def test_point_metrics_count_unusable_answers_as_wrong():
    m = point_metrics([2.0, None, 1.0, 5.0], [2.0, 3.0, 1.1, 0.0])  # last point: invalid GT
    assert m.n_valid == 3
    assert m.delta1 == pytest.approx(2 / 3)
    assert m.abs_rel == pytest.approx((0 + 0.1 / 1.1) / 2)
    assert isinstance(point_metrics([None], [1.0]), ImageMetrics)
    assert point_metrics([None], [1.0]).delta1 == 0.0


# ---------------------------------------------------------------- the runner against the reference

def _write_reference_set(root, seed, n=10):
    """A small test set on disk plus what the reference needs to score each record.

    Mixes what the authors' files and eval allow: records with points (with and without
    original_rgb_size, the latter with fractional coordinates) and without points, iBims-style
    masks, GT maps at another resolution than the RGB, canonical_size sometimes missing, and
    saved predictions on a grid that is not canonical_size (larger, like the authors' 32-px grid,
    or cropped so that some points fall outside).
    """
    import json

    from PIL import Image

    rng = np.random.default_rng(seed)
    for d in ("rgb", "depth", "mask", "preds"):
        (root / d).mkdir(parents=True, exist_ok=True)
    min_d, max_d = 0.5, 10.0
    lines, cases = [], []
    i = 0
    while len(cases) < n:
        w, h = int(rng.integers(8, 20)), int(rng.integers(8, 20))
        gw, gh = int(rng.integers(6, 20)), int(rng.integers(6, 20))
        canon = [int(rng.integers(6, 24)), int(rng.integers(6, 24))] if rng.random() < 0.85 else None
        depth_mm = rng.integers(0, 12000, (gh, gw)).astype(np.uint16)
        depth_mm[rng.random((gh, gw)) < 0.2] = 0
        depth_m = depth_mm.astype(np.float32) / 1000.0  # cv2.imread(...).astype(float32) / scale
        if _ref_load_depth(depth_m, min_d, max_d, canon) is None:
            continue  # the reference's sparse branch fails without any GT
        stem = f"im{i}"
        i += 1
        rgb = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
        rgb[0, 0, 0] = len(cases)  # lets depth_fn know which image it got
        Image.fromarray(rgb).save(root / "rgb" / f"{stem}.png")
        Image.fromarray(depth_mm).save(root / "depth" / f"{stem}.png")
        rec = {"image": f"rgb/{stem}.png", "depth_path": f"depth/{stem}.png",
               "depth_scale": 1000.0, "original_fx": 500.0, "canonical_fx": 1000.0}
        if canon is not None:
            rec["canonical_size"] = canon
        mask = None
        if rng.random() < 0.5:
            mh, mw = (gh, gw) if rng.random() < 0.5 else (int(rng.integers(4, 25)), int(rng.integers(4, 25)))
            mask = np.where(rng.random((mh, mw)) < 0.4, 0, 255).astype(np.uint8)
            Image.fromarray(mask).save(root / "mask" / f"{stem}.png")
            rec["mask_valid_path"] = f"mask/{stem}.png"
        if rng.random() < 0.7:
            k = int(rng.integers(3, 15))
            if rng.random() < 0.6:
                rec["original_rgb_size"] = [w, h]
                pts = np.stack([rng.integers(-1, w + 1, k), rng.integers(-1, h + 1, k)], 1)
                rec["pixel_coords"] = pts.tolist()
            else:
                bw, bh = canon or (gw, gh)
                pts = np.stack([rng.uniform(-0.9, bw + 1, k), rng.uniform(-0.9, bh + 1, k)], 1)
                rec["pixel_coords"] = np.round(pts, 2).tolist()
            rec["depth"] = np.round(rng.uniform(0.3, 12.0, k), 3).tolist()
        base = canon or [w, h]
        pw = max(1, base[0] + int(rng.integers(-2, 7)))
        ph = max(1, base[1] + int(rng.integers(-2, 7)))
        pred_saved = rng.uniform(0.3, 12.0, (ph, pw)).astype(np.float32)
        pred_saved[rng.random((ph, pw)) < 0.05] = 0.0
        np.save(root / "preds" / f"{stem}.npy", pred_saved)
        pred_image = rng.uniform(0.3, 12.0, (h, w)).astype(np.float32)  # what depth_fn returns
        lines.append(json.dumps(rec))
        cases.append({"rec": rec, "depth_m": depth_m, "mask": mask, "pred_saved": pred_saved,
                      "pred_image": pred_image, "image_size": (w, h)})
    f = root / "nyuv2_test.jsonl"
    f.write_text("\n".join(lines) + "\n")
    return f, root / "preds", cases, (min_d, max_d)


def _ref_protocols(cases, rng_range, pred_key, resize_sparse):
    """Expected per-dataset delta1 of the three protocols from the reference record loop."""
    min_d, max_d = rng_range
    auto, sparse, dense = [], [], []
    for c in cases:
        rec = c["rec"]
        pred = c[pred_key]
        has_points = "pixel_coords" in rec
        sparse_pred = pred
        if has_points and resize_sparse:
            # Our model's map lives at the input resolution: bring it to the canonical grid,
            # where the reference's model would have predicted (without one: the grid the
            # coordinates refer to).
            grid = rec.get("canonical_size") or rec.get("original_rgb_size") or c["image_size"]
            sparse_pred = _ref_linear(pred, *grid)
        dense_rec = {k: v for k, v in rec.items() if k not in ("pixel_coords", "depth")}
        d = _ref_eval_record(dense_rec, c["depth_m"], pred, min_d, max_d, c["mask"])
        dense.append(d)
        if has_points:
            sp = _ref_eval_record(rec, c["depth_m"], sparse_pred, min_d, max_d, c["mask"])
            sparse.append(sp)
            auto.append(sp)
        else:
            auto.append(d)
    mean = lambda v: sum(v) / len(v)  # noqa: E731 - eval.py: sum(scores) / len(scores)
    return {"auto": mean(auto), "sparse": mean(sparse), "dense": mean(dense),
            "n_sparse": len(sparse), "n_dense": len(cases) - len(sparse)}


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_runner_saved_predictions_match_the_authors_eval(tmp_path, seed):
    from depthvlm_ros.core.bench.datasets import DatasetSpec
    from depthvlm_ros.core.bench.runner import run_benchmark

    f, preds, cases, rng_range = _write_reference_set(tmp_path, seed)
    spec = DatasetSpec("nyuv2", f, "indoor", *rng_range)
    res = run_benchmark([spec], predictions=preds, protocols=("auto", "sparse", "dense"),
                        constant_baseline=False, model_name="m", progress=False).results
    exp = _ref_protocols(cases, rng_range, "pred_saved", resize_sparse=False)
    assert res["metadata"]["sparse_sampling"]["used"] == "raw"
    for proto in ("auto", "sparse", "dense"):
        got = res["results"][proto]["m"]["datasets"]["nyuv2"]
        assert got["delta1"] == pytest.approx(exp[proto], abs=1e-12), proto
    assert res["results"]["auto"]["m"]["datasets"]["nyuv2"]["scored_as"] == {
        "sparse": exp["n_sparse"], "dense": exp["n_dense"]}


@pytest.mark.parametrize("seed", [4, 5])
def test_runner_depth_fn_is_resized_to_canonical_then_matches_the_authors_eval(tmp_path, seed):
    from depthvlm_ros.core.bench.datasets import DatasetSpec
    from depthvlm_ros.core.bench.runner import run_benchmark

    f, _, cases, rng_range = _write_reference_set(tmp_path, seed)
    spec = DatasetSpec("nyuv2", f, "indoor", *rng_range)

    def depth_fn(rgb, intr):
        return cases[int(rgb[0, 0, 0])]["pred_image"]

    res = run_benchmark([spec], depth_fn=depth_fn, protocols=("auto", "sparse", "dense"),
                        constant_baseline=False, model_name="m", progress=False).results
    exp = _ref_protocols(cases, rng_range, "pred_image", resize_sparse=True)
    assert res["metadata"]["sparse_sampling"] == {
        "requested": "auto", "used": "resize",
        "definition": res["metadata"]["sparse_sampling"]["definition"]}
    for proto in ("auto", "sparse", "dense"):
        got = res["results"][proto]["m"]["datasets"]["nyuv2"]
        assert got["delta1"] == pytest.approx(exp[proto], abs=1e-12), proto


def test_sparse_sampling_option_overrides_the_default(tmp_path):
    from depthvlm_ros.core.bench.datasets import DatasetSpec
    from depthvlm_ros.core.bench.runner import run_benchmark

    f, preds, cases, rng_range = _write_reference_set(tmp_path, 6)
    spec = DatasetSpec("nyuv2", f, "indoor", *rng_range)
    res = run_benchmark([spec], predictions=preds, protocols=("sparse",), sparse_sampling="resize",
                        constant_baseline=False, model_name="m", progress=False).results
    # Saved maps resized to canonical_size first, as for our own model.
    exp = _ref_protocols(cases, rng_range, "pred_saved", resize_sparse=True)
    assert res["metadata"]["sparse_sampling"]["used"] == "resize"
    assert res["results"]["sparse"]["m"]["datasets"]["nyuv2"]["delta1"] == pytest.approx(
        exp["sparse"], abs=1e-12)


def test_masks_apply_to_dense_only(tmp_path):
    # One record, points and a mask that blanks the whole map: the sparse score still reads the
    # (unmasked) map, while the dense score has no valid pixel left.
    import json

    from PIL import Image

    from depthvlm_ros.core.bench.datasets import DatasetSpec
    from depthvlm_ros.core.bench.runner import run_benchmark

    (tmp_path / "preds").mkdir()
    gt_mm = np.full((4, 6), 2000, np.uint16)
    Image.fromarray(np.zeros((4, 6, 3), np.uint8)).save(tmp_path / "a.png")
    Image.fromarray(gt_mm).save(tmp_path / "a_d.png")
    Image.fromarray(np.zeros((4, 6), np.uint8)).save(tmp_path / "a_m.png")
    np.save(tmp_path / "preds" / "a.npy", np.full((4, 6), 2.1, np.float32))
    rec = {"image": "a.png", "depth_path": "a_d.png", "mask_valid_path": "a_m.png",
           "original_fx": 500.0, "canonical_size": [6, 4], "original_rgb_size": [6, 4],
           "pixel_coords": [[1, 1], [4, 2]], "depth": [9.0, 9.0]}
    f = tmp_path / "x.jsonl"
    f.write_text(json.dumps(rec) + "\n")
    res = run_benchmark([DatasetSpec("x", f, "indoor", 0.1, 10.0)], predictions=tmp_path / "preds",
                        protocols=("auto", "sparse", "dense"), constant_baseline=False,
                        model_name="m", progress=False).results["results"]
    # The map says 2 m (pred 2.1: right); a masked map would fall back to the JSONL 9 m (wrong).
    assert res["auto"]["m"]["datasets"]["x"]["delta1"] == 1.0
    assert res["sparse"]["m"]["datasets"]["x"]["delta1"] == 1.0
    assert res["dense"]["m"]["datasets"]["x"]["delta1"] == 0.0
    assert res["dense"]["m"]["datasets"]["x"]["n_points"] == 0
