"""depthvlm_ros.core.spatial: depth sampling, 3-D points, regions, what a question writes."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

from depthvlm_ros.core.camera import Intrinsics, backproject
from depthvlm_ros.core.errors import InputError
from depthvlm_ros.core.spatial import (MAX_PIXELS, points_for_pixels, sample_depth,
                                       validate_pixels)


def _ramp(h=48, w=64):
    # Distinct depth per pixel so that an off-by-one in row/column order shows up.
    v, u = np.mgrid[0:h, 0:w]
    return (1.0 + 0.01 * u + 0.1 * v).astype(np.float32)


def test_sample_depth_exact_pixel_and_rounding():
    d = _ramp()
    assert sample_depth(d, 10, 5, radius=0) == pytest.approx(d[5, 10])
    # Fractional coordinates read the pixel whose centre is nearest (centres at integers).
    assert sample_depth(d, 10.4, 4.6, radius=0) == pytest.approx(d[5, 10])
    assert sample_depth(d, 10.6, 5.4, radius=0) == pytest.approx(d[5, 11])


def test_sample_depth_median_ignores_nan_and_outliers():
    d = np.full((9, 9), 2.0, dtype=np.float32)
    d[4, 4] = np.nan          # the pointed-at pixel itself is invalid
    d[3, 3] = 50.0            # one outlier in the window
    d[5, 5] = 0.0             # non-positive counts as invalid
    assert sample_depth(d, 4, 4, radius=1) == pytest.approx(2.0)
    assert math.isnan(sample_depth(d, 4, 4, radius=0))


def test_sample_depth_outside_and_all_invalid_is_nan():
    d = _ramp()
    h, w = d.shape
    for u, v in [(-0.6, 3), (w - 0.5, 3), (3, -1), (3, h), (float("nan"), 3), (3, float("inf"))]:
        assert math.isnan(sample_depth(d, u, v)), (u, v)
    # The image edge itself is inside (pixel-centre convention), and the window is clipped.
    assert sample_depth(d, -0.4, 0, radius=0) == pytest.approx(d[0, 0])
    assert sample_depth(d, w - 1, h - 1, radius=3) == pytest.approx(
        np.median(d[h - 4:, w - 4:]))
    assert math.isnan(sample_depth(np.full((4, 4), np.nan, np.float32), 1, 1, radius=2))


def test_sample_depth_rejects_bad_arguments():
    with pytest.raises(InputError):
        sample_depth(np.zeros((2, 2, 2), np.float32), 0, 0)
    with pytest.raises(InputError):
        sample_depth(_ramp(), 0, 0, radius=-1)


def test_points_match_backproject_at_integer_pixels():
    d = _ramp()
    intr = Intrinsics(50.0, 55.0, 31.2, 22.7, 64, 48)
    cloud = backproject(d, intr)
    pixels = [(0, 0), (10, 5), (63, 47), (31, 22)]
    depths, xyz = points_for_pixels(d, intr, pixels, radius=0)
    assert depths.dtype == np.float32 and xyz.dtype == np.float32
    assert xyz.shape == (4, 3)
    for i, (u, v) in enumerate(pixels):
        assert depths[i] == pytest.approx(d[v, u])
        np.testing.assert_allclose(xyz[i], cloud[v, u], rtol=1e-5, atol=1e-6)


def test_points_fractional_pixel_uses_exact_coordinates():
    d = np.full((48, 64), 3.0, dtype=np.float32)
    intr = Intrinsics(50.0, 55.0, 31.2, 22.7, 64, 48)
    _, xyz = points_for_pixels(d, intr, [(12.25, 40.75)])
    assert xyz[0] == pytest.approx([(12.25 - 31.2) * 3 / 50, (40.75 - 22.7) * 3 / 55, 3.0],
                                   rel=1e-5)


def test_points_scale_intrinsics_to_depth_size():
    # Intrinsics of a 4x larger camera image: the answer must use them scaled to the depth.
    d = np.full((48, 64), 2.0, dtype=np.float32)
    big = Intrinsics(200.0, 220.0, 127.5, 95.5, 256, 192)
    small = big.scaled(64, 48)
    _, xyz = points_for_pixels(d, big, [(5, 7)])
    assert xyz[0, 0] == pytest.approx((5 - small.cx) * 2 / small.fx, rel=1e-5)
    assert xyz[0, 1] == pytest.approx((7 - small.cy) * 2 / small.fy, rel=1e-5)


def test_points_outside_or_invalid_are_nan_rows():
    d = _ramp()
    d[10, 10] = np.nan
    intr = Intrinsics(50.0, 50.0, 32.0, 24.0, 64, 48)
    depths, xyz = points_for_pixels(d, intr, [(100, 5), (10, 10), (3, 3)], radius=0)
    assert math.isnan(depths[0]) and np.isnan(xyz[0]).all()
    assert math.isnan(depths[1]) and np.isnan(xyz[1]).all()
    assert np.isfinite(xyz[2]).all()


def test_validate_pixels_shapes_and_limits():
    assert validate_pixels([]).shape == (0, 2)
    assert validate_pixels([(1, 2, 0)]).tolist() == [[1.0, 2.0]]
    depths, xyz = points_for_pixels(_ramp(), Intrinsics(1, 1, 0, 0, 64, 48), [])
    assert depths.shape == (0,) and xyz.shape == (0, 3)
    for bad in ([1, 2], [(1, 2, 3, 4)], [("a", "b")], [(float("nan"), 1.0)]):
        with pytest.raises(InputError):
            validate_pixels(bad)
    with pytest.raises(InputError, match="limit"):
        validate_pixels(np.zeros((MAX_PIXELS + 1, 2)))


# ------------------------------------------------------------------------------------------
# vectorised sampling, regions, question parsing

from depthvlm_ros.core.spatial import (ORIGIN_LOCATED, ORIGIN_QUERY, Region,  # noqa: E402
                                       measure_region, measure_regions, parse_question,
                                       sample_depths, validate_regions)


def _reference_sample(depth, u, v, radius):
    # The rule as first written, one pixel at a time: the vectorised one must equal it exactly.
    h, w = depth.shape
    iu, iv = math.floor(u + 0.5), math.floor(v + 0.5)
    if not (0 <= iu < w and 0 <= iv < h):
        return float("nan")
    win = depth[max(0, iv - radius):iv + radius + 1, max(0, iu - radius):iu + radius + 1]
    vals = win[np.isfinite(win) & (win > 0)]
    return float(np.median(vals)) if vals.size else float("nan")


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.uint16])
def test_sample_depths_equal_the_per_pixel_rule_bit_for_bit(dtype):
    rng = np.random.default_rng(3)
    d = (rng.random((30, 40)) * 10).astype(dtype)
    if dtype is not np.uint16:
        d[rng.random(d.shape) < 0.3] = np.nan
    d[rng.random(d.shape) < 0.1] = 0
    for radius in (0, 1, 2, 50):
        px = rng.uniform(-2, 42, (300, 2))
        got = sample_depths(d, px, radius)
        want = np.array([_reference_sample(d, u, v, radius) for u, v in px])
        np.testing.assert_array_equal(got, want)
        assert [sample_depth(d, u, v, radius) for u, v in px[:20]] == pytest.approx(
            want[:20].tolist(), nan_ok=True, abs=0, rel=0)


def test_region_measurement_matches_the_depth_inside_it():
    rng = np.random.default_rng(5)
    d = rng.uniform(0.5, 8.0, (48, 64)).astype(np.float32)
    d[rng.random(d.shape) < 0.2] = np.nan
    intr = Intrinsics(50.0, 55.0, 31.2, 22.7, 64, 48)
    roi = Region(10, 5, 20, 12)
    m = measure_region(d, intr, roi, "chair", ORIGIN_LOCATED)
    inside = d[5:17, 10:30]
    assert (m.roi, m.label, m.origin) == (roi, "chair", ORIGIN_LOCATED)
    assert m.nearest_depth == float(np.nanmin(inside))
    u, v = m.nearest_pixel
    assert d[int(v), int(u)] == np.float32(m.nearest_depth)
    assert 10 <= u < 30 and 5 <= v < 17
    cloud = backproject(d, intr)
    np.testing.assert_allclose(m.nearest_point, cloud[int(v), int(u)], rtol=1e-5)
    assert m.median_depth == pytest.approx(float(np.nanmedian(inside)), rel=1e-6)
    assert m.mean_depth == pytest.approx(float(np.nanmean(inside)), rel=1e-6)
    assert m.valid_fraction == pytest.approx(np.isfinite(inside).mean(), rel=1e-6)
    pts = cloud[5:17, 10:30][np.isfinite(inside)]
    np.testing.assert_allclose(m.centroid, pts.mean(axis=0), rtol=1e-4, atol=1e-6)
    rows, cols = np.nonzero(np.isfinite(inside))
    assert m.width_m == pytest.approx((np.ptp(cols) + 1) * m.median_depth / 50.0, rel=1e-5)
    assert m.height_m == pytest.approx((np.ptp(rows) + 1) * m.median_depth / 55.0, rel=1e-5)


def test_region_without_valid_depth_is_nan_and_zero_is_invalid():
    d = np.zeros((10, 10), np.float32)
    d[0, 0] = np.nan
    (m,) = measure_regions(d, Intrinsics(10, 10, 5, 5, 10, 10), [(0, 0, 4, 4)])
    assert not m.valid and m.valid_fraction == 0.0 and m.origin == ORIGIN_QUERY
    assert all(math.isnan(x) for x in (m.nearest_depth, m.median_depth, m.width_m, *m.centroid))


class _Roi:  # what a sensor_msgs/RegionOfInterest offers
    def __init__(self, x, y, w, h):
        self.x_offset, self.y_offset, self.width, self.height = x, y, w, h
        self.do_rectify = False


def test_validate_regions_accepts_messages_tuples_and_regions():
    got = validate_regions([_Roi(1, 2, 3, 4), (0, 0, 64, 48), Region(5, 5, 1, 1)], 64, 48)
    assert got == (Region(1, 2, 3, 4), Region(0, 0, 64, 48), Region(5, 5, 1, 1))
    assert validate_regions([], 64, 48) == ()


@pytest.mark.parametrize("bad, reason", [
    ((0, 0, 0, 5), "region 0 is empty"),
    ((0, 0, 5, 0), "region 0 is empty"),
    ((60, 0, 5, 5), "reaches outside the 64x48 image"),
    ((0, 44, 5, 5), "reaches outside"),
    ((-1, 0, 5, 5), "offsets must be >= 0"),
    ((0.5, 0, 5, 5), "whole number"),
    ((True, 0, 5, 5), "whole number"),
    ((float("nan"), 0, 5, 5), "whole number"),
    ((1, 2, 3), "4 numbers"),
    (7, "must be (x_offset"),
])
def test_validate_regions_rejects_with_a_reason(bad, reason):
    with pytest.raises(InputError, match=re.escape(reason)):
        validate_regions([bad], 64, 48)


def test_validate_regions_limit():
    with pytest.raises(InputError, match="limit"):
        validate_regions([(0, 0, 1, 1)] * 65, 64, 48)


@pytest.mark.parametrize("text, pixels", [
    ("How far is the point at pixel (u=160, v=120) from the camera?", [(160, 120, "")]),
    ("Which is nearer, the point at (u=60, v=200) or the point at (u=260, v=60)?",
     [(60, 200, ""), (260, 60, "")]),
    ("What is the distance in metres between the points (u=40, v=180) and (u=280, v=180)?",
     [(40, 180, ""), (280, 180, "")]),
    ("Two points are marked: A at pixel (u=5, v=6) and B at pixel (u=7, v=8). Which one is "
     "closer to the camera? Answer A or B.", [(5, 6, "A"), (7, 8, "B")]),
    ("Depth at pixels (1, 2) and (3.5, 4)?", [(1, 2, ""), (3.5, 4, "")]),
    ("Is (1, 2) a pixel?", []),            # a bare pair before the word "pixel" is not one
    ("Point C (u = 10.5, v = 0) please", [(10.5, 0, "C")]),
])
def test_parse_question_pixels(text, pixels):
    q = parse_question(text, 320, 240)
    assert [(p.u, p.v, p.label) for p in q.pixels] == [(float(u), float(v), lab)
                                                        for u, v, lab in pixels]
    assert q.regions == ()


def test_parse_question_regions_as_the_benchmark_writes_them():
    q = parse_question("What is the median depth, in meters, of the image region with top-left "
                       "pixel (u=3, v=4) and bottom-right pixel (u=10, v=12) (inclusive)? Round "
                       "to two decimal places.", 64, 48)
    assert q.regions == (Region(3, 4, 8, 9),) and q.pixels == () and q.statistic == "median"
    q = parse_question("Is the box (1, 2, 3, 4) nearer than the point (u=9, v=9)?", 64, 48)
    assert q.regions == (Region(1, 2, 3, 3),) and [(p.u, p.v) for p in q.pixels] == [(9, 9)]
    assert q.intent == "nearer"


@pytest.mark.parametrize("text, metres, closer, phrase", [
    ("Is the chair closer than 1.5 m?", 1.5, True, "closer than 1.5 m"),
    ("Is anything within 2 metres?", 2.0, True, "within 2 m"),
    ("Is the wall nearer than 80 cm?", 0.8, True, "closer than 80 cm"),
    ("Is it less than 3 meters away?", 3.0, True, "closer than 3 m"),
    ("Is the door farther than 2.25m?", 2.25, False, "farther than 2.25 m"),
    ("Is it more than 500 mm away?", 0.5, False, "farther than 500 mm"),
])
def test_parse_question_thresholds(text, metres, closer, phrase):
    t = parse_question(text, 64, 48).threshold
    assert t.metres == pytest.approx(metres) and t.closer is closer and t.phrase == phrase
    assert parse_question(text, 64, 48).intent == "threshold"


@pytest.mark.parametrize("text, intent", [
    ("How far is the chair?", "depth"),
    ("Which one is closer to the camera?", "nearer"),
    ("Which point is farther away?", "farther"),
    ("What is the straight-line 3D distance, in meters, between the point A and B?", "distance"),
    ("How far apart are they?", "distance"),
    ("What is the distance between the camera and the chair?", "depth"),
    ("How big is the box?", "size"),
    ("Is the scene indoors or outdoors?", "depth"),
])
def test_question_intent(text, intent):
    assert parse_question(text, 64, 48).intent == intent


@pytest.mark.parametrize("text, named", [
    ("How far is the point at pixel (u=64, v=3)?", "pixel (u=64, v=3), outside the 64x48"),
    ("How far is (u=-1, v=3)?", "pixel (u=-1, v=3)"),
    ("Pixel (3, 48) please", "pixel (u=3, v=48)"),
    ("region with top-left pixel (u=3, v=4) and bottom-right pixel (u=70, v=12)",
     "names pixel (u=70, v=12)"),
])
def test_parse_question_rejects_pixels_outside_the_image(text, named):
    with pytest.raises(InputError, match=re.escape(named)):
        parse_question(text, 64, 48)


def test_parse_question_rejects_corners_in_the_wrong_order():
    with pytest.raises(InputError, match="left of or above"):
        parse_question("region with top-left pixel (u=10, v=4) and bottom-right pixel "
                       "(u=3, v=12)", 64, 48)
