"""Feature extraction: videos -> snippets -> backbone -> one Zarr array per video.

A background thread decodes (decord) while the main thread runs the model, through a small
bounded queue so at most a few batches of frames are in memory. Each video's array is written
atomically when the video is complete; a corrupt video raises ``VideoReadError`` naming the
file, and the arrays already written in that run stay valid.
"""
from __future__ import annotations

import hashlib
import json
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
from wsvad_core.features.backbones import backbone_class, create_backbone, weights_provenance
from wsvad_core.features.decode import SnippetReader, n_snippets
from wsvad_core.features.store import finalize_store, write_video_array
from wsvad_core.features.transforms import preprocess

log = logging.getLogger(__name__)

__all__ = ["normalize_recipe", "recipe_fingerprint", "extract_videos", "extract_shard", "merge_shards"]

COMMON_DEFAULTS = {"clip_len": 16, "stride": 16, "crops": "center", "weights": None, "init_seed": 0,
                   "batch_size": 8}
# keys that do not change the features: left out of the fingerprint
RUNTIME_KEYS = ("batch_size", "name")
QUEUE_BATCHES = 3


def normalize_recipe(recipe: Mapping) -> dict:
    """The recipe with the backbone's defaults filled in and checked; adds ``family``."""
    r = dict(recipe)
    if "backbone" not in r:
        raise ValueError(f"feature recipe has no 'backbone' key: {r}")
    cls = backbone_class(r["backbone"])
    for k, v in {**COMMON_DEFAULTS, **cls.defaults}.items():
        if r.get(k) is None and k != "weights":
            r[k] = v
    r.setdefault("weights", None)
    if r.get("family") not in (None, cls.family):
        raise ValueError(f"feature recipe: family {r['family']!r} does not match backbone "
                         f"{r['backbone']} (family {cls.family!r})")
    r["family"] = cls.family
    for k in ("clip_len", "stride", "frames_per_snippet", "resize", "crop_size", "init_seed", "batch_size"):
        r[k] = int(r[k])
    r["mean"], r["std"] = [float(x) for x in r["mean"]], [float(x) for x in r["std"]]
    problems = []
    if min(r["clip_len"], r["stride"], r["batch_size"], r["crop_size"]) < 1:
        problems.append("clip_len, stride, batch_size and crop_size must be >= 1")
    if not 1 <= r["frames_per_snippet"] <= r["clip_len"]:
        problems.append(f"frames_per_snippet={r['frames_per_snippet']} must be in [1, clip_len={r['clip_len']}]")
    if r["family"].startswith("i3d") and r["frames_per_snippet"] != r["clip_len"]:
        problems.append("i3d backbones take every frame of a snippet: frames_per_snippet must equal clip_len")
    if r["crops"] not in ("center", "ten"):
        problems.append(f"crops must be 'center' or 'ten', got {r['crops']!r}")
    # patch recipes (``*_patch`` backbones): the grid's cells are resized to crop_size, so the
    # crop may exceed the frame; the grid is recorded only where it exists, so the
    # fingerprints of snippet recipes stay what they were
    wants_patches = bool(getattr(cls, "patches", False))
    if wants_patches:
        from wsvad_core.features.patches import parse_grid

        if r.get("patch_grid") is None:
            problems.append(f"backbone {r['backbone']} extracts patches: the recipe needs "
                            "patch_grid: [rows, cols]")
        else:
            try:
                r["patch_grid"] = list(parse_grid(r["patch_grid"]))
            except ValueError as err:
                problems.append(str(err))
            if r["crops"] != "center":
                problems.append(f"patch features take one view per patch: crops must be 'center', "
                                f"got {r['crops']!r}")
    elif r.get("patch_grid") is not None:
        problems.append(f"patch_grid is set but backbone {r['backbone']} does not extract patches "
                        f"(use {r['backbone']}_patch)")
    else:
        r.pop("patch_grid", None)
    if not wants_patches and r["resize"] < r["crop_size"]:
        problems.append(f"resize (short side {r['resize']}) must be >= crop_size ({r['crop_size']})")
    if len(r["mean"]) != 3 or len(r["std"]) != 3 or min(r["std"]) <= 0:
        problems.append("mean and std need 3 values each, std > 0")
    if problems:
        raise ValueError(f"feature recipe for {r['backbone']}: " + "; ".join(problems))
    if r["stride"] != r["clip_len"]:
        log.warning("recipe stride %d != clip_len %d: ground truth and evaluation assume "
                    "T * clip_len frames per video", r["stride"], r["clip_len"])
    return r


