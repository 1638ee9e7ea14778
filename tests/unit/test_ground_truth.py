"""Frame ground truth: unit cases and the published GT of UCF-Crime and ShanghaiTech."""
import math

import numpy as np
import pytest

from benchmark_files import bench
from wsvad_core.data.annotations import (
    is_normal,
    read_feature_list_ids,
    read_ucf_temporal_annotation,
    read_urdmu_ucf_annotation,
)
from wsvad_core.data.benchmarks import read_frame_counts
from wsvad_core.data.ground_truth import (
    build_ground_truth,
    fit_length,
    frame_labels,
    load_ground_truth,
    mask_ground_truth,
    save_ground_truth,
)


def test_frame_labels_inclusive_and_clipped():
    lab = frame_labels(2, 4, [(1, 2), (6, 20)])
    assert lab.dtype == np.uint8
    assert lab.tolist() == [0, 1, 1, 0, 0, 0, 1, 1]
    assert frame_labels(3, 16, []).tolist() == [0] * 48
    assert frame_labels(1, 4, [(0, 0)]).tolist() == [1, 0, 0, 0]
    assert frame_labels(1, 4, [(9, 12)]).sum() == 0  # entirely past the end
    with pytest.raises(ValueError):
        frame_labels(1, 4, [(3, 1)])


def test_fit_length():
    a = np.array([0, 1, 1], dtype=np.uint8)
    assert fit_length(a, 2).tolist() == [0, 1]
    assert fit_length(a, 5).tolist() == [0, 1, 1, 1, 1]
    assert fit_length(a, 5).dtype == np.uint8
    with pytest.raises(ValueError):
        fit_length(np.array([]), 3)


def test_ucf_crime_gt_length_rtfm():
    ann = read_urdmu_ucf_annotation(bench("ucf_crime/UCF_Annotation.txt"))
    # RTFM's test order, labels from the classes
    order = read_feature_list_ids(bench("ucf_crime/ucf-i3d-test.list"))
    rows = [{"video_id": v, "label": 0 if is_normal(ann[v].cls, v) else 1} for v in order]
    n_snip = {v: math.ceil(a.n_frames / 16) for v, a in ann.items()}
    gt = build_ground_truth(rows, n_snip, 16, {v: a.intervals for v, a in ann.items()})
    assert list(gt) == order
    total = sum(len(x) for x in gt.values())
    assert total == 1_114_144
    n_abnormal = int(sum(x.sum() for x in gt.values()))
    # intervals do not overlap, and two (Assault006, Shooting046) end one frame past T*16,
    # so the count is the sum of their lengths clipped to the GT length
    assert n_abnormal == sum(min(e, n_snip[v] * 16 - 1) - s + 1
                             for v, a in ann.items() for s, e in a.intervals) == 84_343
    assert 0.05 < n_abnormal / total < 0.15
    assert all(gt[v].sum() == 0 for v in order if is_normal(ann[v].cls, v))
    # Sultani's file (no frame counts) gives the same labels
    sul = read_ucf_temporal_annotation(bench("ucf_crime/Temporal_Anomaly_Annotation.txt"))
    gt2 = build_ground_truth(rows, n_snip, 16, {v: a.intervals for v, a in sul.items()})
    assert all(np.array_equal(gt[v], gt2[v]) for v in order)


def test_shanghaitech_gt_reproduced_exactly():
    expected = np.load(bench("shanghaitech/gt-sh.npy"))
    order = read_feature_list_ids(bench("shanghaitech/shanghai-i3d-test-10crop.list"))
    # SH_Test.txt holds the same videos sorted by name; gt-sh.npy follows the feature list
    assert set(read_feature_list_ids(bench("shanghaitech/SH_Test.txt"))) == set(order)
    # GT lengths: SH_Test_num_frames.csv (derived from S3R's shanghaitech_ground_truth.testing.json)
    counts = read_frame_counts(bench("shanghaitech/SH_Test_num_frames.csv"))
    gt = mask_ground_truth(order, bench("shanghaitech/test_frame_mask"), counts)
    got = np.concatenate(list(gt.values()))
    assert got.shape == expected.shape == (142_912,)
    assert np.array_equal(got, expected)
    assert int(got.sum()) == 8_028
    assert sum(1 for v in gt.values() if v.any()) == 44


def test_build_ground_truth_errors():
    rows = [{"video_id": "a", "label": 1}]
    with pytest.raises(KeyError, match="'a' has no snippet count"):
        build_ground_truth(rows, {}, 16, {"a": [(0, 3)]})
    with pytest.raises(KeyError, match="abnormal test video 'a' has no temporal annotation"):
        build_ground_truth(rows, {"a": 2}, 16, {})
    gt = build_ground_truth([{"video_id": "n", "label": 0}], {"n": 2}, 16, {})
    assert gt["n"].tolist() == [0] * 32


def test_save_load_roundtrip(tmp_path):
    gt = {"b_vid": np.array([0, 1, 1], np.uint8), "a_vid": np.zeros(5, np.uint8)}
    out = tmp_path / "gt" / "feat.npz"
    save_ground_truth(out, gt)
    back = load_ground_truth(out)
    assert list(back) == ["b_vid", "a_vid"]
    assert all(np.array_equal(back[k], gt[k]) for k in gt)
    assert [p.name for p in out.parent.iterdir()] == ["feat.npz"]  # no temporary left behind
    with np.load(out, allow_pickle=False) as npz:
        assert npz["__order__"].tolist() == ["b_vid", "a_vid"]
