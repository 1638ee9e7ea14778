"""Feature extraction: videos -> snippets -> backbone -> one Zarr array per video.

A background thread decodes (decord) while the main thread runs the model, through a small
bounded queue so at most a few batches of frames are in memory. Each video's array is written
atomically when the video is complete; a corrupt video raises ``VideoReadError`` naming the
file, and the arrays already written in that run stay valid.
"""
from __future__ import annotations

import logging
import math
import os
import queue
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from tqdm import tqdm

from wsvad_core.errors import FeatureError, VideoReadError
from wsvad_core.features.backbones import create_backbone
from wsvad_core.features.decode import SnippetReader, n_snippets
from wsvad_core.features.store import write_video_array
from wsvad_core.features.transforms import host_transform, preprocess
from wsvad_core.recipes import normalize_recipe, recipe_fingerprint
from wsvad_core.weights import weights_provenance

log = logging.getLogger(__name__)

__all__ = ["extract_videos", "extract_shard"]

QUEUE_BATCHES = 3


class _Decoder(threading.Thread):
    """Decodes the videos in order into a bounded queue of ('video'|'batch'|'end'|'error'|'done', ...)."""

    def __init__(self, rows: Sequence[Mapping], recipe: Mapping, pin_memory: bool = False):
        super().__init__(name="wsvad-decode", daemon=True)
        self.rows, self.recipe = rows, recipe
        self.pin_memory = pin_memory  # page-locked frames: the copy to the GPU is asynchronous
        self.q: queue.Queue = queue.Queue(maxsize=QUEUE_BATCHES)
        self.stop = threading.Event()

    def _put(self, item) -> bool:
        while not self.stop.is_set():
            try:
                self.q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def run(self) -> None:
        r = self.recipe
        try:
            for i, row in enumerate(self.rows):
                reader = SnippetReader(row["path"], r["clip_len"], r["stride"], r["frames_per_snippet"],
                                       r["t_rule"], host_transform(r))
                if reader.n_frames < r["clip_len"]:
                    # loop-padding would turn a handful of frames into one fake snippet
                    raise VideoReadError(reader.path, f"{reader.n_frames} frame(s), shorter than one "
                                         f"snippet (clip_len {r['clip_len']}); remove it from the "
                                         "dataset's lists")
                if not self._put(("video", i, reader)):
                    return
                for batch in reader.batches(r["batch_size"]):
                    if self.pin_memory:
                        batch = batch.pin_memory()
                    if not self._put(("batch", i, batch)):
                        return
                if not self._put(("end", i, None)):
                    return
            self._put(("done", None, None))
        except BaseException as err:  # handed to the main thread, which raises it
            self._put(("error", None, err))


def _expected_snippets(row: Mapping, r: Mapping) -> int:
    try:
        n = int(row.get("n_frames"))
        return n_snippets(n, r["clip_len"], r["stride"], r["t_rule"]) if n > 0 else 0
    except (TypeError, ValueError):
        return 0


def _video_attrs(row: Mapping, reader: SnippetReader, r: Mapping, fingerprint: str) -> dict:
    fps = row.get("fps")
    try:
        fps = float(fps)
        if not math.isfinite(fps) or fps <= 0:
            fps = reader.fps
    except (TypeError, ValueError):
        fps = reader.fps
    label = row.get("label")
    attrs = {"n_frames": reader.n_frames, "fps": fps,
             "label": None if label is None else int(label),
             "split": None if row.get("split") is None else str(row["split"]),
             "n_snippets": reader.n_snippets, "clip_len": r["clip_len"], "stride": r["stride"],
             "recipe_fingerprint": fingerprint}
    if row.get("class") is not None:
        attrs["class"] = str(row["class"])
    if r.get("patch_grid") is not None:  # (rows*cols, T, D), raster order: features/patches.py
        attrs["patch_grid"] = list(r["patch_grid"])
    return attrs


