"""Frame-level ground truth of the test videos.

The GT of a video has ``T * clip_len`` frames, T being the number of snippets its features
have: evaluation repeats each snippet score ``clip_len`` times, so GT and scores line up
frame by frame (RTFM's convention; UCF-Crime with T = ceil(n/16) gives 1,114,144 frames).
"""
from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np

from wsvad_core.io import atomic_path

ORDER_KEY = "__order__"


def frame_labels(n_snippets: int, clip_len: int, intervals: Iterable[Sequence[int]]
                 ) -> np.ndarray:
    """uint8 labels of length ``n_snippets * clip_len``: 1 on every inclusive ``[s, e]``,
    clipped to the length (annotations may run past the last full snippet)."""
    if n_snippets < 0 or clip_len < 1:
        raise ValueError(f"need n_snippets >= 0 and clip_len >= 1, got {n_snippets}, {clip_len}")
    n = int(n_snippets) * int(clip_len)
    labels = np.zeros(n, dtype=np.uint8)
    for s, e in intervals:
        if s > e:
            raise ValueError(f"interval ({s}, {e}) has start > end")
        labels[max(int(s), 0): min(int(e) + 1, n)] = 1
    return labels


def fit_length(values: np.ndarray, n: int) -> np.ndarray:
    """Truncate, or pad by repeating the last value, to length ``n``. Edge padding is what
    reproduces RTFM's ShanghaiTech GT from the raw masks, and what scores need when the
    features cover fewer frames than the GT."""
    values = np.asarray(values)
    if n < 0:
        raise ValueError(f"target length {n} is negative")
    if len(values) >= n:
        return values[:n]
    if len(values) == 0:
        raise ValueError(f"cannot pad an empty array to length {n}")
    return np.concatenate([values, np.full(n - len(values), values[-1], dtype=values.dtype)])


def _rows(manifest_test_rows) -> list[tuple[str, int]]:
    """(video_id, label) of a manifest DataFrame or an iterable of mappings."""
    if hasattr(manifest_test_rows, "to_dict"):
        manifest_test_rows = manifest_test_rows.to_dict("records")
    return [(str(r["video_id"]), int(r["label"])) for r in manifest_test_rows]


def build_ground_truth(manifest_test_rows, n_snippets_by_video: Mapping[str, int], clip_len: int,
                       intervals_by_video: Mapping[str, Sequence[Sequence[int]]]
                       ) -> "OrderedDict[str, np.ndarray]":
    """video_id -> frame labels, in manifest order. Normal videos need no intervals entry;
    an abnormal video without one, or a video without features, is an error."""
    gt: OrderedDict[str, np.ndarray] = OrderedDict()
    for vid, label in _rows(manifest_test_rows):
        if vid not in n_snippets_by_video:
            raise KeyError(f"test video {vid!r} has no snippet count (missing from the features)")
        if vid in intervals_by_video:
            intervals = intervals_by_video[vid]
        elif label == 0:
            intervals = []
        else:
            raise KeyError(f"abnormal test video {vid!r} has no temporal annotation")
        gt[vid] = frame_labels(int(n_snippets_by_video[vid]), clip_len, intervals)
    return gt


def mask_ground_truth(video_ids: Iterable[str], mask_dir: str | os.PathLike,
                      n_frames_by_video: Mapping[str, int]) -> "OrderedDict[str, np.ndarray]":
    """ShanghaiTech-style GT from per-video frame masks (``{mask_dir}/{video}.npy``): a video
    with a mask gets it edge-padded/truncated to its GT length, one without is all normal."""
    mask_dir = Path(mask_dir)
    gt: OrderedDict[str, np.ndarray] = OrderedDict()
    for vid in video_ids:
        n = int(n_frames_by_video[vid])
        f = mask_dir / f"{vid}.npy"
        if f.exists():
            mask = np.load(f, allow_pickle=False)
            if mask.ndim != 1:
                raise ValueError(f"{f}: frame mask must be 1-D, got shape {mask.shape}")
            gt[vid] = fit_length((mask > 0).astype(np.uint8), n)
        else:
            gt[vid] = np.zeros(n, dtype=np.uint8)
    return gt


def save_ground_truth(path: str | os.PathLike, gt: Mapping[str, np.ndarray]) -> None:
    """One array per video plus ``__order__`` (a str array, so no pickle on load); atomic."""
    if ORDER_KEY in gt:
        raise ValueError(f"{path}: video id {ORDER_KEY!r} is reserved")
    arrays = {ORDER_KEY: np.array(list(gt), dtype=str)}
    arrays.update({vid: np.asarray(v, dtype=np.uint8) for vid, v in gt.items()})
    with atomic_path(path, suffix=".npz") as tmp:
        with open(tmp, "wb") as fh:  # a file handle stops numpy from appending ".npz"
            np.savez_compressed(fh, **arrays)


def load_ground_truth(path: str | os.PathLike) -> "OrderedDict[str, np.ndarray]":
    """Inverse of ``save_ground_truth``."""
    with np.load(path, allow_pickle=False) as npz:
        if ORDER_KEY not in npz.files:
            raise ValueError(f"{path}: no {ORDER_KEY!r} entry; not a ground-truth file")
        return OrderedDict((str(v), npz[str(v)]) for v in npz[ORDER_KEY])


def build_store_ground_truth(manifest: str | os.PathLike, store_dir: str | os.PathLike,
                             test_annotation: str | os.PathLike, clip_len: int,
                             out: str | os.PathLike, layout: str = "ucf_crime"
                             ) -> "OrderedDict[str, np.ndarray]":
    """The `ground_truth` stage: frame labels of every test video in the manifest, T·clip_len
    long with T from the feature store, saved as .npz.

    ``test_annotation`` by layout: ``ucf_crime`` Sultani's or UR-DMU's annotation (inclusive
    frames); ``xd_violence`` ``annotations.txt`` (end-exclusive); ``shanghaitech`` the
    ``test_frame_mask`` folder (masks edge-padded or cut to T·clip_len, as RTFM's gt-sh.npy)."""
    from wsvad_core.data.annotations import parse_xd_violence_annotation, read_test_annotation
    from wsvad_core.data.manifest import read_manifest
    from wsvad_core.features.store import open_store

    df = read_manifest(manifest)
    test = df[df["split"] == "test"]
    store = open_store(store_dir)
    missing = [v for v in test["video_id"].astype(str) if v not in store]
    if missing:
        raise KeyError(f"{len(missing)} test videos of {manifest} are missing from the feature store "
                       f"{store_dir}: {missing[:5]}")
    n_snippets = {vid: store.n_snippets(vid) for vid in test["video_id"].astype(str)}
    if layout == "shanghaitech":
        gt = mask_ground_truth(list(n_snippets), test_annotation,
                               {v: t * int(clip_len) for v, t in n_snippets.items()})
        masked = {v for v, g in gt.items() if g.any()}
        wrong = [v for v, lab in zip(test["video_id"].astype(str), test["label"]) if
                 int(lab) == 1 and v not in masked]
        if wrong:
            raise KeyError(f"{test_annotation}: abnormal test videos without an abnormal frame in "
                           f"their mask: {wrong[:5]}")
    else:
        if layout == "xd_violence":
            intervals = parse_xd_violence_annotation(test_annotation)
        elif layout == "ucf_crime":
            intervals = {vid: ann.intervals for vid, ann in read_test_annotation(test_annotation).items()}
        else:
            raise ValueError(f"unknown dataset layout {layout!r}")
        gt = build_ground_truth(test, n_snippets, clip_len, intervals)
    save_ground_truth(out, gt)
    return gt
