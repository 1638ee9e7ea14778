"""A training video's segments read piece by piece from the feature store.

``apply_segment_policy(policy, store[video], S)`` holds the whole video in float16 and float32 at once:
fine for most videos, but UCF-Crime's training set has a video of 61,032 snippets (7.5 GB as
10 crops x 2048-d float32). For videos over ``chunk_bytes`` this reads only what each segment
needs (its snippet range for ``meanpool`` / ``pad_pool``, its two neighbours for ``resize``)
and computes the segment exactly as ``wsvad_core.data.segments`` does, so the result is
bit-identical while peak memory is bounded by the longest segment.
"""
from __future__ import annotations

import numpy as np

from wsvad_core.data.segments import apply_segment_policy, segment_bounds
from wsvad_core.features.store import check_video_features

CHUNK_BYTES = 64 * 2**20  # videos above this (as float32) are read segment by segment


def video_segments(store, video_id: str, policy: str, n_segments: int, dim: int | None = None,
                   crops: int | None = None, chunk_bytes: int = CHUNK_BYTES) -> np.ndarray:
    """(C, S, D) float32 segments of one video, checked for shape and NaN/inf."""
    array = getattr(store, "_array", None)  # FeatureStore's zarr array: sliceable along T
    shape = store.shape(video_id) if hasattr(store, "shape") else None
    small = shape is None or int(np.prod(shape)) * 4 <= chunk_bytes
    if array is None or small or policy not in ("meanpool", "resize", "pad_pool"):
        feats = np.asarray(store[video_id], dtype=np.float32)
        check_video_features(store, video_id, feats, dim=dim, crops=crops)
        return apply_segment_policy(policy, feats, n_segments)
    z = array(video_id)
    c, t, d = shape
    s = int(n_segments)

    def read(a: int, b: int) -> np.ndarray:
        x = np.asarray(z[:, a:b], dtype=np.float32)
        check_video_features(store, video_id, x, dim=dim, crops=crops)
        return x

    out = np.empty((c, s, d), dtype=np.float32)
    if policy == "pad_pool" and t <= s:  # never large: at most S snippets
        return apply_segment_policy(policy, read(0, t), s)
    if policy in ("meanpool", "pad_pool"):
        r = segment_bounds(t, s)
        for i in range(s):
            if r[i] != r[i + 1]:
                out[:, i] = read(r[i], r[i + 1]).mean(axis=1)
            else:  # fewer snippets than segments: the snippet at the range start
                out[:, i] = read(r[i], r[i] + 1)[:, 0]
        return out
    # resize: linear interpolation with half-pixel centres, as data/segments.py resize()
    src = np.clip((np.arange(s, dtype=np.float64) + 0.5) * (t / s) - 0.5, 0.0, t - 1)
    i0 = np.floor(src).astype(np.int64)
    i1 = np.minimum(i0 + 1, t - 1)
    w = (src - i0).astype(np.float32)
    for j in range(s):
        x = read(i0[j], i1[j] + 1)
        out[:, j] = x[:, 0] * (1.0 - w[j]) + x[:, -1] * w[j]
    return out
