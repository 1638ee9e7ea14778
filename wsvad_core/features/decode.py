"""Video decoding with decord, snippet by snippet.

A video of ``n`` frames becomes snippets of ``clip_len`` consecutive frames, ``stride`` apart. How
many, and what fills the last one (``T_RULES``, the recipe's ``t_rule``), is what the published
extractors disagree on:

* ``ceil_loop`` (default): ``T = ceil(n / clip_len)``; a short last snippet repeats its own frames
  cyclically (RTFM-style; RTFM's UCF-Crime GT is sum(ceil(n/16) * 16) frames);
* ``ceil_last``: the same T, the last frame repeated (UR-DMU's ``i3d_extract.py``);
* ``floor``: the last partial snippet dropped, ``T = floor((n - clip_len) / stride) + 1``
  (Gowtham's extractor; DeepMIL / XD-Violence as users matched them).

Frames are read in chunks of a few snippets so a long video never sits in memory at once.
"""
from __future__ import annotations

import math
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from wsvad_core.errors import VideoReadError

__all__ = ["T_RULES", "snippet_indices", "n_snippets", "SnippetReader", "iter_snippet_batches",
           "probe_video"]

T_RULES = ("ceil_loop", "ceil_last", "floor")


def n_snippets(n_frames: int, clip_len: int = 16, stride: int = 16, t_rule: str = "ceil_loop") -> int:
    """Number of snippets; ``ceil(n_frames / clip_len)`` (``floor`` for ``t_rule="floor"``)
    when ``stride == clip_len``. 0 when ``floor`` leaves none (fewer frames than one snippet)."""
    if n_frames < 1:
        raise ValueError(f"n_frames must be >= 1, got {n_frames}")
    if clip_len < 1 or stride < 1:
        raise ValueError(f"clip_len and stride must be >= 1, got {clip_len}, {stride}")
    if t_rule not in T_RULES:
        raise ValueError(f"t_rule {t_rule!r}: expected one of {T_RULES}")
    if t_rule == "floor":
        return (n_frames - clip_len) // stride + 1 if n_frames >= clip_len else 0
    # the last snippet starts at or before the last frame and covers it
    return math.ceil(max(n_frames - clip_len, 0) / stride) + 1


def snippet_indices(n_frames: int, clip_len: int = 16, stride: int = 16,
                    frames_per_snippet: int = 16, t_rule: str = "ceil_loop") -> np.ndarray:
    """Frame indices of every snippet, int64 array ``(T, frames_per_snippet)``.

    Snippet ``t`` covers frames ``[t*stride, t*stride + clip_len)``; positions past the end wrap
    to the snippet's own start (``ceil_loop``: ``start + offset % available``) or repeat the last
    frame (``ceil_last``). With ``frames_per_snippet < clip_len`` the frames are taken at the
    centres of equal sub-windows of the (padded) snippet, e.g. offsets 4 and 12 of 16 for two
    frames, the middle frame (8) for one.
    """
    if not 1 <= frames_per_snippet <= clip_len:
        raise ValueError(f"frames_per_snippet must be in [1, clip_len={clip_len}], got {frames_per_snippet}")
    t = n_snippets(n_frames, clip_len, stride, t_rule)
    starts = np.arange(t, dtype=np.int64) * stride
    offsets = (np.arange(frames_per_snippet, dtype=np.int64) * 2 + 1) * clip_len // (2 * frames_per_snippet)
    if t_rule == "ceil_last":
        return np.minimum(starts[:, None] + offsets[None, :], n_frames - 1)
    available = np.minimum(n_frames - starts, clip_len)  # >= 1 by construction of t
    return starts[:, None] + offsets[None, :] % available[:, None]


def _open(path: str | os.PathLike):
    import decord  # imported lazily: the DAG-building process must not need it

    path = str(path)
    if not os.path.exists(path):
        raise VideoReadError(path, "file does not exist")
    if os.path.getsize(path) == 0:
        raise VideoReadError(path, "file is empty (0 bytes)")
    try:
        # one decoder thread: the extractor already overlaps decoding with the model
        reader = decord.VideoReader(path, ctx=decord.cpu(0), num_threads=1)
    except Exception as err:  # decord raises RuntimeError / DECORDError with ffmpeg's message
        why = _stream_problem(path)
        raise VideoReadError(path, f"cannot be opened: {why}" if why else
                             f"cannot be opened by decord: {_short(err)}") from err
    n = len(reader)
    if n < 1:
        raise VideoReadError(path, "has no frames")
    return reader


# Run in a child process: PyAV and decord bundle different ffmpeg builds, and importing av
# after decord in one process crashes it (segfault). decord loses FFmpeg's own reason ("moov atom
# not found"); PyAV captures FFmpeg's log, so the child reports it.
_PROBE_STREAMS = """
import json, sys
import av, av.logging
av.logging.set_level(av.logging.ERROR)
with av.logging.Capture(local=False) as logs:
    try:
        with av.open(sys.argv[1]) as c:
            out = {"streams": [[s.type, s.codec_context.name if s.codec_context else None] for s in c.streams]}
    except av.FFmpegError as err:
        out = {"error": err.strerror or str(err),
               "log": [m.strip() for lvl, _, m in logs if lvl <= av.logging.ERROR and m.strip()]}
print(json.dumps(out))
"""


