"""A small synthetic dataset in the UCF-Crime layout, so that the whole DAG runs on a laptop.

Normal videos: a textured static background (different per video) with a few small, muted
objects drifting slowly. Abnormal videos are the same kind of scene, except on 1-2 intervals
(25-50% of the video in total) where an "event" happens: large bright saturated objects
moving fast, flashing, and a strong colour cast. Events change low-level statistics (colour,
contrast, motion energy) so much that even randomly initialised 3D-CNN and ViT features tell
them apart, while the per-video variation of normal scenes keeps the task non-trivial.

Everything is derived from ``seed`` and the video id (``numpy.random.Generator``), so a video's
pixels do not depend on how many other videos are generated.
"""
from __future__ import annotations

import os
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from wsvad_core.io import atomic_path

ABNORMAL_CLASSES = ("Explosion", "Fighting")
TRAIN_NORMAL_FOLDER = "Training_Normal_Videos_Anomaly"
TEST_NORMAL_FOLDER = "Testing_Normal_Videos_Anomaly"
TRAIN_LIST_NAME = "Anomaly_Train.txt"
TEST_ANNOTATION_NAME = "Temporal_Anomaly_Annotation.txt"


@dataclass(frozen=True)
class DemoVideo:
    video_id: str
    relpath: str   # relative to the dataset root, posix separators
    split: str     # "train" | "test"
    cls: str       # "Normal" or one of ABNORMAL_CLASSES
    label: int


def demo_layout(n_train_normal: int = 8, n_train_abnormal: int = 8, n_test_normal: int = 4,
                n_test_abnormal: int = 4) -> list[DemoVideo]:
    """The videos the generator writes: train in ``Anomaly_Train.txt`` order, then test in
    annotation order (both sorted by folder as the real files are: the anomaly classes sort
    before the ``*_Normal_*`` folders and before ``Normal``)."""
    for name, n in (("n_train_normal", n_train_normal), ("n_train_abnormal", n_train_abnormal),
                    ("n_test_normal", n_test_normal), ("n_test_abnormal", n_test_abnormal)):
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ValueError(f"{name} must be a non-negative integer, got {n!r}")

    def abnormal(split: str, n: int, first_number: dict[str, int]) -> list[DemoVideo]:
        out = []
        for k in range(n):  # classes alternate, numbered per class
            cls = ABNORMAL_CLASSES[k % len(ABNORMAL_CLASSES)]
            vid = f"{cls}{first_number[cls] + k // len(ABNORMAL_CLASSES):03d}_x264"
            out.append(DemoVideo(vid, f"{cls}/{vid}.mp4", split, cls, 1))
        return sorted(out, key=lambda v: v.video_id)

    train_counts = {c: len(range(i, n_train_abnormal, len(ABNORMAL_CLASSES)))
                    for i, c in enumerate(ABNORMAL_CLASSES)}
    videos = abnormal("train", n_train_abnormal, {c: 1 for c in ABNORMAL_CLASSES})
    videos += [DemoVideo(f"Normal_Videos{i:03d}_x264",
                         f"{TRAIN_NORMAL_FOLDER}/Normal_Videos{i:03d}_x264.mp4", "train",
                         "Normal", 0)
               for i in range(1, n_train_normal + 1)]
    # test ids continue the train numbering so that no id occurs in both splits
    videos += abnormal("test", n_test_abnormal, {c: train_counts[c] + 1 for c in ABNORMAL_CLASSES})
    videos += [DemoVideo(f"Normal_Videos_{i:03d}_x264",
                         f"{TEST_NORMAL_FOLDER}/Normal_Videos_{i:03d}_x264.mp4", "test",
                         "Normal", 0)
               for i in range(n_train_normal + 1, n_train_normal + n_test_normal + 1)]
    return videos


