"""Small synthetic h264 videos written with PyAV (as the demo dataset writes them) and the tiny
extraction recipes the feature tests share: the real backbone architectures on 8-frame snippets
at 32 px, so a video extracts in a fraction of a second on the CPU."""
from __future__ import annotations

from pathlib import Path

import av  # before decord: the two ffmpeg builds crash a process that imports av second
import numpy as np

# small but real: the RTFM family's I3D-ResNet50 (I3Res50) and VadCLIP's CLIP ViT-B/16 (OpenAI),
# 8-frame snippets, 32 px crops
I3D = {"backbone": "i3res50", "clip_len": 8, "stride": 8, "frames_per_snippet": 8, "crops": "center",
       "resize": 32, "crop_size": 32, "batch_size": 2, "weights": None, "init_seed": 0}
CLIP = {"backbone": "openai_clip_vitb16", "clip_len": 8, "stride": 8, "frames_per_snippet": 2, "crops": "ten",
        "resize": 36, "crop_size": 32, "batch_size": 4}


def write_mp4(path, frames: np.ndarray, fps: int = 25, **options) -> Path:
    """h264 mp4 of RGB frames (N, H, W, 3) uint8; ``options`` go to libx264 (default lossless)."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        stream.options = {"crf": "0", **options}
        for f in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return Path(path)


def _encode(path, frames, fps: int = 25) -> str:
    """h264 at the encoder's default quality, like the demo dataset."""
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=fps)
        s.width, s.height, s.pix_fmt = frames[0].shape[1], frames[0].shape[0], "yuv420p"
        for frame in frames:
            for p in s.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return str(path)


def write_video(path, n: int, seed: int, h: int = 40, w: int = 64) -> str:
    """A moving-gradient clip of ``n`` frames."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (h, w, 3)).astype(np.int32)
    return _encode(path, [((base + 7 * i) % 256).astype(np.uint8) for i in range(n)])


def write_frames(path, n: int, h: int = 48, w: int = 64) -> Path:
    """An h264 mp4 of ``n`` flat grey frames."""
    _encode(path, [np.full((h, w, 3), 40 * i % 256, np.uint8) for i in range(n)])
    return Path(path)
