"""Annotation and list parsers, on the real benchmark files and on broken lines."""

import pytest

from benchmark_files import bench
from wsvad_core.data.annotations import (
    parse_xd_violence_annotation,
    read_feature_list_ids,
    read_test_annotation,
    read_ucf_temporal_annotation,
    read_ucf_video_list,
    read_urdmu_ucf_annotation,
)
from wsvad_core.data.benchmarks import read_frame_counts
from wsvad_core.errors import AnnotationError

# --- real files -------------------------------------------------------------------------------

def test_ucf_temporal_annotation_real():
    ann = read_ucf_temporal_annotation(bench("ucf_crime/Temporal_Anomaly_Annotation.txt"))
    iv = {v: list(a.intervals) for v, a in ann.items()}
    classes = {v: a.cls for v, a in ann.items()}
    assert len(iv) == 290 and list(iv) == list(classes)
    assert list(iv)[0] == "Abuse028_x264"
    assert iv["Abuse028_x264"] == [(165, 240)]
    assert iv["Vandalism036_x264"] == [(540, 780), (990, 1080)]
    normal = [v for v, c in classes.items() if c == "Normal"]
    assert len(normal) == 150 and all(iv[v] == [] for v in normal)
    assert all(v.startswith("Normal_Videos_") for v in normal)
    assert sum(1 for v in iv if iv[v]) == 140
    assert all(s <= e for ivs in iv.values() for s, e in ivs)


def test_urdmu_annotation_matches_sultani():
    ur = read_urdmu_ucf_annotation(bench("ucf_crime/UCF_Annotation.txt"))
    sul = read_ucf_temporal_annotation(bench("ucf_crime/Temporal_Anomaly_Annotation.txt"))
    assert len(ur) == 290 and set(ur) == set(sul)
    for vid, a in ur.items():
        assert a.intervals == sul[vid].intervals and a.cls == sul[vid].cls
        # a few ends overshoot the frame count by 1-2 frames (Shooting015: 1715 of 1713)
        assert a.n_frames > 0 and all(s < a.n_frames and e <= a.n_frames + 2
                                      for s, e in a.intervals)
    first = next(iter(ur.values()))
    assert (first.video_id, first.n_frames, first.relpath) == ("Arson022_x264", 8640,
                                                                "Arson/Arson022_x264.mp4")
    assert first.intervals == ((3500, 4000),)
    # format detection picks the right parser for either file
    assert read_test_annotation(bench("ucf_crime/UCF_Annotation.txt"))["Arson022_x264"].n_frames \
        == 8640
    assert read_test_annotation(bench("ucf_crime/Temporal_Anomaly_Annotation.txt"))[
        "Arson022_x264"].n_frames is None


def test_ucf_train_list_real():
    entries = read_ucf_video_list(bench("ucf_crime/Anomaly_Train.txt"))
    assert len(entries) == 1610
    assert sum(e.cls == "Normal" for e in entries) == 800
    assert (entries[0].video_id, entries[0].cls, entries[0].relpath) == (
        "Abuse001_x264", "Abuse", "Abuse/Abuse001_x264.mp4")
    assert {e.cls for e in entries} - {"Normal"} == {
        "Abuse", "Arrest", "Arson", "Assault", "Burglary", "Explosion", "Fighting",
        "RoadAccidents", "Robbery", "Shooting", "Shoplifting", "Stealing", "Vandalism"}


def test_feature_lists_real():
    rtfm = read_feature_list_ids(bench("ucf_crime/ucf-i3d-test.list"))
    assert len(rtfm) == 290 and rtfm[0] == "Abuse028_x264"
    assert set(rtfm) == set(read_ucf_temporal_annotation(bench("ucf_crime/Temporal_Anomaly_Annotation.txt")))
    urdmu = read_feature_list_ids(bench("ucf_crime/UCF_Test.list"))  # per-crop: name__k.npy
    assert set(urdmu) == set(rtfm)
    sh = read_feature_list_ids(bench("shanghaitech/shanghai-i3d-test-10crop.list"))
    assert len(sh) == 199 and sh[0] == "01_0015"
    assert read_feature_list_ids(bench("shanghaitech/shanghaitech.testing.csv")) == sh
    assert set(read_feature_list_ids(bench("shanghaitech/SH_Test.txt"))) == set(sh)
    # GT lengths: SH_Test_num_frames.csv (derived from S3R's shanghaitech_ground_truth.testing.json)
    counts = read_frame_counts(bench("shanghaitech/SH_Test_num_frames.csv"))
    assert list(counts) == sh and counts["01_0015"] == 448