def demo_video_relpaths(n_train_normal: int = 8, n_train_abnormal: int = 8, n_test_normal: int = 4,
                        n_test_abnormal: int = 4) -> list[str]:
    """Relative paths of the videos ``generate_demo_dataset`` writes for these counts (so a
    Snakemake rule can declare them as outputs before generating)."""
    return [v.relpath for v in demo_layout(n_train_normal, n_train_abnormal, n_test_normal,
                                           n_test_abnormal)]


# ---------------------------------------------------------------------------------------------
# scene synthesis (vectorised over frames and pixels; the only Python loops are over objects)

def _video_rng(seed: int, video_id: str) -> np.random.Generator:
    return np.random.default_rng([int(seed), zlib.crc32(video_id.encode("utf-8"))])


def _trajectory(p0: np.ndarray, speed: float, angle: float, t: np.ndarray, r: float, h: int,
                w: int) -> np.ndarray:
    """(T, 2) centres (y, x) of an object of radius ``r`` starting at ``p0`` and bouncing off
    the frame borders (a triangle wave per axis, so no per-frame state)."""
    lo = np.array([r, r], dtype=np.float64)
    span = np.maximum(np.array([h - r, w - r]) - lo, 1e-6)
    x = np.mod(p0 - lo + speed * np.array([np.sin(angle), np.cos(angle)]) * t[:, None], 2 * span)
    return lo + np.where(x > span, 2 * span - x, x)