def extract_videos(rows: Sequence[Mapping], recipe: Mapping, store_dir: str | os.PathLike,
                   device: str | torch.device = "cpu", progress: bool = True,
                   backbone=None) -> list[dict]:
    """Extract every video of ``rows`` (keys video_id, path, n_frames, fps, label, split) into
    ``store_dir``; returns one summary dict per video. ``backbone`` (optional) reuses an
    already built network made from the same recipe."""
    r = normalize_recipe(recipe)
    device = torch.device(device)
    ids = [str(row["video_id"]) for row in rows]
    dup = sorted({v for v in ids if ids.count(v) > 1}) if len(set(ids)) != len(ids) else []
    if dup:
        raise ValueError(f"duplicate video ids in the extraction list: {dup[:10]}")
    if not rows:
        return []
    fingerprint = recipe_fingerprint(r)
    model = backbone if backbone is not None else create_backbone(r["backbone"], r)
    model.to(device)
    use_amp = device.type == "cuda"
    # 3D convolutions (I3D) run ~1.5-2x faster on channels-last tensors with oneDNN on the CPU
    # and with cuDNN's fp16 kernels; features are equal up to float rounding (benchmarks/)
    channels_last = _has_conv3d(model)
    if channels_last:
        model.to(memory_format=torch.channels_last_3d)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed clip shapes: pick the fastest kernels once

    decoder = _Decoder(rows, r, pin_memory=device.type == "cuda")
    pbar = tqdm(total=sum(_expected_snippets(row, r) for row in rows), unit="snippet",
                desc=f"extract {r['backbone']}", disable=not progress, mininterval=2.0)
    summaries: list[dict] = []
    current: dict = {}
    decoder.start()
    try:
        with torch.inference_mode():
            while True:
                kind, i, payload = decoder.q.get()
                if kind == "error":
                    raise payload
                if kind == "done":
                    break
                row = rows[i]
                if kind == "video":
                    reader: SnippetReader = payload
                    expected = _expected_snippets(row, r)
                    if row.get("n_frames") is not None and expected and int(row["n_frames"]) != reader.n_frames:
                        log.warning("%s: the manifest says %s frames, decord reads %d; using %d",
                                    reader.path, row["n_frames"], reader.n_frames, reader.n_frames)
                    if expected != reader.n_snippets:
                        pbar.total += reader.n_snippets - expected
                        pbar.refresh()
                    current = {"reader": reader, "feats": [], "t0": time.perf_counter()}
                elif kind == "batch":
                    current["feats"].append(_embed(model, payload, r, device, use_amp, channels_last))
                    pbar.update(payload.shape[0])
                elif kind == "end":
                    reader = current["reader"]
                    feats = torch.cat(current["feats"]).transpose(0, 1).numpy()  # (crops, T, D)
                    if feats.shape[1] != reader.n_snippets:
                        raise FeatureError(f"{reader.path}: {feats.shape[1]} snippets embedded, "
                                           f"{reader.n_snippets} expected")
                    write_video_array(store_dir, ids[i], feats, _video_attrs(row, reader, r, fingerprint),
                                      dtype=r["store_dtype"])
                    seconds = time.perf_counter() - current["t0"]
                    summaries.append({"video_id": ids[i], "path": reader.path, "n_frames": reader.n_frames,
                                      "n_snippets": reader.n_snippets, "shape": list(feats.shape),
                                      "seconds": round(seconds, 3),
                                      "snippets_per_s": round(reader.n_snippets / max(seconds, 1e-9), 2)})
                    log.info("%s: %d frames -> %s in %.1f s", ids[i], reader.n_frames, feats.shape, seconds)
                    current = {}
    finally:
        decoder.stop.set()
        decoder.join(timeout=30)
        pbar.close()
    return summaries


def _has_conv3d(model: torch.nn.Module) -> bool:
    return any(isinstance(m, torch.nn.Conv3d) for m in model.modules())


# On the CPU, 3D convolutions are memory-bound: per clip, I3D-R50 runs ~25-50% slower at a
# batch of 10 clips than at 1-2 (224 px: 0.82 vs 0.63 s/clip channels-last at 10 vs 1; 112 px:
# 128 ms/clip at 2, 160 at 4). So the CPU forwards at most this many input elements (~5 MB of
# float32: one 224-px or two 112-px 16-frame clips); on the GPU all crops go in one forward.
CPU_CONV3D_FORWARD_ELEMENTS = 1_300_000


def _embed(model, frames: torch.Tensor, r: Mapping, device: torch.device, use_amp: bool,
           channels_last: bool = False) -> torch.Tensor:
    """uint8 snippets (B, F, H, W, 3) -> float32 features (B, crops, D) on the CPU; all crops
    of the batch preprocessed at once, then one forward (GPU) or small forwards (CPU, 3D convs)."""
    x = frames.to(device, non_blocking=True)
    x = preprocess(x, r)
    b, c = x.shape[:2]
    x = x.reshape(b * c, *x.shape[2:])
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last_3d)
    step = x.shape[0]
    if channels_last and device.type == "cpu":
        step = max(1, CPU_CONV3D_FORWARD_ELEMENTS // x[0].numel())
    with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=use_amp):
        y = torch.cat([model.embed(x[i:i + step]) for i in range(0, x.shape[0], step)])
    return y.float().reshape(b, c, -1).cpu()


def extract_shard(rows: Sequence[Mapping], recipe: Mapping, store_dir: str | os.PathLike,
                  marker_out: str | os.PathLike, device: str | torch.device | None = None,
                  progress: bool = True, vram_mb: float = 6144) -> dict:
    """The ``extract_shard`` rule: extract one shard's videos (manifest rows, given by the DAG)
    into the store and write the shard's marker JSON (videos, recipe fingerprint, weights
    provenance, the store's root attributes, timing). The marker is written last, so it exists
    only when every array of the shard is complete."""
    from wsvad_core.device import feature_batch_hint, select_device, vram_guard
    from wsvad_core.features.store import write_shard_marker

    rows = list(rows)
    r = normalize_recipe(recipe)
    # This shard is about to replace arrays: the finalised store stops being complete until it
    # is finalised again, so its root metadata (what marks it complete) goes first.
    Path(store_dir, "zarr.json").unlink(missing_ok=True)
    device = torch.device(device) if device is not None else select_device(vram_mb)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    t0 = time.perf_counter()
    backbone = create_backbone(r["backbone"], r) if rows else None
    with vram_guard(feature_batch_hint(r.get("name", r["backbone"])), device, vram_mb):
        summaries = extract_videos(rows, r, store_dir, device, progress, backbone=backbone)
    seconds = time.perf_counter() - t0
    n_snip = sum(s["n_snippets"] for s in summaries)
    provenance = backbone.provenance if backbone is not None else weights_provenance(r)
    marker = write_shard_marker(
        marker_out, videos=[s["video_id"] for s in summaries], fingerprint=recipe_fingerprint(r),
        provenance=provenance,
        store_attrs={"recipe": r, "backbone": r["backbone"], "kind": r["kind"], "family": r["family"],
                     "views": r["views"]},
        summaries=summaries, device=str(device), seconds=round(seconds, 2),
        snippets_per_s=round(n_snip / seconds, 2) if seconds > 0 else None,
        peak_gpu_mem_mb=(round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
                         if device.type == "cuda" else None))
    log.info("shard %s: %d videos, %d snippets in %.1f s", marker_out, len(summaries), n_snip, seconds)
    return marker
