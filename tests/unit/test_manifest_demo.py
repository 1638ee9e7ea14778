"""Synthetic demo dataset, the manifest built from it, and shard assignment."""
import re
import time
from pathlib import Path

import decord
import numpy as np
import pytest

from wsvad_core.data.annotations import read_ucf_temporal_annotation, read_ucf_video_list
from wsvad_core.data.demo import demo_video_relpaths, generate_demo_dataset
from wsvad_core.data.manifest import COLUMNS, build_manifest, read_manifest, write_manifest
from wsvad_core.errors import VideoReadError
from wsvad_core.shards import shard_of

SMALL = dict(n_train_normal=2, n_train_abnormal=2, n_test_normal=1, n_test_abnormal=1)
N_FRAMES = 48


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo")
    t0 = time.perf_counter()
    intervals = generate_demo_dataset(root, seed=0, n_frames=N_FRAMES, **SMALL)
    print(f"small demo generated in {time.perf_counter() - t0:.2f} s")
    return root, intervals


def ucf_manifest(root, train_list, test_annotation):
    """The manifest stage on a folder in the UCF-Crime layout (videos probed)."""
    return build_manifest("ucf_crime", {"train_list": train_list, "test_annotation": test_annotation}, root,
                          progress=False)


def _frames(path) -> np.ndarray:
    vr = decord.VideoReader(str(path))
    return vr.get_batch(list(range(len(vr)))).asnumpy()


def test_demo_files_and_lists(demo):
    root, intervals = demo
    rel = demo_video_relpaths(**SMALL)
    assert len(rel) == 6
    written = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
    assert written == sorted(rel + ["Anomaly_Train.txt", "Temporal_Anomaly_Annotation.txt"])
    for r in rel:
        vr = decord.VideoReader(str(root / r))
        assert len(vr) == N_FRAMES and vr.get_avg_fps() == pytest.approx(25)
        assert vr[0].shape == (120, 160, 3)
    train = read_ucf_video_list(root / "Anomaly_Train.txt")
    assert [e.cls for e in train] == ["Explosion", "Fighting", "Normal", "Normal"]
    assert [e.relpath for e in train] == rel[:4]

    text = (root / "Temporal_Anomaly_Annotation.txt").read_text()
    lines = text.splitlines()
    # the real file's format: two spaces between fields, two trailing spaces, -1 for no event
    assert all(re.fullmatch(r"\S+\.mp4  \S+  (-?\d+  ){4}", line) for line in lines), lines
    assert lines[-1] == "Normal_Videos_003_x264.mp4  Normal  -1  -1  -1  -1  "
    ann = read_ucf_temporal_annotation(root / "Temporal_Anomaly_Annotation.txt")
    assert list(ann) == ["Explosion002_x264", "Normal_Videos_003_x264"]
    assert list(ann["Explosion002_x264"].intervals) == intervals["Explosion002_x264"]
    for ivs in intervals.values():
        covered = sum(e - s + 1 for s, e in ivs)
        assert 1 <= len(ivs) <= 2 and 0.2 * N_FRAMES <= covered <= 0.55 * N_FRAMES
        assert all(0 <= s <= e < N_FRAMES for s, e in ivs)


def test_demo_relpaths_default_counts():
    rel = demo_video_relpaths()
    assert len(rel) == 24 and len(set(rel)) == 24
    assert sum(r.startswith("Training_Normal_Videos_Anomaly/Normal_Videos") for r in rel) == 8
    assert sum(r.startswith("Testing_Normal_Videos_Anomaly/Normal_Videos_") for r in rel) == 4
    assert {r.split("/")[0] for r in rel} == {"Explosion", "Fighting",
                                              "Training_Normal_Videos_Anomaly",
                                              "Testing_Normal_Videos_Anomaly"}
    with pytest.raises(ValueError, match="n_test_normal"):
        demo_video_relpaths(n_test_normal=-1)


def test_demo_anomalies_visible_in_pixels(demo):
    root, intervals = demo
    for vid, ivs in intervals.items():
        (path,) = root.rglob(f"{vid}.mp4")
        x = _frames(path).astype(np.float32)
        event = np.zeros(len(x), bool)
        for s, e in ivs:
            event[s:e + 1] = True
        calm = np.median(x[~event], axis=0)
        # distance of each frame to the video's calm scene: large during events only
        d = np.abs(x - calm).mean(axis=(1, 2, 3))
        assert d[event].mean() > 4 * d[~event].mean() and d[event].mean() > 30, vid
        # and a colour/brightness shift of the whole frame
        shift = np.abs(x[event].mean(axis=(0, 1, 2)) - x[~event].mean(axis=(0, 1, 2))).max()
        assert shift > 30, vid


def test_demo_normal_videos_differ(demo):
    root, _ = demo
    means = [_frames(p)[0].reshape(-1, 3).mean(0) for p in
             sorted(root.glob("Training_Normal_Videos_Anomaly/*.mp4"))]
    assert np.abs(means[0] - means[1]).max() > 3


