"""Segment policies on hand-made arrays (expected values worked out by hand; the ``resize`` ones
were also checked against ``cv2.resize(..., INTER_LINEAR)``, which S3R's loader calls)."""

import numpy as np
import pytest

from wsvad_core.data.segments import POLICIES, apply_segment_policy, meanpool, pad_pool, resize, segment_bounds


def ramp(values, crops=1):
    """(C, T, 1) array; crop c holds values * (c + 1)."""
    v = np.asarray(values, dtype=np.float32)
    return np.stack([v * (c + 1) for c in range(crops)])[:, :, None]


# -- meanpool (RTFM utils.process_feat) -------------------------------------------------------

def test_segment_bounds_floor_linspace():
    assert segment_bounds(7, 3).tolist() == [0, 2, 4, 7]  # 0, 2.33, 4.67, 7 floored
    assert segment_bounds(2, 4).tolist() == [0, 0, 1, 1, 2]


def test_meanpool_even_split():
    out = meanpool(ramp([0, 1, 2, 3, 4, 5]), 3)
    assert out.shape == (1, 3, 1)
    np.testing.assert_allclose(out[0, :, 0], [0.5, 2.5, 4.5])


def test_meanpool_uneven_split_floor_bounds():
    # bounds [0, 2, 4, 7]: [0,1] [2,3] [4,5,6]
    out = meanpool(ramp([0, 1, 2, 3, 4, 5, 6]), 3)
    np.testing.assert_allclose(out[0, :, 0], [0.5, 2.5, 5.0])


def test_meanpool_fewer_snippets_than_segments_takes_start_snippet():
    # T=2, S=4: bounds [0, 0, 1, 1, 2] -> x[0], mean x[0:1], x[1], mean x[1:2]
    np.testing.assert_allclose(meanpool(ramp([10, 20]), 4)[0, :, 0], [10, 10, 20, 20])
    # T=3, S=5: bounds [0, 0, 1, 1, 2, 3]
    np.testing.assert_allclose(meanpool(ramp([1, 2, 3]), 5)[0, :, 0], [1, 1, 2, 2, 3])


def test_meanpool_crops_independent_float16_in_float32_out():
    x = ramp([0, 1, 2, 3, 4, 5], crops=2).astype(np.float16)
    out = meanpool(x, 3)
    assert out.dtype == np.float32 and out.shape == (2, 3, 1)
    np.testing.assert_allclose(out[1, :, 0], [1.0, 5.0, 9.0])


def test_meanpool_keeps_feature_dim_and_accepts_2d():
    x = np.arange(12, dtype=np.float32).reshape(4, 3)  # (T=4, D=3)
    out = meanpool(x, 2)
    np.testing.assert_allclose(out, [[1.5, 2.5, 3.5], [7.5, 8.5, 9.5]])


# -- resize (S3R: cv2 INTER_LINEAR along time) -------------------------------------------------

def test_resize_downsample_half_pixel_centres():
    np.testing.assert_allclose(resize(ramp([0, 1, 2, 3]), 2)[0, :, 0], [0.5, 2.5])
    np.testing.assert_allclose(resize(ramp([0, 3, 6]), 2)[0, :, 0], [0.75, 5.25])
    np.testing.assert_allclose(resize(ramp([0, 10, 20, 30, 40]), 3)[0, :, 0],
                               [10 / 3, 20.0, 110 / 3], rtol=1e-6)


def test_resize_upsample_clamps_borders():
    # src = -0.25, 0.25, 0.75, 1.25 -> clamp to [0, 1]
    np.testing.assert_allclose(resize(ramp([0, 4]), 4)[0, :, 0], [0, 1, 3, 4])
    np.testing.assert_allclose(resize(ramp([7]), 3)[0, :, 0], [7, 7, 7])


def test_resize_identity_and_crops():
    x = ramp([1, 2, 3], crops=3)
    np.testing.assert_allclose(resize(x, 3), x)
    assert resize(x.astype(np.float16), 5).dtype == np.float32


# -- pad_pool (VadCLIP process_feat) -----------------------------------------------------------

def test_pad_pool_pads_short_videos_with_zeros():
    out, length = pad_pool(ramp([5, 6], crops=2), 4, return_length=True)
    assert length == 2 and out.shape == (2, 4, 1)
    np.testing.assert_allclose(out[:, :, 0], [[5, 6, 0, 0], [10, 12, 0, 0]])


def test_pad_pool_equal_length_is_unchanged():
    out, length = pad_pool(ramp([1, 2, 3]), 3, return_length=True)
    assert length == 3
    np.testing.assert_allclose(out[0, :, 0], [1, 2, 3])


def test_pad_pool_pools_long_videos():
    out, length = pad_pool(ramp([0, 1, 2, 3, 4, 5, 6]), 3, return_length=True)
    assert length == 3
    np.testing.assert_allclose(out[0, :, 0], [0.5, 2.5, 5.0])


# -- dispatch ----------------------------------------------------------------------------------

def test_policy_names_and_errors():
    assert set(POLICIES) == {"meanpool", "resize", "pad_pool"}
    np.testing.assert_allclose(apply_segment_policy("resize", ramp([0, 1, 2, 3]), 2)[0, :, 0],
                               [0.5, 2.5])
    with pytest.raises(ValueError, match="unknown segment policy 'bogus'"):
        apply_segment_policy("bogus", ramp([1]), 2)
    with pytest.raises(ValueError):
        meanpool(np.zeros((1, 0, 3), np.float32), 2)
    with pytest.raises(ValueError):
        resize(ramp([1, 2]), 0)
