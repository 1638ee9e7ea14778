"""The manifest: one row per video of a dataset, the table every later stage reads.

Columns: ``video_id, path, split, label, class, n_frames, fps``; rows in the benchmark's
official order (``data/benchmarks.py``: train list order, then test order). ``path`` is absolute.
When features are extracted from the videos, each listed video is found under the dataset root
and probed with decord, the reader the extraction stage uses (so the two agree on the frame
count); when every feature set is imported, the videos are never opened (``n_frames`` from the
official files or -1, ``fps`` NaN).
"""
from __future__ import annotations

import math
import os
from collections import defaultdict
from collections.abc import Mapping
from pathlib import Path, PurePosixPath

import pandas as pd
from tqdm import tqdm

from wsvad_core.data.annotations import VIDEO_SUFFIXES, read_test_annotation
from wsvad_core.data.benchmarks import benchmark_videos
from wsvad_core.errors import AnnotationError
from wsvad_core.io import atomic_path

COLUMNS = ["video_id", "path", "split", "label", "class", "n_frames", "fps"]
DTYPES = {"label": "int64", "n_frames": "int64", "fps": "float64"}


def probe_video(path: str | os.PathLike) -> tuple[int, float]:
    """(frame count, average fps) of a video, read with decord by the extraction stage's own
    reader, so a zero-byte file, a container without a video stream or an unknown codec get the
    same specific ``VideoReadError`` here as there."""
    from wsvad_core.features.decode import probe_video as decord_probe  # loads decord lazily

    return decord_probe(path)


class _VideoIndex:
    """Video files under ``root`` by file name, built on first use with a single rglob (the
    official UCF-Crime archive nests class folders under ``Anomaly-Videos-Part-N/``)."""

    def __init__(self, root: Path):
        self.root = root
        self._by_name: dict[str, list[Path]] | None = None

    def find(self, relpath: str) -> Path | None:
        direct = self.root / relpath
        if direct.is_file():
            return direct
        if self._by_name is None:
            self._by_name = defaultdict(list)
            for p in self.root.rglob("*"):
                if p.suffix.lower() in VIDEO_SUFFIXES and p.is_file():
                    self._by_name[p.name].append(p)
        hits = self._by_name.get(PurePosixPath(relpath).name, [])
        if len(hits) > 1:
            # the same name in several folders: keep the one in the expected folder
            folder = PurePosixPath(relpath).parent.name
            hits = [p for p in hits if p.parent.name == folder] or hits
            if len(hits) > 1:
                raise FileExistsError(f"{self.root}: {PurePosixPath(relpath).name} found in "
                                      f"several places: {[str(p) for p in hits]}")
        return hits[0] if hits else None


def build_manifest(layout: str, files: Mapping[str, str | os.PathLike], root: str | os.PathLike,
                   probe_videos: bool = True, progress: bool = True, min_frames: int = 1) -> pd.DataFrame:
    """The manifest of a dataset from its list/annotation ``files`` (``data/benchmarks.py``).
    With ``probe_videos`` every video is looked up at ``root/relpath`` (then by file name
    anywhere under ``root``) and probed; a video of fewer than ``min_frames`` frames (one
    snippet of the dataset's extracted feature sets) and an annotated event that starts after its
    video's last frame are errors, before any extraction starts. Without, the videos are not
    opened."""
    videos = benchmark_videos(layout, files)
    train_labels = [v.label for v in videos if v.split == "train"]
    for label, kind in ((0, "normal"), (1, "abnormal")):
        if label not in train_labels:
            # every method trains on paired normal/abnormal batches: fail here, before extraction
            other = "abnormal" if label == 0 else "normal"
            raise AnnotationError(files["train_list"], None, f"lists no {kind} training video (all "
                                  f"{len(train_labels)} are {other}); weakly-supervised training needs "
                                  "both (normal ones sit in a folder with 'Normal' in its name or are "
                                  "named 'Normal_Videos*')")
    root = Path(os.path.abspath(root))  # absolute, but symlinks kept as the user laid them out
    if not probe_videos:
        rows = [(v.video_id, str(root / v.relpath), v.split, v.label, v.cls, v.n_frames, math.nan)
                for v in videos]
        return pd.DataFrame(rows, columns=COLUMNS).astype(DTYPES)
    if layout == "shanghaitech":
        raise ValueError("layout 'shanghaitech': its test set ships as frame folders; features are imported")
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: dataset root folder not found")
    intervals = ({vid: a.intervals for vid, a in read_test_annotation(files["test_annotation"]).items()}
                 if layout == "ucf_crime" else {})
    index = _VideoIndex(root)
    rows = []
    for v in tqdm(videos, desc="manifest", unit="video", disable=not progress):
        path = index.find(v.relpath)
        if path is None:
            raise FileNotFoundError(f"{v.source}: video {v.relpath!r} not found; expected "
                                    f"{root / v.relpath} (or a file of that name under {root})")
        n_frames, fps = probe_video(path)
        if n_frames < min_frames:
            raise AnnotationError(*_source(v), f"video {path} has {n_frames} frame(s), fewer than one "
                                  f"{min_frames}-frame snippet of the dataset's feature sets: remove "
                                  "it from this list (loop-padding would turn it into one fake snippet)")
        # an end a frame or two past the last is common in the official files (clipped later);
        # an event that starts after the video ends is a wrong line or video
        late = [(s, e) for s, e in intervals.get(v.video_id, ()) if s >= n_frames] if v.split == "test" else []
        if late:
            raise AnnotationError(*_source(v), f"interval {late[0]} starts after the last frame "
                                  f"of {path} ({n_frames} frames)")
        rows.append((v.video_id, os.path.abspath(path), v.split, v.label, v.cls, n_frames, fps))
    return pd.DataFrame(rows, columns=COLUMNS).astype(DTYPES)


def _source(video) -> tuple[str, int | None]:
    """(file, line) of the list line that names ``video``."""
    src, _, line = video.source.rpartition(", line ")
    return (src, int(line)) if line.isdigit() else (video.source, None)


def write_manifest(df: pd.DataFrame, path: str | os.PathLike) -> None:
    """CSV, written to a temporary file beside ``path`` and renamed (never half-written)."""
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"{path}: manifest lacks columns {missing}")
    with atomic_path(path, suffix=".csv") as tmp:
        with open(tmp, "w", encoding="utf-8", newline="") as fh:
            df.to_csv(fh, index=False)
            fh.flush()
            os.fsync(fh.fileno())


def read_manifest(path: str | os.PathLike) -> pd.DataFrame:
    """Read a manifest written by ``write_manifest``, checking its columns: the one reader of
    every stage (ids, paths and classes as strings; an empty fps is NaN)."""
    df = pd.read_csv(path, dtype={"video_id": str, "path": str, "split": str, "class": str,
                                  "label": "int64", "n_frames": "int64", "fps": "float64"},
                     keep_default_na=False, na_values={"fps": ["", "nan", "NaN"]})
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"{path}: manifest lacks columns {missing}")
    bad = sorted(set(df["split"]) - {"train", "test"})
    if bad:
        raise ValueError(f"{path}: unknown split value(s) {bad}")
    return df