def test_demo_deterministic(demo, tmp_path):
    root, intervals = demo
    again = generate_demo_dataset(tmp_path, seed=0, n_frames=N_FRAMES, **SMALL)
    assert again == intervals
    for rel in demo_video_relpaths(**SMALL):
        assert np.array_equal(_frames(root / rel), _frames(tmp_path / rel)), rel
    for name in ("Anomaly_Train.txt", "Temporal_Anomaly_Annotation.txt"):
        assert (root / name).read_text() == (tmp_path / name).read_text()
    other = tmp_path / "seed1"
    generate_demo_dataset(other, seed=1, n_frames=N_FRAMES, n_train_normal=1, n_train_abnormal=0,
                          n_test_normal=0, n_test_abnormal=0)
    rel = demo_video_relpaths(1, 0, 0, 0)[0]
    assert not np.array_equal(_frames(root / rel), _frames(other / rel))


def test_demo_files_do_not_depend_on_workers(demo, tmp_path):
    """The rule renders videos on every core; the bytes must be the ones one worker writes."""
    root, intervals = demo
    again = generate_demo_dataset(tmp_path, seed=0, n_frames=N_FRAMES, workers=3, **SMALL)
    assert again == intervals
    for rel in [*demo_video_relpaths(**SMALL), "Anomaly_Train.txt", "Temporal_Anomaly_Annotation.txt"]:
        assert (root / rel).read_bytes() == (tmp_path / rel).read_bytes(), rel


def test_demo_worker_error_reaches_the_caller(tmp_path):
    (tmp_path / "Explosion").write_text("a file where a folder must go")
    with pytest.raises(OSError):
        generate_demo_dataset(tmp_path, seed=0, n_frames=N_FRAMES, workers=2, **SMALL)


def test_manifest_from_demo(demo, tmp_path):
    root, _ = demo
    df = ucf_manifest(root, root / "Anomaly_Train.txt", root / "Temporal_Anomaly_Annotation.txt")
    assert list(df.columns) == COLUMNS
    assert df["video_id"].tolist() == [
        "Explosion001_x264", "Fighting001_x264", "Normal_Videos001_x264", "Normal_Videos002_x264",
        "Explosion002_x264", "Normal_Videos_003_x264"]
    assert df["split"].tolist() == ["train"] * 4 + ["test"] * 2
    assert df["label"].tolist() == [1, 1, 0, 0, 1, 0]
    assert df["class"].tolist() == ["Explosion", "Fighting", "Normal", "Normal", "Explosion",
                                    "Normal"]
    assert (df["n_frames"] == N_FRAMES).all() and np.allclose(df["fps"], 25)
    assert all(Path(p).is_absolute() and Path(p).is_file() for p in df["path"])

    out = tmp_path / "m" / "manifest.csv"
    write_manifest(df, out)
    assert [p.name for p in out.parent.iterdir()] == ["manifest.csv"]
    back = read_manifest(out)
    assert back.equals(df)


def test_manifest_finds_nested_videos_and_reports_missing(demo, tmp_path):
    root, _ = demo
    # the official archive nests class folders one level down; lookup is by file name
    nested = tmp_path / "ucf"
    for p in root.rglob("*.mp4"):
        dst = nested / "Anomaly-Videos-Part-1" / p.relative_to(root)
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.symlink_to(p)
    df = ucf_manifest(nested, root / "Anomaly_Train.txt", root / "Temporal_Anomaly_Annotation.txt")
    assert len(df) == 6 and "Anomaly-Videos-Part-1" in df["path"].iloc[0]

    train = tmp_path / "train.txt"
    train.write_text("Explosion/Explosion001_x264.mp4\nFighting/Fighting099_x264.mp4\n"
                     "Training_Normal_Videos_Anomaly/Normal_Videos001_x264.mp4\n")
    with pytest.raises(FileNotFoundError) as exc:
        ucf_manifest(root, train, root / "Temporal_Anomaly_Annotation.txt")
    msg = str(exc.value)
    assert str(train) in msg and "line 2" in msg and str(root / "Fighting/Fighting099_x264.mp4") \
        in msg


def test_manifest_unreadable_video(tmp_path):
    (tmp_path / "Fighting").mkdir()
    bad = tmp_path / "Fighting" / "Fighting001_x264.mp4"
    bad.write_bytes(b"this is not a video")
    train = tmp_path / "train.txt"
    # a normal training video too: a list without one fails earlier, before any video is probed
    train.write_text("Fighting/Fighting001_x264.mp4\nTraining_Normal_Videos_Anomaly/Normal_Videos001_x264.mp4\n")
    ann = tmp_path / "ann.txt"
    ann.write_text("")
    with pytest.raises(VideoReadError, match=re.escape(str(bad))):
        ucf_manifest(tmp_path, train, ann)


def test_shards_stable_and_partition():
    # crc32 values are fixed: a shard holds the same videos on every machine and run
    assert shard_of("Abuse028_x264", 4) == 3
    assert shard_of("Normal_Videos_003_x264", 7) == 4
    assert shard_of("01_0015", 3) == 2
    ids = [f"vid{i}" for i in range(50)]
    parts = [[v for v in ids if shard_of(v, 3) == k] for k in range(3)]  # as rules/common.smk splits
    assert sorted(sum(parts, [])) == sorted(ids)
    assert all(parts)
    for bad in (0, -1, 2.0, True):
        with pytest.raises(ValueError, match="n_shards must be a positive integer"):
            shard_of("x", bad)
