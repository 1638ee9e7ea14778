"""Parsers for the split lists and temporal annotations of the WSVAD benchmarks.

All intervals are returned as inclusive ``(start, end)`` frame indices, the convention of the
UCF-Crime annotation and of RTFM's GT builder. Every malformed line raises ``AnnotationError``
with the file, the 1-based line number and the problem.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from wsvad_core.errors import AnnotationError

NORMAL_CLASS = "Normal"
VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".webm")


@dataclass(frozen=True)
class VideoAnnotation:
    """One test video of a temporal annotation file."""

    video_id: str                      # file name without extension
    cls: str                           # class name ("Normal" for normal videos)
    intervals: tuple[tuple[int, int], ...]
    line_no: int                       # 1-based line in the annotation file (for error messages)
    n_frames: int | None = None        # only in UR-DMU's UCF_Annotation.txt
    relpath: str | None = None         # "Class/name.mp4" where the file gives it

    @property
    def file_name(self) -> str:
        return PurePosixPath(self.relpath).name if self.relpath else self.video_id + ".mp4"


@dataclass(frozen=True)
class ListEntry:
    """One line of a split list such as ``Anomaly_Train.txt`` (``Class/name.mp4``)."""

    video_id: str
    relpath: str
    cls: str
    line_no: int


def strip_video_suffix(name: str) -> str:
    """``Abuse028_x264.mp4`` -> ``Abuse028_x264`` (only known video extensions are removed, so
    ids with dots such as XD-Violence's ``..._label_B4-0-0`` stay intact)."""
    for suffix in VIDEO_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def is_normal(cls: str, video_id: str) -> bool:
    """UCF-Crime marks normal videos by class ``Normal`` and by the ``Normal_Videos`` prefix."""
    return cls == NORMAL_CLASS or video_id.startswith("Normal_Videos")


def _lines(path: Path):
    """(line_no, fields) of the non-blank lines; a missing file names itself."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: annotation/list file not found") from None
    for i, raw in enumerate(text.splitlines(), start=1):
        fields = raw.split()
        if fields:
            yield i, fields


def _int(path: Path, line_no: int, field: str, what: str) -> int:
    try:
        return int(field)
    except ValueError:
        raise AnnotationError(path, line_no, f"{what} {field!r} is not an integer") from None


def _intervals(path: Path, line_no: int, fields: list[str], exclusive_end: bool = False
               ) -> tuple[tuple[int, int], ...]:
    """Pairs of frame indices; ``-1 -1`` marks an absent event and is dropped."""
    if len(fields) % 2:
        raise AnnotationError(path, line_no, f"odd number of interval bounds ({len(fields)}): "
                              "expected start/end pairs")
    values = [_int(path, line_no, f, "interval bound") for f in fields]
    out = []
    for k in range(0, len(values), 2):
        s, e = values[k], values[k + 1]
        if s == -1 and e == -1:
            continue
        if s < 0 or e < 0:
            raise AnnotationError(path, line_no, f"interval {k // 2 + 1} ({s}, {e}) has a negative "
                                  "bound (only '-1 -1' may mark a missing event)")
        if exclusive_end:
            if e <= s:
                raise AnnotationError(path, line_no, f"interval {k // 2 + 1}: start {s} >= "
                                      f"exclusive end {e}")
            e -= 1
        elif s > e:
            raise AnnotationError(path, line_no, f"interval {k // 2 + 1}: start {s} > end {e}")
        out.append((s, e))
    return tuple(out)


def _check_unique(path: Path, seen: dict, video_id: str, line_no: int) -> None:
    if video_id in seen:
        raise AnnotationError(path, line_no, f"video {video_id!r} already listed on line "
                              f"{seen[video_id]}")
    seen[video_id] = line_no


def read_ucf_temporal_annotation(path: str | os.PathLike) -> dict[str, VideoAnnotation]:
    """Sultani's ``Temporal_Anomaly_Annotation.txt``: ``name.mp4  Class  s1  e1  s2  e2``.

    Returns video_id -> VideoAnnotation in file order. More than two events are accepted as
    long as the bounds come in pairs.
    """
    path = Path(path)
    out: dict[str, VideoAnnotation] = {}
    seen: dict[str, int] = {}
    for line_no, fields in _lines(path):
        if len(fields) < 4:
            raise AnnotationError(path, line_no, f"expected 'name class s1 e1 [s2 e2 ...]', got "
                                  f"{len(fields)} field(s)")
        name, cls = fields[0], fields[1]
        if not name.lower().endswith(VIDEO_SUFFIXES) and any(f.lower().endswith(VIDEO_SUFFIXES) for f in fields[1:]):
            raise AnnotationError(path, line_no, f"the video name is split at a space ({' '.join(fields[:3])!r} "
                                  "...): file names with spaces cannot be listed; rename the video, "
                                  "e.g. with underscores")
        if "/" in name:
            raise AnnotationError(path, line_no, f"{name!r} has a folder: this looks like "
                                  "UR-DMU's UCF_Annotation.txt (use read_urdmu_ucf_annotation)")
        video_id = strip_video_suffix(name)
        _check_unique(path, seen, video_id, line_no)
        out[video_id] = VideoAnnotation(video_id, cls, _intervals(path, line_no, fields[2:]),
                                        line_no)
    return out


def read_urdmu_ucf_annotation(path: str | os.PathLike) -> dict[str, VideoAnnotation]:
    """UR-DMU's ``UCF_Annotation.txt``: ``Class/name.mp4 n_frames Class s1 e1 s2 e2``."""
    path = Path(path)
    out: dict[str, VideoAnnotation] = {}
    seen: dict[str, int] = {}
    for line_no, fields in _lines(path):
        if len(fields) < 5:
            raise AnnotationError(path, line_no, "expected 'Class/name.mp4 n_frames class s1 e1 "
                                  f"[s2 e2 ...]', got {len(fields)} field(s)")
        relpath, cls = fields[0], fields[2]
        n_frames = _int(path, line_no, fields[1], "frame count")
        if n_frames <= 0:
            raise AnnotationError(path, line_no, f"frame count {n_frames} is not positive")
        video_id = strip_video_suffix(PurePosixPath(relpath).name)
        _check_unique(path, seen, video_id, line_no)
        out[video_id] = VideoAnnotation(video_id, cls, _intervals(path, line_no, fields[3:]),
                                        line_no, n_frames=n_frames, relpath=relpath)
    return out


def read_test_annotation(path: str | os.PathLike) -> dict[str, VideoAnnotation]:
    """Either UCF-Crime test annotation format, told apart by the second field of the first
    line (an integer frame count in UR-DMU's file, a class name in Sultani's)."""
    path = Path(path)
    for _, fields in _lines(path):
        if len(fields) > 1 and fields[1].lstrip("-").isdigit():
            return read_urdmu_ucf_annotation(path)
        break
    return read_ucf_temporal_annotation(path)


def read_ucf_video_list(path: str | os.PathLike) -> list[ListEntry]:
    """``Anomaly_Train.txt``-style list: one ``Class/name.mp4`` per line. The class is the
    folder; normal folders (``Training_Normal_Videos_Anomaly`` etc.) give class ``Normal``."""
    path = Path(path)
    out: list[ListEntry] = []
    seen: dict[str, int] = {}
    for line_no, fields in _lines(path):
        if len(fields) != 1:
            hint = ("; a file name with spaces cannot be listed (fields are separated by white space): "
                    "rename the video, e.g. with underscores" if len(fields) > 1 else "")
            raise AnnotationError(path, line_no, f"expected one 'Class/name.mp4' path, got "
                                  f"{len(fields)} fields{hint}")
        relpath = fields[0].replace("\\", "/")
        p = PurePosixPath(relpath)
        video_id = strip_video_suffix(p.name)
        folder = p.parent.name
        cls = NORMAL_CLASS if (not folder or "normal" in folder.lower()
                               or video_id.startswith("Normal_Videos")) else folder
        _check_unique(path, seen, video_id, line_no)
        out.append(ListEntry(video_id, relpath, cls, line_no))
    return out


def read_feature_list_ids(path: str | os.PathLike) -> list[str]:
    """Video ids, in order, of a feature list or id list (RTFM ``.list`` files with absolute
    Windows/Linux paths and an ``_i3d.npy`` suffix, bare id lists such as ``SH_Test.txt``, or
    S3R's one-column csv with a ``video-id`` header, VadCLIP's ``path,label`` csv). Per-crop
    lists (``name__3.npy``) give each video once."""
    path = Path(path)
    out: list[str] = []
    seen: set[str] = set()
    for line_no, fields in _lines(path):
        entry = fields[0].split(",")[0].replace("\\", "/")
        name = PurePosixPath(entry).name
        if line_no == 1 and name in ("video-id", "path"):  # S3R / VadCLIP csv headers
            continue
        for suffix in (".npy", "_i3d"):
            name = name.removesuffix(suffix)
        head, sep, tail = name.rpartition("__")
        if sep and tail.isdigit():
            name = head
        name = strip_video_suffix(name)
        if not name:
            raise AnnotationError(path, line_no, f"no video id in {fields[0]!r}")
        if name not in seen:
            seen.add(name)
            out.append(name)
    return out


def parse_xd_violence_annotation(path: str | os.PathLike) -> dict[str, list[tuple[int, int]]]:
    """XD-Violence ``annotations.txt``: ``name s1 e1 s2 e2 ...`` with exclusive ends (as the
    official code slices ``gt[s:e]``); converted to inclusive ``(s, e - 1)``."""
    path = Path(path)
    out: dict[str, list[tuple[int, int]]] = {}
    seen: dict[str, int] = {}
    for line_no, fields in _lines(path):
        if len(fields) < 3:
            raise AnnotationError(path, line_no, f"expected 'name s1 e1 [s2 e2 ...]', got "
                                  f"{len(fields)} field(s)")
        video_id = strip_video_suffix(fields[0])
        _check_unique(path, seen, video_id, line_no)
        out[video_id] = list(_intervals(path, line_no, fields[1:], exclusive_end=True))
    return out