def _stream_problem(path: str) -> str | None:
    """What is wrong with a container decord refused, as FFmpeg (through PyAV) says it: its
    reason for not opening the file ("moov atom not found" for a truncated mp4), no video stream
    at all, or a video codec ffmpeg has no decoder for (decord only says "Error reading" or
    "cannot find video stream")."""
    import json
    import subprocess
    import sys

    try:
        res = subprocess.run([sys.executable, "-c", _PROBE_STREAMS, path], capture_output=True,
                             text=True, timeout=60)
        probe = json.loads(res.stdout) if res.returncode == 0 else None
    except (OSError, ValueError, subprocess.SubprocessError):
        probe = None
    if probe is None:
        return None
    if "error" in probe:
        reasons = list(dict.fromkeys([*probe["log"], probe["error"]]))
        return "FFmpeg: " + "; ".join(reasons) + " (a damaged, truncated or non-video file)"
    streams = probe["streams"]
    video = [codec for kind, codec in streams if kind == "video"]
    if not video:
        kinds = ", ".join(f"{kind} {codec or '?'}" for kind, codec in streams)
        return f"no video stream in the file (streams: {kinds or 'none'})"
    if all(codec is None for codec in video):
        return ("the video stream's codec has no decoder in ffmpeg (unknown or unsupported codec); "
                "re-encode it, e.g. ffmpeg -i IN -c:v libx264 OUT.mp4")
    return None


def _short(err: Exception, limit: int = 300) -> str:
    text = " ".join(str(err).split())
    return text if len(text) <= limit else text[:limit] + "…"


def probe_video(path: str | os.PathLike) -> tuple[int, float]:
    """(frame count, average fps) as decord reports them."""
    reader = _open(path)
    return len(reader), float(reader.get_avg_fps())


class SnippetReader:
    """One opened video: its snippet geometry and the decoded snippets, in chunks.

    ``batches(n)`` yields uint8 tensors ``(B, frames_per_snippet, H, W, 3)`` (RGB) with
    ``B <= n``, snippets in order; decode failures raise ``VideoReadError`` naming the file.
    ``frame_fn`` (``transforms.host_transform``) is applied to each decoded frame once, before
    padded snippets repeat it.
    """

    def __init__(self, path: str | os.PathLike, clip_len: int = 16, stride: int = 16,
                 frames_per_snippet: int = 16, t_rule: str = "ceil_loop", frame_fn=None):
        self.path = str(path)
        self._reader = _open(self.path)
        self.n_frames = len(self._reader)
        self.fps = float(self._reader.get_avg_fps())
        self.frame_fn = frame_fn
        self.indices = snippet_indices(self.n_frames, clip_len, stride, frames_per_snippet, t_rule)

    @property
    def n_snippets(self) -> int:
        return len(self.indices)

    def batches(self, batch_snippets: int = 8) -> Iterator[torch.Tensor]:
        if batch_snippets < 1:
            raise ValueError(f"batch_snippets must be >= 1, got {batch_snippets}")
        for s in range(0, self.n_snippets, batch_snippets):
            idx = self.indices[s:s + batch_snippets]
            # decode each needed frame once, in increasing order (sequential reads are what
            # decord does fast), then gather: padded snippets repeat frames
            wanted, inverse = np.unique(idx, return_inverse=True)
            try:
                frames = self._reader.get_batch(wanted.tolist()).asnumpy()
            except Exception as err:
                hint = ""
                if "DECORDArrayCopyFromTo" in str(err):
                    # decord 0.6 mis-sizes RGB frames of some widths (16, 24, 48, 72 px seen)
                    hint = (" (decord cannot convert frames of this width; re-encode the video "
                            "to another width, e.g. a multiple of 32)")
                raise VideoReadError(self.path, f"decoding frames {wanted[0]}..{wanted[-1]} of "
                                     f"{self.n_frames} failed: {_short(err)}{hint}") from err
            if frames.shape[0] != len(wanted) or frames.ndim != 4 or frames.shape[-1] != 3:
                raise VideoReadError(self.path, f"decord returned frames of shape {frames.shape} "
                                     f"for {len(wanted)} requested frames")
            if self.frame_fn is not None:
                frames = self.frame_fn(frames)
            yield torch.from_numpy(frames[inverse.reshape(idx.shape)])


def iter_snippet_batches(path: str | os.PathLike | Path, clip_len: int = 16, stride: int = 16,
                         frames_per_snippet: int = 16, batch_snippets: int = 8
                         ) -> Iterator[torch.Tensor]:
    """Snippets of one video as uint8 tensors ``(B, frames_per_snippet, H, W, 3)``."""
    yield from SnippetReader(path, clip_len, stride, frames_per_snippet).batches(batch_snippets)
