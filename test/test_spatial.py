"""depthvlm_ros.core.spatial: robust depth sampling and per-pixel 3-D points (no ROS needed)."""

from __future__ import annotations

import math

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
