"""UCF-Crime, ShanghaiTech and XD-Violence as video tables read from their official list and
annotation files alone, so that a manifest exists without the videos (published features are
imported instead of extracted).

Each layout gives, per video, in official order (train list order, then test list order):
``video_id, split, label, class, folder`` (the folder of the official relative path, which
per-crop feature folders repeat) and ``n_frames`` (-1 where the official files do not say).

* ``ucf_crime``: train ``Anomaly_Train.txt`` (``Class/name.mp4``); test ``UCF_Annotation.txt``
  (UR-DMU, with frame counts) or Sultani's ``Temporal_Anomaly_Annotation.txt``; optional
  ``test_list`` (RTFM's ``ucf-i3d-test.list``) fixes the test order.
* ``shanghaitech``: RTFM's ``shanghai-i3d-{train,test}-10crop.list``; the abnormal train videos
  are those of ``abnormal_train_list`` (default: the first 63 of the train list, as RTFM's
  ``dataset.py`` and S3R slice it); a test video is abnormal when it has a frame
  mask in ``test_annotation`` (the ``test_frame_mask`` folder); GT lengths from
  ``test_frame_counts`` (``video_id,num_frames``).
* ``xd_violence``: one id per line in official order; ``_label_A`` marks normal videos, the
  codes after ``_label_`` (``B1``…``B6``, ``G``; ``0`` = none) are the classes; test GT from
  ``annotations.txt`` (end-exclusive intervals).
"""
from __future__ import annotations

import csv
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path, PurePosixPath

from wsvad_core.data.annotations import (
    NORMAL_CLASS,
    is_normal,
    parse_xd_violence_annotation,
    read_feature_list_ids,
    read_test_annotation,
    read_ucf_video_list,
)
from wsvad_core.errors import AnnotationError

LAYOUTS = ("ucf_crime", "shanghaitech", "xd_violence")
SH_TRAIN_ABNORMAL = 63          # RTFM dataset.py / S3R: list[:63] abnormal, list[63:] normal
SH_ABNORMAL_CLASS = "Anomaly"   # ShanghaiTech's weak split has no anomaly classes
UCF_TEST_NORMAL_FOLDER = "Testing_Normal_Videos_Anomaly"
# file keys a dataset entry may name (relative to annotation_dir, or to root without one)
FILE_KEYS = ("train_list", "test_annotation", "test_list", "test_frame_counts", "abnormal_train_list")


@dataclass(frozen=True)
class BenchmarkVideo:
    video_id: str
    split: str          # "train" | "test"
    label: int          # 0 normal, 1 abnormal
    cls: str            # "Normal", a UCF-Crime class, "Anomaly" (ShanghaiTech), "B1-G" (XD)
    folder: str = ""    # folder of the official relative path ("Abuse", "Training_Normal_...")
    n_frames: int = -1  # -1: not given by the official files
    relpath: str = ""   # video file relative to the dataset root
    source: str = ""    # the list/annotation file and line that name it (for error messages)

    def as_row(self) -> dict:
        return asdict(self)


def dataset_files(dataset_cfg: Mapping) -> dict[str, Path]:
    """The list/annotation files a dataset entry names, resolved against ``annotation_dir``
    (real benchmarks ship their lists in the repository) or else against ``root``."""
    base = Path(dataset_cfg.get("annotation_dir") or dataset_cfg["root"])
    return {k: base / dataset_cfg[k] for k in FILE_KEYS if dataset_cfg.get(k)}


def _need(files: Mapping[str, Path], key: str, layout: str) -> Path:
    if key not in files:
        raise KeyError(f"layout {layout!r} needs the dataset key {key!r} (a file of the benchmark)")
    return Path(files[key])


def xd_classes(video_id: str) -> str:
    """``..._label_B2-G-0`` -> ``B2-G``; ``..._label_A`` -> ``Normal``."""
    codes = video_id.rpartition("_label_")[2]
    parts = [c for c in codes.split("-") if c and c != "0"]
    if not parts or parts == ["A"]:
        return NORMAL_CLASS
    return "-".join(parts)


def _ordered(path: Path, got: list, order: list[str], key=lambda x: x.video_id) -> list:
    """``got`` re-ordered by ``order`` (a list file); both must hold the same videos."""
    by_id = {key(x): x for x in got}
    missing = [v for v in order if v not in by_id]
    extra = [v for v in by_id if v not in set(order)]
    if missing or extra:
        raise AnnotationError(path, None, f"test list and test annotation disagree: {len(missing)} "
                              f"listed videos lack an annotation {missing[:5]}, {len(extra)} "
                              f"annotated videos are not listed {extra[:5]}")
    return [by_id[v] for v in order]