def test_xd_annotation_real_exclusive_end():
    xd = parse_xd_violence_annotation(bench("xd_violence/annotations.txt"))
    assert len(xd) == 500
    # "v=S-7rRLrxnVQ__#1_label_B4-0-0 0 1517 1970 3038": end exclusive -> inclusive
    assert xd["v=S-7rRLrxnVQ__#1_label_B4-0-0"] == [(0, 1516), (1970, 3037)]


# --- broken lines -----------------------------------------------------------------------------

GOOD = "Abuse028_x264.mp4  Abuse  165  240  -1  -1  \n"


@pytest.mark.parametrize("bad, problem", [
    ("Abuse030_x264.mp4  Abuse  165\n", "field"),
    ("Abuse030_x264.mp4  Abuse  16a5  240  -1  -1\n", "not an integer"),
    ("Abuse030_x264.mp4  Abuse  240  165  -1  -1\n", "start 240 > end 165"),
    ("Abuse030_x264.mp4  Abuse  165  240  -1\n", "odd number"),
    ("Abuse030_x264.mp4  Abuse  -1  240  -1  -1\n", "negative"),
    ("Abuse028_x264.mp4  Abuse  1  2  -1  -1\n", "already listed on line 1"),
])
def test_ucf_temporal_bad_lines(tmp_path, bad, problem):
    f = tmp_path / "ann.txt"
    f.write_text(GOOD + "\n" + bad)  # blank line 2 is skipped; the bad one is line 3
    with pytest.raises(AnnotationError) as exc:
        read_ucf_temporal_annotation(f)
    msg = str(exc.value)
    assert str(f) in msg and "line 3" in msg and problem in msg
    assert isinstance(exc.value, ValueError)


@pytest.mark.parametrize("bad, problem", [
    ("Abuse/Abuse030_x264.mp4 many Abuse 1 2 -1 -1\n", "frame count 'many' is not an integer"),
    ("Abuse/Abuse030_x264.mp4 100 Abuse 1\n", "field"),
    ("Abuse/Abuse030_x264.mp4 100 Abuse 1 2 3\n", "odd number"),
    ("Abuse/Abuse030_x264.mp4 100 Abuse 9 2 -1 -1\n", "start 9 > end 2"),
])
def test_urdmu_bad_lines(tmp_path, bad, problem):
    f = tmp_path / "UCF_Annotation.txt"
    f.write_text("Abuse/Abuse028_x264.mp4 500 Abuse 165 240 -1 -1 \n" + bad)
    with pytest.raises(AnnotationError) as exc:
        read_urdmu_ucf_annotation(f)
    msg = str(exc.value)
    assert str(f) in msg and "line 2" in msg and problem in msg


def test_train_list_bad_line_and_missing_file(tmp_path):
    f = tmp_path / "Anomaly_Train.txt"
    f.write_text("Abuse/Abuse001_x264.mp4\nAbuse/Abuse002_x264.mp4 extra\n")
    with pytest.raises(AnnotationError, match=r"line 2: expected one"):
        read_ucf_video_list(f)
    with pytest.raises(FileNotFoundError, match="nope.txt"):
        read_ucf_video_list(tmp_path / "nope.txt")


def test_xd_bad_exclusive_interval(tmp_path):
    f = tmp_path / "annotations.txt"
    f.write_text("vid_a 10 20\nvid_b 30 30\n")
    with pytest.raises(AnnotationError, match=r"line 2: interval 1: start 30 >= exclusive end 30"):
        parse_xd_violence_annotation(f)