def recipe_fingerprint(recipe: Mapping) -> str:
    """sha256 of the normalised recipe, without keys that do not change the features
    (``batch_size``, ``name``; ``init_seed`` when a weights file is used)."""
    r = normalize_recipe(recipe)
    key = {k: v for k, v in r.items() if k not in RUNTIME_KEYS}
    if key["weights"] is not None:
        key.pop("init_seed")
    text = json.dumps(key, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


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
                reader = SnippetReader(row["path"], r["clip_len"], r["stride"], r["frames_per_snippet"])
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
        return n_snippets(n, r["clip_len"], r["stride"]) if n > 0 else 0
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
                    write_video_array(store_dir, ids[i], feats, _video_attrs(row, reader, r, fingerprint))
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
    x = preprocess(x, r["resize"], r["crop_size"], r["crops"], r["mean"], r["std"],
                   patch_grid=r.get("patch_grid"))
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


def extract_shard(manifest: str | os.PathLike, shard: int, n_shards: int, recipe: Mapping,
                  store_dir: str | os.PathLike, marker_out: str | os.PathLike,
                  device: str | torch.device | None = None, progress: bool = True,
                  vram_gb: float = 6.0) -> dict:
    """The ``extract_shard`` rule: extract the manifest's videos of one shard into the store
    and write the shard's marker JSON (videos, recipe fingerprint, weights provenance, timing).
    The marker is written last, so it exists only when every array of the shard is complete."""
    import pandas as pd

    from wsvad_core.data.shards import shard_of
    from wsvad_core.device import feature_batch_hint, record_peak_memory, select_device, vram_guard
    from wsvad_core.io import write_json

    df = pd.read_csv(manifest, dtype={"video_id": str})
    rows = [row for row in df.to_dict("records") if shard_of(str(row["video_id"]), n_shards) == int(shard)]
    r = normalize_recipe(recipe)
    # This shard is about to replace arrays: the merged store stops being complete until the
    # merge runs again, so its root metadata (what marks it complete) goes first.
    Path(store_dir, "zarr.json").unlink(missing_ok=True)
    device = torch.device(device) if device is not None else select_device(vram_gb)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    t0 = time.perf_counter()
    backbone = create_backbone(r["backbone"], r) if rows else None
    with vram_guard(feature_batch_hint(r.get("name", r["backbone"])), device, vram_gb):
        summaries = extract_videos(rows, r, store_dir, device, progress, backbone=backbone)
    seconds = time.perf_counter() - t0
    n_snip = sum(s["n_snippets"] for s in summaries)
    marker = {
        "shard": int(shard), "n_shards": int(n_shards), "store": str(store_dir),
        "recipe_fingerprint": recipe_fingerprint(r),
        "provenance": backbone.provenance if backbone is not None else weights_provenance(r),
        "videos": [s["video_id"] for s in summaries], "summaries": summaries,
        "device": str(device), "seconds": round(seconds, 2),
        "snippets_per_s": round(n_snip / seconds, 2) if seconds > 0 else None,
        "peak_gpu_mem_mb": (round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
                            if device.type == "cuda" else None),
    }
    write_json(marker_out, marker)
    log.info("shard %d/%d: %d videos, %d snippets in %.1f s", shard, n_shards, len(summaries), n_snip, seconds)
    return marker


def merge_shards(shard_markers: Sequence[str | os.PathLike], recipe: Mapping,
                 zarr_json_out: str | os.PathLike) -> Path:
    """The ``merge_features`` rule: check that all shards used this recipe and the same weights,
    then finalise the store (root ``zarr.json``, consolidated metadata)."""
    r = normalize_recipe(recipe)
    fp = recipe_fingerprint(r)
    videos: list[str] = []
    provenance = None
    for path in shard_markers:
        m = json.loads(Path(path).read_text())
        if m.get("recipe_fingerprint") != fp:
            raise FeatureError(f"shard marker {path}: made with another recipe (fingerprint "
                               f"{m.get('recipe_fingerprint')}, expected {fp}); re-run that shard")
        if provenance is not None and m.get("provenance") != provenance:
            raise FeatureError(f"shard marker {path}: weights provenance {m.get('provenance')} differs "
                               f"from the other shards' {provenance}; re-run the shards")
        provenance = m.get("provenance")
        videos += m["videos"]
    dup = sorted({v for v in videos if videos.count(v) > 1}) if len(set(videos)) != len(videos) else []
    if dup:
        raise FeatureError(f"videos claimed by more than one shard: {dup[:10]}")
    if provenance is None:
        provenance = weights_provenance(r)
    store_dir = Path(zarr_json_out).parent
    attrs = {"recipe": r, "recipe_fingerprint": fp, "provenance": provenance,
             "backbone": r["backbone"], "family": r["family"]}
    return finalize_store(store_dir, attrs, videos)