def _ucf_crime(files: Mapping[str, Path]) -> list[BenchmarkVideo]:
    out = []
    train_list = _need(files, "train_list", "ucf_crime")
    for e in read_ucf_video_list(train_list):
        out.append(BenchmarkVideo(e.video_id, "train", 0 if is_normal(e.cls, e.video_id) else 1,
                                  e.cls, PurePosixPath(e.relpath).parent.as_posix().strip("."),
                                  -1, e.relpath, f"{train_list}, line {e.line_no}"))
    ann_path = _need(files, "test_annotation", "ucf_crime")
    test = []
    for a in read_test_annotation(ann_path).values():
        normal = is_normal(a.cls, a.video_id)
        rel = a.relpath or f"{UCF_TEST_NORMAL_FOLDER if normal else a.cls}/{a.file_name}"
        test.append(BenchmarkVideo(a.video_id, "test", 0 if normal else 1,
                                   NORMAL_CLASS if normal else a.cls,
                                   PurePosixPath(rel).parent.as_posix().strip("."),
                                   a.n_frames if a.n_frames is not None else -1, rel,
                                   f"{ann_path}, line {a.line_no}"))
    if "test_list" in files:
        test = _ordered(files["test_list"], test, read_feature_list_ids(files["test_list"]))
    return out + test


def read_frame_counts(path: str | os.PathLike) -> dict[str, int]:
    """``video_id,num_frames`` csv -> {video: frames}."""
    path = Path(path)
    out = {}
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        if reader.fieldnames is None or not {"video_id", "num_frames"} <= set(reader.fieldnames):
            raise AnnotationError(path, 1, "expected a 'video_id,num_frames' header")
        for i, row in enumerate(reader, start=2):
            try:
                out[row["video_id"]] = int(row["num_frames"])
            except (TypeError, ValueError):
                raise AnnotationError(path, i, f"num_frames {row['num_frames']!r} is not an "
                                      "integer") from None
    return out


def _shanghaitech(files: Mapping[str, Path]) -> list[BenchmarkVideo]:
    train_path = _need(files, "train_list", "shanghaitech")
    train = read_feature_list_ids(train_path)
    if "abnormal_train_list" in files:
        abnormal = set(read_feature_list_ids(files["abnormal_train_list"]))
        unknown = sorted(abnormal - set(train))
        if unknown:
            raise AnnotationError(files["abnormal_train_list"], None, "videos that are not in "
                                  f"{train_path.name}: {unknown[:5]}")
    elif len(train) > SH_TRAIN_ABNORMAL:
        abnormal = set(train[:SH_TRAIN_ABNORMAL])
    else:
        raise AnnotationError(train_path, None, f"{len(train)} videos: the official list has the "
                              f"{SH_TRAIN_ABNORMAL} abnormal videos first; name the abnormal ones "
                              "in abnormal_train_list")
    masks = _need(files, "test_annotation", "shanghaitech")
    if not masks.is_dir():
        raise FileNotFoundError(f"{masks}: ShanghaiTech's test_annotation must be the "
                                "test_frame_mask folder (one .npy per abnormal test video)")
    masked = {p.stem for p in masks.glob("*.npy")}
    counts = (read_frame_counts(files["test_frame_counts"]) if "test_frame_counts" in files
              else {})
    out = [BenchmarkVideo(v, "train", int(v in abnormal),
                          SH_ABNORMAL_CLASS if v in abnormal else NORMAL_CLASS, relpath=f"{v}.avi")
           for v in train]
    test_path = _need(files, "test_list", "shanghaitech")
    test = read_feature_list_ids(test_path)
    unknown = sorted(masked - set(test))
    if unknown:
        raise AnnotationError(masks, None, f"masks of videos that are not in {test_path.name}: "
                              f"{unknown[:5]} (only the test masks belong here)")
    out += [BenchmarkVideo(v, "test", int(v in masked),
                           SH_ABNORMAL_CLASS if v in masked else NORMAL_CLASS,
                           n_frames=counts.get(v, -1), relpath=f"{v}.avi") for v in test]
    return out


def _xd_violence(files: Mapping[str, Path]) -> list[BenchmarkVideo]:
    out = []
    for split, key in (("train", "train_list"), ("test", "test_list")):
        for v in read_feature_list_ids(_need(files, key, "xd_violence")):
            cls = xd_classes(v)
            out.append(BenchmarkVideo(v, split, int(cls != NORMAL_CLASS), cls,
                                      relpath=f"{v}.mp4"))
    ann_path = _need(files, "test_annotation", "xd_violence")
    ann = parse_xd_violence_annotation(ann_path)
    lacking = [v.video_id for v in out if v.split == "test" and v.label and v.video_id not in ann]
    if lacking:
        raise AnnotationError(ann_path, None, f"{len(lacking)} violent test videos have no "
                              f"intervals: {lacking[:5]}")
    return out


_BUILDERS = {"ucf_crime": _ucf_crime, "shanghaitech": _shanghaitech, "xd_violence": _xd_violence}


def benchmark_videos(layout: str, files: Mapping[str, str | os.PathLike]) -> list[BenchmarkVideo]:
    """Every video of a benchmark in official order, from its list/annotation files."""
    if layout not in _BUILDERS:
        raise ValueError(f"unknown dataset layout {layout!r}; known: {list(_BUILDERS)}")
    videos = _BUILDERS[layout]({k: Path(v) for k, v in files.items()})
    seen: dict[str, BenchmarkVideo] = {}
    for v in videos:
        if v.video_id in seen:
            first = seen[v.video_id]
            raise AnnotationError(v.source or files.get("train_list", "?"), None,
                                  f"video {v.video_id!r} is also listed in the {first.split} split "
                                  f"({first.source or 'its list'}); video ids must be unique across splits")
        seen[v.video_id] = v
    return videos
