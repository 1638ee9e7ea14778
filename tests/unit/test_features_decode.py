"""Decoding: snippet geometry, real mp4s written with PyAV, vendored sample videos of other
encoders (tests/fixtures/videos), and the errors of broken files."""
from __future__ import annotations

import math
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from synthetic import write_mp4
from wsvad_core.errors import VideoReadError
from wsvad_core.features import decode
from wsvad_core.features.decode import SnippetReader, iter_snippet_batches, n_snippets, snippet_indices

VIDEOS = Path(__file__).resolve().parents[1] / "fixtures" / "videos"
# frame counts and fps of the vendored sample videos (tests/fixtures/videos/README.md)
SAMPLES = {"carphone_distorted.mp4": (120, 29.97), "bikes_30.mp4": (30, 25.0)}


LOW, HIGH = 16, 235  # video-range black and white


def index_video(path, n: int, h: int = 48, w: int = 64) -> Path:
    """Frame i shows i in binary: 8 vertical stripes, white where the bit is set, so a decoded
    frame tells its own index whatever the codec does to exact values."""
    bits = (np.arange(n)[:, None] >> np.arange(8)[None, :]) & 1            # (n, 8)
    stripes = np.where(bits.astype(bool), HIGH, LOW).astype(np.uint8)      # (n, 8)
    cols = np.repeat(stripes, w // 8, axis=1)                               # (n, w)
    frames = np.broadcast_to(cols[:, None, :, None], (n, h, w, 3)).copy()
    return write_mp4(path, frames)


def frame_ids(batch: torch.Tensor, n: int) -> np.ndarray:
    """Index of each decoded frame from its stripes, (B, F, H, W, 3) -> (B, F); stripe centres
    must be within codec tolerance of black/white."""
    b, f, h, w, _ = batch.shape
    sw = w // 8
    centres = batch[:, :, :, sw // 2::sw].float().mean(dim=(2, 4)).numpy()  # (B, F, 8)
    on = centres > (LOW + HIGH) / 2
    assert np.all(np.abs(centres - np.where(on, HIGH, LOW)) < 8), "frame values drifted beyond codec tolerance"
    ids = (on.astype(int) << np.arange(8)).sum(-1)
    assert ids.max() < n
    return ids


# ---------------------------------------------------------------- snippet geometry

@pytest.mark.parametrize("n", [1, 5, 15, 16, 17, 31, 32, 33, 100, 1000])
def test_snippet_count_is_ceil(n):
    idx = snippet_indices(n)
    assert idx.shape == (math.ceil(n / 16), 16)
    assert n_snippets(n) == math.ceil(n / 16)
    assert idx.dtype == np.int64 and idx.min() >= 0 and idx.max() < n
    starts = np.arange(len(idx)) * 16
    assert np.all((idx >= starts[:, None]) & (idx < starts[:, None] + 16))


def test_full_snippets_are_consecutive_and_last_wraps():
    idx = snippet_indices(20)
    assert idx[0].tolist() == list(range(16))
    # 4 frames left: repeated cyclically from the snippet's start
    assert idx[1].tolist() == [16, 17, 18, 19] * 4
    assert snippet_indices(33)[-1].tolist() == [32] * 16
    assert snippet_indices(1).tolist() == [[0] * 16]
    assert snippet_indices(26)[-1].tolist() == [16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 16, 17, 18, 19, 20, 21]


def test_sparse_sampling_inside_snippets():
    assert snippet_indices(32, frames_per_snippet=2).tolist() == [[4, 12], [20, 28]]
    assert snippet_indices(32, frames_per_snippet=1).tolist() == [[8], [24]]
    assert snippet_indices(32, frames_per_snippet=4).tolist() == [[2, 6, 10, 14], [18, 22, 26, 30]]
    # sampled from the loop-padded last snippet: offsets 4, 12 of frames 16..20 -> 20, 16+12%5
    assert snippet_indices(21, frames_per_snippet=2)[-1].tolist() == [20, 18]


def test_overlapping_stride_covers_the_end():
    idx = snippet_indices(40, clip_len=16, stride=8)
    assert idx[:, 0].tolist() == [0, 8, 16, 24]
    assert idx[-1, -1] == 39


@pytest.mark.parametrize("kwargs", [dict(n_frames=0), dict(n_frames=10, frames_per_snippet=17),
                                    dict(n_frames=10, frames_per_snippet=0), dict(n_frames=10, stride=0)])
def test_bad_geometry_raises(kwargs):
    with pytest.raises(ValueError):
        snippet_indices(**kwargs)


# ---------------------------------------------------------------- real mp4s

def test_pyav_video_frames_and_values(tmp_path):
    n = 40
    path = index_video(tmp_path / "gray.mp4", n)
    reader = SnippetReader(path)
    assert reader.n_frames == n and reader.fps == pytest.approx(25.0)
    assert reader.n_snippets == 3
    batches = list(reader.batches(2))
    assert [b.shape[0] for b in batches] == [2, 1]
    assert all(b.dtype == torch.uint8 and b.shape[1:] == (16, 48, 64, 3) for b in batches)
    ids = frame_ids(torch.cat(batches), n)
    assert ids.tolist() == snippet_indices(n).tolist()
    # last snippet: frames 32..39 then 32..39 again
    assert ids[-1].tolist() == list(range(32, 40)) * 2


def test_spatial_pattern_survives(tmp_path):
    # four flat quadrants of distinct colours
    h, w = 64, 96
    frame = np.zeros((h, w, 3), np.uint8)
    frame[:32, :48] = (200, 40, 40)
    frame[:32, 48:] = (40, 200, 40)
    frame[32:, :48] = (40, 40, 200)
    frame[32:, 48:] = (220, 220, 220)
    path = write_mp4(tmp_path / "quad.mp4", np.stack([frame] * 5))
    (batch,) = list(iter_snippet_batches(path, batch_snippets=4))
    got = batch[0, 3].numpy().astype(int)
    inner = (slice(4, 28), slice(4, 44)), (slice(4, 28), slice(52, 92)), (slice(36, 60), slice(4, 44)), \
        (slice(36, 60), slice(52, 92))
    for sl in inner:
        assert np.abs(got[sl] - frame[sl]).max() <= 6  # yuv420p round trip


def test_sparse_frames_decoded(tmp_path):
    n = 37
    path = index_video(tmp_path / "g.mp4", n)
    batches = list(iter_snippet_batches(path, frames_per_snippet=2, batch_snippets=8))
    assert len(batches) == 1 and batches[0].shape[:2] == (3, 2)
    assert frame_ids(batches[0], n).tolist() == snippet_indices(n, frames_per_snippet=2).tolist()


def test_chunked_reads_never_ask_for_the_whole_video(tmp_path, monkeypatch):
    n = 70
    path = index_video(tmp_path / "g.mp4", n, 32, 32)
    reader = SnippetReader(path)
    asked = []
    real = reader._reader.get_batch
    monkeypatch.setattr(reader._reader, "get_batch", lambda idx: asked.append(list(idx)) or real(idx))
    out = torch.cat(list(reader.batches(2)))
    assert max(len(a) for a in asked) <= 32 and len(asked) == 3
    assert frame_ids(out, n).tolist() == snippet_indices(n).tolist()


# ---------------------------------------------------------------- broken files

def test_zero_byte_video(tmp_path):
    p = tmp_path / "empty.mp4"
    p.write_bytes(b"")
    with pytest.raises(VideoReadError, match=r"empty\.mp4.*empty"):
        SnippetReader(p)


def test_missing_and_garbage_video(tmp_path):
    with pytest.raises(VideoReadError, match="nothere.mp4"):
        SnippetReader(tmp_path / "nothere.mp4")
    p = tmp_path / "garbage.mp4"
    p.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(VideoReadError, match=r"garbage\.mp4.*cannot be opened"):
        list(iter_snippet_batches(p))


def test_truncated_video(tmp_path):
    src = index_video(tmp_path / "g.mp4", 20)
    p = tmp_path / "cut.mp4"
    p.write_bytes(src.read_bytes()[: src.stat().st_size // 2])  # moov atom (at the end) lost
    with pytest.raises(VideoReadError, match="cut.mp4"):
        SnippetReader(p)


def test_corruption_mid_decode(tmp_path):
    noise = np.random.default_rng(1).integers(0, 256, (60, 96, 128, 3), dtype=np.uint8)
    src = write_mp4(tmp_path / "noise.mp4", noise, g="1", crf="10")
    data = bytearray(src.read_bytes())
    size = len(data)
    data[size // 2: size // 2 + size // 10] = bytes(size // 10)  # zero several intra frames
    bad = tmp_path / "midbad.mp4"
    bad.write_bytes(bytes(data))
    reader = SnippetReader(bad)  # the container opens: the failure comes while decoding
    with pytest.raises(VideoReadError, match=r"midbad\.mp4.*decoding frames"):
        list(reader.batches(1))


def test_decoder_error_is_wrapped(tmp_path, monkeypatch):
    path = index_video(tmp_path / "g.mp4", 40)
    reader = SnippetReader(path)
    calls = {"n": 0}

    def flaky(idx):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("simulated decoder failure")
        return real(idx)

    real = reader._reader.get_batch
    monkeypatch.setattr(reader._reader, "get_batch", flaky)
    it = reader.batches(1)
    assert next(it).shape[0] == 1
    with pytest.raises(VideoReadError, match=r"g\.mp4: decoding frames 16\.\.31 of 40 failed.*simulated"):
        next(it)


# ---------------------------------------------------------------- sample videos of other encoders

@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_sample_videos_decode(name):
    path = VIDEOS / name
    n, fps = SAMPLES[name]
    reader = SnippetReader(path)
    assert reader.n_frames == n and reader.fps == pytest.approx(fps, abs=0.01)
    batches = list(reader.batches(4))
    out = torch.cat(batches)
    assert out.shape[:2] == (math.ceil(n / 16), 16) and out.dtype == torch.uint8
    if n % 16:
        # the padded last snippet repeats its own first frames
        k = n % 16
        assert torch.equal(out[-1, k:], out[-1, :16 - k])


def test_sample_video_frames_match_pyav():
    """decord's frame i is PyAV's frame i (no off-by-one in random access, B-frames reordered)."""
    path = VIDEOS / "bikes_30.mp4"
    wanted = [0, 7, 17, 29]
    with av.open(str(path)) as c:
        ref = {i: f.to_ndarray(format="rgb24") for i, f in enumerate(c.decode(video=0)) if i in wanted}
    idx = snippet_indices(30)
    reader = SnippetReader(path)
    decoded = torch.cat(list(reader.batches(8))).numpy()
    for i in wanted:
        t, k = np.argwhere(idx == i)[0]
        diff = np.abs(decoded[t, k].astype(int) - ref[i].astype(int))
        assert diff.mean() < 2.0, f"frame {i}: mean abs diff {diff.mean():.2f}"


def test_sample_video_corrupted_mid_stream(tmp_path):
    data = bytearray((VIDEOS / "bikes_30.mp4").read_bytes())
    mid = len(data) // 2
    data[mid:mid + 10_000] = bytes(10_000)  # a quarter of the file, in the middle of the frames
    bad = tmp_path / "bikes_bad.mp4"
    bad.write_bytes(bytes(data))
    with pytest.raises(VideoReadError, match="bikes_bad.mp4"):
        list(iter_snippet_batches(bad, batch_snippets=4))


def test_decord_import_is_lazy():
    # the DAG-building process imports wsvad_core without decord's native library loaded
    assert "decord" not in decode.__dict__


def test_decord_width_bug_gets_a_hint(tmp_path):
    # decord 0.6 fails on RGB frames 48 px wide: the error must say what to do
    path = index_video(tmp_path / "w48.mp4", 4, 32, 48)
    with pytest.raises(VideoReadError, match=r"w48\.mp4.*re-encode"):
        list(iter_snippet_batches(path))
