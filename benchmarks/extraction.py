"""Feature extraction throughput: wsvad's extractor against an official-style loop.

wsvad (``wsvad_core.features.extract.extract_videos``, what the ``extract_shard`` rule runs):
decord decodes in a background thread while the model runs; each batch of snippets is
preprocessed as one tensor op and all its snippets x crops go through one forward
(``inference_mode``, channels-last 3D for I3D, fp16 autocast on CUDA); features go to Zarr.

Naive baseline (the structure of the official extractors, e.g. the I3D-ResNet50 extractor behind
the RTFM-family UCF-Crime features): in one thread, decode one snippet, preprocess it frame by
frame, run one forward per crop under ``no_grad``, save a ``.npy`` per video. It uses the same
decoder, the same resize/crop/normalise ops and the same weights, so the features are the same
numbers up to float rounding; the script reports the max abs difference.

Both run the same recipe — a shipped feature set of config/feature_sets.yaml (``rtfm_i3d_r50``,
``urdmu_i3d``, ``xd_i3d``, ``vadclip_vitb16``: the field's extractors) or the demo's version of one
(``demo_rtfm``, ``demo_clip``) — on the same synthetic 320x240 videos (UCF-Crime's frame size),
with the same image-library steps (JPEG round trip, PIL / OpenCV resize) per frame. Besides
snippets/s it reports the share of wsvad's wall time spent inside the backbone's own forward
(how close the pipeline is to the network's limit). With CUDA it also measures GPU utilisation
and projects the time for the full UCF-Crime (13.8 M frames).

    .venv/bin/python benchmarks/extraction.py --recipe demo_rtfm rtfm_i3d_r50 urdmu_i3d --repeats 3
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import common  # noqa: F401  (sys.path)
import numpy as np
import torch
import yaml

from wsvad_core.features.backbones import create_backbone
from wsvad_core.features.decode import snippet_indices
from wsvad_core.features.extract import extract_videos
from wsvad_core.features.store import open_store
from wsvad_core.features.transforms import host_transform, normalize, resize_frames, views
from wsvad_core.recipes import normalize_recipe

UCF_FRAMES = 13_800_000  # all UCF-Crime videos (train + test)

# name -> (feature set of config/feature_sets.yaml, apply the demo dataset's overrides?)
RECIPES = {
    "demo_rtfm": ("rtfm_i3d_r50", True),
    "demo_clip": ("vadclip_vitb16", True),
    "rtfm_i3d_r50": ("rtfm_i3d_r50", False),
    "urdmu_i3d": ("urdmu_i3d", False),
    "xd_i3d": ("xd_i3d", False),
    "vadclip_vitb16": ("vadclip_vitb16", False),
}


def load_recipe(name: str) -> dict:
    fs, demo = RECIPES[name]
    r = dict(yaml.safe_load((common.ROOT / "config" / "feature_sets.yaml").read_text())["feature_sets"][fs])
    if demo:
        demo_cfg = yaml.safe_load((common.ROOT / "config" / "demo.yaml").read_text())["datasets"]["demo"]
        r.update(demo_cfg["feature_overrides"][fs])
    return normalize_recipe({**r, "name": fs})


class TimedBackbone(torch.nn.Module):
    """The backbone, with the wall time spent in its own forward (synchronised on CUDA)."""

    def __init__(self, model):
        super().__init__()
        self.model, self.seconds = model, 0.0
        self.provenance = model.provenance

    def embed(self, clips):
        if clips.is_cuda:
            torch.cuda.synchronize()
        t = time.perf_counter()
        out = self.model.embed(clips)
        if out.is_cuda:
            torch.cuda.synchronize()
        self.seconds += time.perf_counter() - t
        return out


def write_video(path: Path, n_frames: int, width: int, height: int, seed: int) -> str:
    """A textured scene with a moving bright square, h264 (what decord sees in UCF-Crime)."""
    import av

    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt = width, height, "yuv420p"
        for i in range(n_frames):
            frame = np.roll(base, 3 * i, axis=1)
            y, x = (7 * i) % (height - 40), (11 * i) % (width - 40)
            frame[y:y + 40, x:x + 40] = 255
            for p in s.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return str(path)


# -- the naive baseline -------------------------------------------------------------------------

def naive_extract_video(path: str, r: dict, model, device: torch.device) -> np.ndarray:
    """One video the official way: snippet by snippet, frame by frame, crop by crop."""
    import decord

    vr = decord.VideoReader(path, ctx=decord.cpu(0), num_threads=1)
    idx = snippet_indices(len(vr), r["clip_len"], r["stride"], r["frames_per_snippet"], r["t_rule"])
    host = host_transform(r)
    per_snippet = []
    for t in range(len(idx)):
        frames = vr.get_batch(idx[t].tolist()).asnumpy()            # (F, H, W, 3) uint8
        crops = []
        for f in frames:                                              # per-frame preprocessing
            if host is not None:
                f = host(f[None])[0]                                  # JPEG / PIL / OpenCV
            x = torch.from_numpy(np.ascontiguousarray(f)).permute(2, 0, 1).float()[None]
            if host is None:
                x = resize_frames(x, r["resize"], r["interpolation"])
            crops.append(views(normalize(x / 255.0, r["mean"], r["std"])[0], r["crop_size"], r["views"]))
        clip = torch.stack(crops, dim=2)                              # (crops, 3, F, S, S)
        feats = []
        with torch.no_grad():
            for c in range(clip.shape[0]):                            # one forward per crop
                feats.append(model.embed(clip[c:c + 1].to(device)).float().cpu())
        per_snippet.append(torch.cat(feats))                          # (crops, D)
    return torch.stack(per_snippet, dim=1).numpy()                    # (crops, T, D)


def naive_extract(rows, r, out_dir: Path, model, device) -> dict[str, np.ndarray]:
    out = {}
    for row in rows:
        feats = naive_extract_video(row["path"], r, model, device)
        np.save(out_dir / f"{row['video_id']}.npy", feats.transpose(1, 0, 2))  # official (T, crops, D)
        out[row["video_id"]] = feats
    return out


# -- GPU utilisation ----------------------------------------------------------------------------

class GpuSampler(threading.Thread):
    """Polls nvidia-smi for utilisation.gpu every 0.2 s while running."""

    def __init__(self):
        super().__init__(daemon=True)
        self.samples: list[float] = []
        self.stop = threading.Event()

    def run(self):
        while not self.stop.is_set():
            try:
                out = subprocess.run(["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits",
                                      "-i", "0"], capture_output=True, text=True, timeout=5)
                self.samples.append(float(out.stdout.strip().splitlines()[0]))
            except (OSError, ValueError, IndexError, subprocess.TimeoutExpired):
                return
            self.stop.wait(0.2)


# -- main ---------------------------------------------------------------------------------------

def bench_recipe(name: str, rows, tmp: Path, device: torch.device, repeats: int, table, skip_naive: bool) -> dict:
    r = load_recipe(name)
    n_snip = sum(len(snippet_indices(row["n_frames"], r["clip_len"], r["stride"], r["frames_per_snippet"],
                                     r["t_rule"])) for row in rows)
    label = (f"{name}: {r['backbone']}, {len(r['views'])} view(s) of {r['crop_size']} px, "
             f"{r['frames_per_snippet']} frames/snippet")
    model = TimedBackbone(create_backbone(r["backbone"], r))
    runs = iter(range(10**6))

    def run_wsvad(videos=rows):
        extract_videos(videos, r, tmp / f"wsvad{next(runs)}.zarr", device=device, progress=False, backbone=model)

    run_wsvad(rows[:1])  # warm-up (oneDNN/cuDNN kernel selection), untimed, like the baseline's
    model.seconds = 0.0
    sampler = GpuSampler() if device.type == "cuda" else None
    if sampler:
        sampler.start()
    w_med, w_all = common.median_time(run_wsvad, repeats)
    forward_share = model.seconds / sum(w_all)
    if sampler:
        sampler.stop.set()
        sampler.join()
    from wsvad_core.features.store import finalize_store

    store_dir = tmp / "wsvad1.zarr"  # the first timed run
    finalize_store(store_dir, {"recipe": r, "views": r["views"]}, [row["video_id"] for row in rows])
    ws = open_store(store_dir)
    result = {"recipe": name, "snippets": n_snip, "wsvad_s": w_all,
              "wsvad_snippets_per_s": n_snip / w_med, "backbone_forward_share": forward_share}
    if skip_naive:
        n_med, diff = None, None
    else:
        naive_model = create_backbone(r["backbone"], r)  # same seed, same weights, default layout
        naive_dir = tmp / "naive"
        naive_dir.mkdir(exist_ok=True)
        holder = {}

        def run_naive(videos=rows):
            holder["f"] = naive_extract(videos, r, naive_dir, naive_model, device)

        run_naive(rows[:1])  # warm-up, untimed
        n_med, n_all = common.median_time(run_naive, repeats)
        diff = max(float(np.abs(ws[v].astype(np.float32) - f).max()) for v, f in holder["f"].items())
        scale = max(float(np.abs(f).max()) for f in holder["f"].values())
        result.update({"naive_s": n_all, "naive_snippets_per_s": n_snip / n_med,
                       "max_abs_diff": diff, "max_abs_feature": scale})
    table.add(f"{label}: snippets/s ({n_snip} snippets, {device.type})", n_snip / w_med,
              n_snip / n_med if n_med else None, higher_is_better=True)
    table.add(f"{name}: share of wsvad's time inside the backbone's forward (%)", 100 * forward_share, None,
              note="the rest is decoding, image-library steps, preprocessing and writing not hidden behind it")
    if diff is not None:
        table.add(f"{name}: max abs diff of the features ({r['store_dtype']} store vs float32)", diff, None,
                  note=f"max |feature| {scale:.3g}; float16 rounding alone is ~{scale * 2**-11:.1e}")
    if sampler and sampler.samples:
        util = float(np.mean(sampler.samples))
        result["gpu_util_mean"] = util
        table.add(f"{name}: GPU utilisation during extraction (%)", util, None)
    hours = UCF_FRAMES / r["clip_len"] / (n_snip / w_med) / 3600
    result["ucf_projected_hours"] = hours
    table.add(f"{name}: projected full UCF-Crime (13.8 M frames) on this {device.type}, hours", hours,
              UCF_FRAMES / r["clip_len"] / (n_snip / n_med) / 3600 if n_med else None,
              higher_is_better=False, note="one process; shards on more GPUs divide it")
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--recipe", nargs="+", default=["demo_rtfm", "demo_clip", "rtfm_i3d_r50"], choices=sorted(RECIPES))
    p.add_argument("--videos", type=int, default=2)
    p.add_argument("--frames", type=int, default=64, help="frames per video (4 snippets of 16 at 64)")
    p.add_argument("--size", type=int, nargs=2, default=(320, 240), metavar=("W", "H"))
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    p.add_argument("--skip-naive", action="store_true", help="only wsvad (e.g. long GPU runs)")
    common.add_common_args(p)
    args = p.parse_args()
    info = common.setup(args)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    table = common.Table(f"Extraction on {device.type} ({args.videos} videos x {args.frames} frames, "
                         f"{args.size[0]}x{args.size[1]}, median of {args.repeats})")
    tmp = Path(tempfile.mkdtemp(prefix="wsvad-bench-extract-"))
    results = []
    try:
        rows = [{"video_id": f"v{i}", "path": write_video(tmp / f"v{i}.mp4", args.frames, *args.size, seed=i),
                 "n_frames": args.frames, "fps": 25.0, "label": 0, "split": "test"} for i in range(args.videos)]
        for name in args.recipe:
            sub = tmp / name
            sub.mkdir()
            t0 = time.perf_counter()
            results.append(bench_recipe(name, rows, sub, device, args.repeats, table, args.skip_naive))
            print(f"{name}: done in {time.perf_counter() - t0:.0f} s", flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if device.type != "cuda":
        table.add("GPU: snippets/s and utilisation of the field's recipes", None, None,
                  note="not measured: no CUDA device here (run with --recipe rtfm_i3d_r50 urdmu_i3d "
                       "xd_i3d vadclip_vitb16 on a GPU)")
    common.finish([table], info, args.json, {"results": results})


if __name__ == "__main__":
    main()
