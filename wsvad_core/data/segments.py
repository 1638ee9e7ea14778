"""Segment policies: a training video's snippet features (C, T, D) -> (C, S, D).

* ``meanpool`` (RTFM utils.py ``process_feat``; also UR-DMU's training loader): split the T snippets
  at ``floor(np.linspace(0, T, S + 1))``, average each range; an empty range (T < S) takes the
  single snippet at its start.
* ``resize`` (S3R anomaly/datasets/video_dataset.py): ``cv2.resize(..., INTER_LINEAR)`` along time,
  i.e. linear interpolation with half-pixel centres (``src = (j + 0.5) * T / S - 0.5``, clamped to
  the ends), no anti-aliasing when shrinking; reproduced here in numpy without OpenCV.
* ``pad_pool`` (VadCLIP src/utils/tools.py ``process_feat`` with is_random=False, its training
  default): if T > S mean-pool as above, else zero-pad at the end to S; the number of real
  snippets is returned on request (for masks).

All return float32.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

__all__ = ["meanpool", "resize", "pad_pool", "POLICIES", "apply_segment_policy",
           "segment_bounds"]


def _as_ctd(x: np.ndarray) -> tuple[np.ndarray, bool]:
    x = np.asarray(x)
    squeeze = x.ndim == 2  # (T, D) accepted for convenience
    if squeeze:
        x = x[None]
    if x.ndim != 3:
        raise ValueError(f"expected a (crops, time, dim) array, got shape {x.shape}")
    if x.shape[1] == 0:
        raise ValueError("cannot segment a video with 0 snippets")
    return x.astype(np.float32, copy=False), squeeze


def _check_s(n_segments: int) -> int:
    if int(n_segments) != n_segments or n_segments < 1:
        raise ValueError(f"n_segments must be a positive integer, got {n_segments!r}")
    return int(n_segments)


def segment_bounds(n_snippets: int, n_segments: int) -> np.ndarray:
    """The S + 1 boundaries RTFM uses: ``np.linspace(0, T, S+1, dtype=int)`` (floor)."""
    return np.linspace(0, n_snippets, _check_s(n_segments) + 1).astype(np.int64)


def meanpool(x: np.ndarray, n_segments: int) -> np.ndarray:
    x, squeeze = _as_ctd(x)
    S = _check_s(n_segments)
    r = segment_bounds(x.shape[1], S)
    out = np.empty((x.shape[0], S, x.shape[2]), dtype=np.float32)
    for i in range(S):
        if r[i] != r[i + 1]:
            out[:, i] = x[:, r[i]:r[i + 1]].mean(axis=1)
        else:  # fewer snippets than segments: repeat the snippet at the range start
            out[:, i] = x[:, r[i]]
    return out[0] if squeeze else out


def resize(x: np.ndarray, n_segments: int) -> np.ndarray:
    x, squeeze = _as_ctd(x)
    S = _check_s(n_segments)
    T = x.shape[1]
    src = (np.arange(S, dtype=np.float64) + 0.5) * (T / S) - 0.5
    src = np.clip(src, 0.0, T - 1)  # OpenCV replicates the border samples
    i0 = np.floor(src).astype(np.int64)
    i1 = np.minimum(i0 + 1, T - 1)
    w = (src - i0).astype(np.float32)[None, :, None]
    out = x[:, i0] * (1.0 - w) + x[:, i1] * w
    out = out.astype(np.float32, copy=False)
    return out[0] if squeeze else out


def pad_pool(x: np.ndarray, n_segments: int, return_length: bool = False
             ) -> np.ndarray | tuple[np.ndarray, int]:
    x, squeeze = _as_ctd(x)
    S = _check_s(n_segments)
    T = x.shape[1]
    if T > S:
        out, length = meanpool(x, S), S
    else:
        out = np.zeros((x.shape[0], S, x.shape[2]), dtype=np.float32)
        out[:, :T] = x
        length = T
    out = out[0] if squeeze else out
    return (out, length) if return_length else out


POLICIES: dict[str, Callable[[np.ndarray, int], np.ndarray]] = {
    "meanpool": meanpool,
    "resize": resize,
    "pad_pool": pad_pool,
}


def apply_segment_policy(name: str, x: np.ndarray, n_segments: int) -> np.ndarray:
    try:
        fn = POLICIES[name]
    except KeyError:
        raise ValueError(f"unknown segment policy {name!r}; valid: {', '.join(POLICIES)}") from None
    return fn(x, n_segments)


