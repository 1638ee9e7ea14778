"""Frames of a stream -> the run's snippets, cut as ``features/decode.py`` cuts a finished video.

Snippet ``k`` of a segment covers its frames ``[k * stride, k * stride + clip_len)`` and samples
``frames_per_snippet`` of them at the offsets :func:`sample_offsets` gives (all of them for I3D,
e.g. offsets 4 and 12 of 16 for two CLIP frames). A snippet is complete when its last frame
arrives. When the stream ends, the frames after the last complete snippet make one more,
padded by the recipe's ``t_rule`` (``ceil_loop``: its own frames repeated cyclically,
``ceil_last``: its last frame repeated; ``floor`` drops it), as the offline reader pads the last
snippet of a file: so a finished stream gives the snippets of the same file.

A *segment* is what lies between two gaps (a dropped and reopened stream): frames on both sides
of a gap are not consecutive, so the unfinished snippet at a gap is dropped, and the next
segment's snippets start at its first frame. Only the last ``clip_len`` frames are kept.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from wsvad_core.features.decode import T_RULES

__all__ = ["Frame", "Snippet", "SnippetAssembler", "sample_offsets"]


def sample_offsets(clip_len: int, frames_per_snippet: int) -> np.ndarray:
    """Offsets of the sampled frames inside a snippet: the centres of ``frames_per_snippet``
    equal sub-windows (``features.decode.snippet_indices``)."""
    return (np.arange(frames_per_snippet, dtype=np.int64) * 2 + 1) * clip_len // (2 * frames_per_snippet)


@dataclass
class Frame:
    """One decoded frame. ``pixels``: uint8 RGB ``(H, W, 3)`` after the recipe's host transform,
    made in the decoding thread when a complete snippet samples the frame; otherwise ``raw``
    holds the decoded frame, converted only if a snippet cut short by the stream's end needs it."""

    number: int      # frame number in the stream since the watch began (continues across gaps)
    arrival: float   # time.perf_counter() when it was decoded
    wall: float      # time.time() then
    pixels: np.ndarray | None = None
    raw: Any = None


@dataclass
class Snippet:
    index: int          # snippet number since the watch began
    first: int          # stream frame number of its first frame
    last: int           # ... of its last frame (inclusive)
    frames: np.ndarray  # (frames_per_snippet, H, W, 3) uint8
    arrival: float      # perf_counter of its last frame's arrival: latency is measured from here
    wall: float         # time.time() of that arrival
    padded: bool = False  # the stream ended inside it: filled by the t_rule


class SnippetAssembler:
    """Push frames in order; :meth:`push` returns each snippet as it completes."""

    def __init__(self, clip_len: int, stride: int, frames_per_snippet: int, t_rule: str = "ceil_loop",
                 to_pixels: Callable[[Any], np.ndarray] | None = None):
        if not 1 <= frames_per_snippet <= clip_len or stride < 1:
            raise ValueError(f"snippet geometry clip_len={clip_len}, stride={stride}, "
                             f"frames_per_snippet={frames_per_snippet}: need 1 <= frames_per_snippet <= clip_len, "
                             "stride >= 1")
        if t_rule not in T_RULES:
            raise ValueError(f"t_rule {t_rule!r}: expected one of {T_RULES}")
        self.clip_len, self.stride, self.t_rule = int(clip_len), int(stride), t_rule
        self.offsets = sample_offsets(self.clip_len, int(frames_per_snippet))
        self._offset_set = frozenset(int(o) for o in self.offsets)
        self.to_pixels = to_pixels
        self._buf: deque[Frame] = deque(maxlen=self.clip_len)
        self._pos = 0    # frames received in this segment
        self._next = 0   # segment position of the next snippet's first frame
        self._covered = 0  # segment positions below this are in a complete snippet
        self.count = 0   # snippets made

    def sampled(self, pos: int) -> bool:
        """Whether a complete snippet samples the frame at segment position ``pos`` (the decoding
        thread converts only those frames)."""
        k_lo = max(0, -(-(pos - self.clip_len + 1) // self.stride))
        return any(pos - k * self.stride in self._offset_set for k in range(k_lo, pos // self.stride + 1))

    def _pixels(self, f: Frame) -> np.ndarray:
        if f.pixels is None:
            if self.to_pixels is None:
                raise ValueError(f"frame {f.number} has no pixels and the assembler no converter")
            f.pixels = self.to_pixels(f.raw)
        return f.pixels

    def _make(self, frames: list[Frame], picks, padded: bool) -> Snippet:
        pixels = [self._pixels(frames[int(i)]) for i in picks]
        if any(p.shape != pixels[0].shape for p in pixels):
            raise ValueError(f"frames {frames[0].number}..{frames[-1].number} of one snippet differ in size")
        snip = Snippet(index=self.count, first=frames[0].number, last=frames[-1].number,
                       frames=np.stack(pixels), arrival=frames[-1].arrival, wall=frames[-1].wall,
                       padded=padded)
        self.count += 1
        return snip

    def push(self, frame: Frame) -> Snippet | None:
        self._buf.append(frame)
        self._pos += 1
        if self._pos < self._next + self.clip_len:
            return None
        # the buffer's last clip_len frames are the snippet [next, next + clip_len)
        frames = list(self._buf)[-self.clip_len:]
        self._next += self.stride
        self._covered = self._pos
        return self._make(frames, self.offsets, padded=False)

    @property
    def pending(self) -> int:
        """Frames received towards the next snippet (dropped at a gap, padded at the end)."""
        return max(0, self._pos - self._next)

    def finish(self) -> Snippet | None:
        """The stream is over: the frames after the last complete snippet as one more snippet,
        padded by the t_rule (None when there are none, or for ``floor``)."""
        avail = self.pending
        # with stride < clip_len the last complete snippet may already cover every frame
        if self.t_rule == "floor" or avail == 0 or self._pos <= self._covered:
            return None
        frames = list(self._buf)[-avail:]
        if self.t_rule == "ceil_loop":
            picks = self.offsets % avail
        else:  # ceil_last
            picks = np.minimum(self.offsets, avail - 1)
        snip = self._make(frames, picks, padded=True)
        self._next = self._covered = self._pos
        return snip

    def reset(self) -> int:
        """A gap: the unfinished snippet's frames are dropped; returns how many."""
        dropped = self.pending
        self._buf.clear()
        self._pos = self._next = self._covered = 0
        return dropped
