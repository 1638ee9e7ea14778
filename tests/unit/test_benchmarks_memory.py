"""Training input at UCF-Crime scale: long videos are read segment by segment, with results
bit-identical to reducing the whole video (benchmarks/train_memory.py measures the RAM)."""
import numpy as np
import pytest

from wsvad_core.data.segment_reader import video_segments
from wsvad_core.data.segments import apply_segment_policy as apply_policy
from wsvad_core.errors import FeatureError
from wsvad_core.features.store import finalize_store, open_store, write_video_array


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    d = tmp_path_factory.mktemp("seg") / "s.zarr"
    rng = np.random.default_rng(0)
    for vid, t in (("long", 301), ("short", 5), ("exact", 64)):
        write_video_array(d, vid, rng.standard_normal((3, t, 8)) * 3, {})
    finalize_store(d, {})
    return open_store(d)


@pytest.mark.parametrize("policy", ["meanpool", "resize", "pad_pool"])
@pytest.mark.parametrize("vid", ["long", "short", "exact"])
def test_piecewise_equals_whole_video(store, policy, vid):
    whole = apply_policy(policy, np.asarray(store[vid], dtype=np.float32), 32)
    piecewise = video_segments(store, vid, policy, 32, dim=8, crops=3, chunk_bytes=1)
    assert piecewise.dtype == np.float32 and piecewise.shape == whole.shape
    assert np.array_equal(piecewise, whole)


def test_piecewise_reads_are_checked(tmp_path):
    d = tmp_path / "s.zarr"
    write_video_array(d, "v", np.ones((2, 100, 4)), {})
    finalize_store(d, {})
    import zarr

    z = zarr.open_array(str(d / "v"), mode="r+")
    z[1, 70, 3] = np.nan  # damage on disk, after the checked write
    with pytest.raises(FeatureError, match=r"video 'v': 1 NaN/inf"):
        video_segments(open_store(d), "v", "meanpool", 32, dim=4, crops=2, chunk_bytes=1)
    with pytest.raises(FeatureError, match=r"feature dim D=4, expected 8"):
        video_segments(open_store(d), "v", "meanpool", 32, dim=8, chunk_bytes=1)
