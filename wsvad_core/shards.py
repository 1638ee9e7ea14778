"""Stable assignment of videos to extraction shards.

crc32 rather than ``hash()``: Python salts str hashes per process, and a shard must hold the
same videos in every Snakemake job and on every machine.
"""
from __future__ import annotations

import zlib


def _check(n_shards: int) -> None:
    if isinstance(n_shards, bool) or not isinstance(n_shards, int) or n_shards < 1:
        raise ValueError(f"n_shards must be a positive integer, got {n_shards!r}")


def shard_of(video_id: str, n_shards: int) -> int:
    """Shard index in ``[0, n_shards)`` of one video id."""
    _check(n_shards)
    return zlib.crc32(video_id.encode("utf-8")) % n_shards