def _event_intervals(rng: np.random.Generator, n_frames: int) -> list[tuple[int, int]]:
    """1 or 2 disjoint inclusive intervals covering 25-50% of the video in total."""
    total = int(round(rng.uniform(0.25, 0.5) * n_frames))
    k = 2 if (rng.random() < 0.5 and total >= 8) else 1
    lengths = [total] if k == 1 else [total // 2 + int(rng.integers(-(total // 6), total // 6 + 1))]
    if k == 2:
        lengths.append(total - lengths[0])
    free = n_frames - total - (k - 1)  # k-1 frames keep two events apart
    gaps = np.sort(rng.integers(0, free + 1, size=k))
    intervals, offset = [], 0
    for i, (g, n) in enumerate(zip(gaps, lengths)):
        s = int(g) + offset + i
        intervals.append((s, s + n - 1))
        offset += n
    return intervals


def _background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    base = rng.uniform(45, 135, size=3)
    img = np.broadcast_to(base, (h, w, 3)).astype(np.float32).copy()
    img += (yy / h - 0.5)[..., None] * rng.uniform(-40, 40, size=3)  # lighting gradient
    for _ in range(int(rng.integers(2, 5))):  # gratings: the per-video "texture"
        theta, freq = rng.uniform(0, np.pi), rng.uniform(2, 14) * 2 * np.pi / max(h, w)
        phase = rng.uniform(0, 2 * np.pi)
        wave = np.sin(freq * (xx * np.cos(theta) + yy * np.sin(theta)) + phase)
        img += wave[..., None] * rng.uniform(-14, 14, size=3)
    cell = int(rng.integers(6, 16))  # blocky low-frequency clutter ("buildings", "floor tiles")
    blocks = rng.normal(0, 10, size=(h // cell + 1, w // cell + 1, 3))
    img += np.repeat(np.repeat(blocks, cell, 0), cell, 1)[:h, :w]
    for _ in range(int(rng.integers(1, 4))):  # a few static structures
        y0, x0 = int(rng.integers(0, h - 8)), int(rng.integers(0, w - 8))
        img[y0:y0 + int(rng.integers(8, h // 2)), x0:x0 + int(rng.integers(8, w // 3))] += \
            rng.uniform(-35, 35, size=3)
    img += rng.normal(0, 4, size=(h, w, 3))  # fine grain
    return np.clip(img, 0, 200)


def _paint(frames: np.ndarray, centres: np.ndarray, radius, colour, square: bool,
           active: np.ndarray | None = None) -> None:
    """Paint one object (per-frame centres (T, 2) as (y, x)) into frames (T, H, W, 3)."""
    t, h, w, _ = frames.shape
    yy = np.arange(h, dtype=np.float32)[None, :, None]
    xx = np.arange(w, dtype=np.float32)[None, None, :]
    dy = yy - centres[:, 0, None, None]
    dx = xx - centres[:, 1, None, None]
    r = np.asarray(radius, dtype=np.float32).reshape(-1, 1, 1)
    mask = (np.maximum(abs(dy), abs(dx)) <= r) if square else (dy * dy + dx * dx <= r * r)
    if active is not None:
        mask &= active[:, None, None]
    colour = np.asarray(colour, dtype=np.float32)
    colour = colour.reshape(-1, 1, 1, 3) if colour.ndim == 2 else colour
    np.copyto(frames, colour, where=mask[..., None])  # in place: no frame-sized temporaries


def _render(rng: np.random.Generator, n_frames: int, h: int, w: int, cls: str,
            intervals: list[tuple[int, int]]) -> np.ndarray:
    """uint8 frames (T, H, W, 3) of one video."""
    t = np.arange(n_frames, dtype=np.float32)
    bg = _background(rng, h, w)
    frames = np.broadcast_to(bg, (n_frames, h, w, 3)).astype(np.float32).copy()
    size = min(h, w)

    # normal activity: 2-6 small muted objects drifting slowly, sometimes one larger walker
    n_obj = int(rng.integers(2, 7))
    for i in range(n_obj):
        big = i == 0 and rng.random() < 0.4
        r = rng.uniform(0.06, 0.09) * size if big else rng.uniform(0.02, 0.05) * size
        speed = rng.uniform(0.8, 1.8) if big else rng.uniform(0.2, 1.0)
        ang = rng.uniform(0, 2 * np.pi)
        p0 = rng.uniform([r, r], [h - r, w - r])
        c = _trajectory(p0, speed, ang, t, r, h, w)
        colour = np.clip(bg.mean((0, 1)) + rng.uniform(-60, 60, size=3), 10, 190)
        _paint(frames, c, r, colour, square=bool(rng.random() < 0.5))

    # slow illumination drift and sensor noise, as in real static cameras
    frames *= (1 + 0.04 * np.sin(2 * np.pi * t / rng.uniform(40, 120) + rng.uniform(0, 6)))[
        :, None, None, None]

    if intervals:
        event = np.zeros(n_frames, dtype=bool)
        for s, e in intervals:
            event[s:e + 1] = True
        ev = np.flatnonzero(event)
        # colour cast + brightening on event frames
        if cls == "Explosion":
            gain, offset = np.array([1.25, 1.0, 0.55]), np.array([70, 35, 0])
        else:
            gain, offset = np.array([0.7, 0.6, 1.3]), np.array([40, 0, 70])
        gain = gain * rng.uniform(0.9, 1.1, 3)
        frames[ev] = frames[ev] * gain + offset
        # flashing: global brightness alternates every 2-3 frames
        period = int(rng.integers(2, 4))
        flash = np.where((t[ev] // period) % 2 == 0, 1.3, 0.8)
        frames[ev] *= flash[:, None, None, None]
        # large bright saturated objects moving fast (Explosion: expanding fireball too)
        for _ in range(int(rng.integers(2, 4))):
            r = rng.uniform(0.15, 0.25) * size
            speed = rng.uniform(4.0, 8.0)
            ang = rng.uniform(0, 2 * np.pi)
            p0 = rng.uniform([r, r], [h - r, w - r])
            c = _trajectory(p0, speed, ang, t, r, h, w)
            c = c + rng.normal(0, 3, size=c.shape)  # jitter: erratic motion
            hue = np.array([255, rng.uniform(150, 255), rng.uniform(0, 80)]) if cls == "Explosion" \
                else np.array([rng.uniform(150, 255), rng.uniform(0, 80), 255])
            colours = hue[None] * np.where((t // 2) % 2 == 0, 1.0, 0.75)[:, None]
            _paint(frames, c, r, colours, square=cls == "Fighting", active=event)
        if cls == "Explosion":
            centre = np.broadcast_to(rng.uniform([0.3 * h, 0.3 * w], [0.7 * h, 0.7 * w]),
                                     (n_frames, 2))
            start = np.zeros(n_frames, dtype=np.float32)
            for s, e in intervals:
                start[s:e + 1] = s
            radius = 0.12 * size + (t - start) * rng.uniform(1.0, 2.0)
            _paint(frames, centre, np.minimum(radius, 0.45 * size), [255, 245, 200],
                   square=False, active=event)

    frames += rng.standard_normal(size=frames.shape, dtype=np.float32) * np.float32(2.0)
    return np.clip(frames, 0, 255).astype(np.uint8)


def _write_mp4(path: Path, frames: np.ndarray, fps: int) -> None:
    import av  # PyAV bundles libx264; no ffmpeg binary needed

    with atomic_path(path, suffix=".mp4") as tmp:
        with av.open(str(tmp), mode="w", format="mp4") as container:
            stream = container.add_stream("libx264", rate=fps)
            stream.width, stream.height = frames.shape[2], frames.shape[1]
            stream.pix_fmt = "yuv420p"
            # one thread: bit-identical output across machines; no B-frames: simple, exact
            # frame counts for every reader
            stream.codec_context.thread_count = 1
            stream.options = {"crf": "20", "preset": "veryfast", "bf": "0"}
            for img in frames:
                for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)


def _write_text(path: Path, lines: list[str]) -> None:
    with atomic_path(path, suffix=".txt") as tmp:
        tmp.write_text("".join(line + "\n" for line in lines), encoding="utf-8")


def generate_demo_dataset(out_dir: str | os.PathLike, seed: int = 0, n_train_normal: int = 8,
                          n_train_abnormal: int = 8, n_test_normal: int = 4,
                          n_test_abnormal: int = 4, n_frames: int = 96, width: int = 160,
                          height: int = 120, fps: int = 25, workers: int = 1
                          ) -> dict[str, list[tuple[int, int]]]:
    """Write the demo dataset under ``out_dir``; returns video_id -> event intervals of every
    abnormal video (train ones included, although only the test ones are written to the
    annotation file: training is weakly supervised). ``workers`` videos are rendered and
    encoded at a time (threads: numpy and x264 release the GIL); the files do not depend on it."""
    if n_frames < 8:
        raise ValueError(f"n_frames must be >= 8, got {n_frames}")
    if width < 32 or height < 32 or width % 2 or height % 2:
        raise ValueError(f"width and height must be even and >= 32 (yuv420p), got {width}x{height}")
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    out_dir = Path(out_dir)
    videos = demo_layout(n_train_normal, n_train_abnormal, n_test_normal, n_test_abnormal)

    def write(v: DemoVideo) -> list[tuple[int, int]]:
        rng = _video_rng(seed, v.video_id)
        iv = _event_intervals(rng, n_frames) if v.label else []
        path = out_dir / v.relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        _write_mp4(path, _render(rng, n_frames, height, width, v.cls, iv), fps)
        return iv

    with ThreadPoolExecutor(max(1, int(workers))) as pool:
        written = list(pool.map(write, videos))  # map re-raises a worker's error here
    intervals = {v.video_id: iv for v, iv in zip(videos, written) if v.label}

    _write_text(out_dir / TRAIN_LIST_NAME, [v.relpath for v in videos if v.split == "train"])
    ann = []
    for v in videos:
        if v.split != "test":
            continue
        bounds = [b for s_e in intervals.get(v.video_id, []) for b in s_e]
        bounds += [-1] * (4 - len(bounds))  # the real file always has two (start, end) pairs
        # the real file separates fields by two spaces and ends each line with two spaces
        ann.append("  ".join([f"{v.video_id}.mp4", v.cls, *map(str, bounds)]) + "  ")
    _write_text(out_dir / TEST_ANNOTATION_NAME, ann)
    return intervals
