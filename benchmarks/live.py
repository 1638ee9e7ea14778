"""Live scoring (`wsvad watch`): latency, accuracy cost of bounded context, memory over a long stream.

Three parts (``--parts``, all by default):

* ``latency``: for each snippet backbone of the demo (one demo run per feature set), a demo test
  video remuxed to MPEG-TS is served on 127.0.0.1 over TCP at its real frame rate (``--loops``
  times back to back) and watched: per snippet the latency from its last frame's arrival to its
  score (the ``latency_ms`` of the JSON lines) and the compute time; the real-time factor is the
  snippet's duration over its compute time (> 1: keeps up with the camera).
* ``accuracy``: for every demo run of a snippet-feature method, the frame AUC of its test set
  scored offline (the whole video in one forward, as the evaluation does) against the live
  scores: causal methods snippet by snippet, the others over a sliding window of the last W
  snippets (``windowed_scores``, which the loopback tests check equal to the live scores of a
  finished stream), at the method's default W; the naive baseline makes any method causal by
  scoring each snippet alone (W = 1).
* ``memory``: a synthetic stream (FFmpeg's ``testsrc2`` through the lavfi device input) of
  ``--long-snippets`` snippets watched with a tiny run (I3Res50 at 32 px, the tests' recipe),
  RSS sampled every 100 snippets, for a causal method (MIL) and a windowed one (PEL4VAD); the
  naive baseline keeps the whole history and re-scores it for every snippet: its time and the
  features it holds after ``--history`` snippets, against the ring's.
* ``timeline`` (only when asked): the README's picture, ``docs/img/watch_timeline.png``, from
  the real ``wsvad watch`` command on the demo's test videos played back to back.

Demo runs come from ``results/demo/runs`` (``--build`` makes the missing ones with Snakemake;
minutes of CPU). Run from the repository root: ``.venv/bin/python benchmarks/live.py``.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path

import common
import numpy as np
from common import ROOT, Table, current_rss_mb

sys.path.insert(0, str(ROOT / "tests" / "helpers"))  # the loopback servers and tiny runs of the tests

DEMO = ROOT / "results" / "demo"
# one run per snippet backbone of the demo (the feature set decides the backbone)
LATENCY_RUNS = {"rtfm_i3d_r50": "mil", "urdmu_i3d": "urdmu", "vadclip_vitb16": "mil", "timesformer": "timesformer_mil"}
RSS_EVERY = 100


def demo_runs() -> list[Path]:
    return sorted(p.parent for p in (DEMO / "runs").glob("*/*/seed0/metrics.json"))


def build(targets: list[str]) -> None:
    import subprocess

    cmd = [str(ROOT / ".venv" / "bin" / "snakemake"), "--profile", "profiles/local", *targets]
    print("building:", " ".join(cmd), flush=True)
    subprocess.run(cmd, cwd=ROOT, check=True)


def test_video(manifest: Path) -> tuple[Path, int, float]:
    from wsvad_core.data.manifest import read_manifest

    row = read_manifest(manifest).query("split == 'test' and label == 1").iloc[0]
    return Path(row["path"]), int(row["n_frames"]), float(row["fps"])


# --------------------------------------------------------------------------------- latency
def latency(args, table: Table, out: dict) -> None:
    from loopback import TcpStream, ts_bytes
    from wsvad_core.live.watch import watch

    video, n_frames, fps = test_video(DEMO / "manifest.csv")
    ts = ts_bytes(video)
    chunks = math.ceil(len(ts) / 1880)
    pace = n_frames / fps / chunks  # the video's bytes spread over its duration: a real-time camera
    for fs, method in LATENCY_RUNS.items():
        run = DEMO / "runs" / method / fs / "seed0"
        if not (run / "checkpoint.pt").exists():
            table.add(f"{fs}: latency", note=f"no run {run.relative_to(ROOT)} (--build)")
            continue
        server = TcpStream([ts * args.loops], pace=pace)
        with tempfile.TemporaryDirectory() as tmp:
            jl = Path(tmp) / "w.jsonl"
            try:
                end = watch(server.url, run, jl, reconnect_timeout=0, progress=False, device="cpu")
            finally:
                server.close()
            recs = [json.loads(x) for x in jl.read_text().splitlines()]
        start = recs[0]
        snips = [r for r in recs if r["type"] == "snippet"][1:]  # the first pays for the warm-up
        lat = np.array([s["latency_ms"] for s in snips])
        comp = np.array([s["compute_ms"] for s in snips])
        snippet_ms = start["stride"] / start["fps"] * 1e3
        rtf = snippet_ms / float(np.median(comp))
        name = f"{fs} ({start['backbone']}, {start['clip_len']}-frame snippets, {method})"
        table.add(f"{name}: latency median / p95, ms", f"{np.median(lat):.0f} / {np.percentile(lat, 95):.0f}",
                  note=f"{len(snips)} snippets over {args.loops} plays at {fps:g} fps")
        table.add(f"{name}: compute per snippet, ms", float(np.median(comp)))
        table.add(f"{name}: real-time factor (snippet {snippet_ms:.0f} ms / compute)", rtf,
                  note="keeps up" if rtf > 1 else "falls behind: the queue fills and latency grows to its bound")
        out[fs] = {"method": method, "backbone": start["backbone"], "latency_ms": lat.tolist(),
                   "compute_ms": comp.tolist(), "real_time_factor": rtf, "end": end}


# -------------------------------------------------------------------------------- accuracy
def accuracy(args, table: Table, out: dict) -> None:
    import torch

    from wsvad_core.data.ground_truth import load_ground_truth
    from wsvad_core.data.manifest import read_manifest
    from wsvad_core.evaluation.evaluate import evaluate_scores, score_videos, test_crop_indices
    from wsvad_core.live.scoring import windowed_scores
    from wsvad_core.runs import RunError, build_model, open_run_features
    from wsvad_core.scoring import load_run

    df = read_manifest(DEMO / "manifest.csv")
    labels = dict(zip(df["video_id"], df["label"].astype(int)))
    for run in demo_runs():
        method, fs = run.parts[-3], run.parts[-2]
        try:
            record, state = load_run(run)
        except RunError as err:
            table.add(f"{method} / {fs}", note=f"not watchable: {str(err).split(': ', 1)[-1][:60]}")
            continue
        metrics = json.loads((run / "metrics.json").read_text())
        model, hparams = build_model(record, state)
        model.eval()
        feats = open_run_features(record, hparams, DEMO / "features" / f"{fs}.zarr")
        gt = load_ground_truth(DEMO / "gt" / f"{fs}.npz")
        crops = test_crop_indices(feats, {"test_views": metrics.get("test_views")})
        clip_len = int(record.recipe["clip_len"])
        torch.manual_seed(0)
        offline = score_videos(model, feats, list(gt), torch.device("cpu"), progress=False, crops=crops)
        x = {v: np.asarray(feats[v] if crops is None else feats[v][crops], dtype=np.float32) for v in gt}
        live = {v: windowed_scores(model, x[v]) for v in gt}
        alone = {v: windowed_scores(model, x[v], 1) for v in gt}
        auc = {k: evaluate_scores(s, gt, labels, clip_len)[0]["auc"]
               for k, s in (("offline", offline), ("live", live), ("alone", alone))}
        diff = max(float(np.abs(live[v] - offline[v]).max()) for v in gt)
        causal = bool(getattr(model, "causal", False))
        W = 1 if causal else model.live_window()
        T = max(len(v) for v in offline.values())
        ctx = "causal" if causal else f"W = {W}"
        table.add(f"{method} / {fs}: frame AUC offline -> live ({ctx}); naive: each snippet alone",
                  f"{auc['offline']:.4f} -> {auc['live']:.4f}", f"{auc['alone']:.4f}",
                  note=f"live - offline {auc['live'] - auc['offline']:+.4f}, max abs score diff {diff:.2g}"
                       f"; test videos of <= {T} snippets")
        out[f"{method}/{fs}"] = {"causal": causal, "window": W, "auc": auc, "max_abs_score_diff": diff,
                                 "max_snippets": T}


# ---------------------------------------------------------------------------------- memory
def memory(args, table: Table, out: dict) -> None:
    import torch

    import wsvad_core.live.scoring as scoring
    from tiny_dag import tiny_dataset, tiny_run, tiny_store
    from wsvad_core.live.watch import watch
    from wsvad_core.runs import build_model
    from wsvad_core.scoring import load_run

    Base = scoring.ContextScorer
    samples: list[tuple[int, float]] = []

    class Sampled(Base):
        """The live scorer, with the process's RSS sampled every RSS_EVERY snippets."""
        def push(self, feats):
            s = super().push(feats)
            if self._n % RSS_EVERY == 0:
                samples.append((self._n, current_rss_mb()))
            return s

    def naive_ms(model, hist: np.ndarray) -> float:
        """Naive live scoring: the whole history re-scored for the newest snippet."""
        x = torch.from_numpy(hist)[None]
        with torch.inference_mode():
            return common.median_time(lambda: model.score(x)[0, -1], 3, warmup=1)[0] * 1e3

    def ring_ms(model, feats: np.ndarray) -> float:
        sc = Base(model, args.window)
        for t in range(min(sc.window, feats.shape[1])):
            sc.push(feats[:, t])
        with torch.inference_mode():
            return common.median_time(lambda: sc.push(feats[:, -1]), 20, warmup=2)[0] * 1e3

    with tempfile.TemporaryDirectory(prefix="wsvad-live-bench-") as tmp:
        root = Path(tmp)
        ds = tiny_dataset(root)
        store = tiny_store(ds, root / "rtfm_i3d_r50.zarr")
        n = args.long_snippets
        source = f"testsrc2=size=64x48:rate=25:duration={n * 8 / 25:.2f}"  # the tiny recipe: 8-frame snippets
        for method in ("mil", "pel4vad"):
            run = root / "runs" / method
            tiny_run(ds, store, run, method=method, max_steps=4)
            samples.clear()
            scoring.ContextScorer = Sampled  # watch imports it from the module when called
            t0 = time.perf_counter()
            try:
                end = watch(source, run, root / f"{method}.jsonl", fmt="lavfi", reconnect_timeout=0,
                            window=None if method == "mil" else args.window, progress=False, device="cpu")
            finally:
                scoring.ContextScorer = Base
            wall = time.perf_counter() - t0
            first = next(r for k, r in samples if k >= n // 10)
            model = build_model(*load_run(run))[0].eval()
            causal = bool(getattr(model, "causal", False))
            W = 1 if causal else args.window
            label = f"{method} ({'causal' if causal else f'W = {W}'})"
            table.add(f"{label}: full watch, {end['snippets']:,} snippets ({end['frames']:,} frames): "
                      "RSS growth from 10% to the end, MB", samples[-1][1] - first,
                      note=f"RSS {first:.0f} -> {samples[-1][1]:.0f} MB, peak {end['peak_rss_mb']:.0f} MB; "
                           f"{wall:.0f} s, compute {end['compute_ms_median']:.0f} ms/snippet")
            res = {"snippets": end["snippets"], "rss_mb": list(samples), "wall_s": wall, "end": end, "history": {}}
            rng = np.random.default_rng(0)
            for T in args.history:
                hist = rng.standard_normal((1, T, model.feat_dim), dtype=np.float32)
                r_ms, n_ms = ring_ms(model, hist), naive_ms(model, hist)
                held_naive = hist.nbytes / 2**20
                held_ring = hist[:, :W].nbytes / 2**20
                table.add(f"{label}: scoring the newest snippet after {T:,} snippets, ms", r_ms, n_ms,
                          higher_is_better=False,
                          note=f"features held {held_ring:.2g} MB vs {held_naive:.0f} MB (whole history)")
                res["history"][T] = {"ring_ms": r_ms, "naive_ms": n_ms, "ring_mb": held_ring,
                                     "naive_mb": held_naive}
            out[method] = res


# -------------------------------------------------------------------------------- timeline
def timeline(args, table: Table, out: dict) -> None:
    """The README's picture: the real `wsvad watch` command on the demo's test videos, played back
    to back at their frame rate over loopback TCP, with the timeline PNG it keeps refreshed."""
    import subprocess

    from loopback import TcpStream, ts_bytes
    from wsvad_core.data.manifest import read_manifest

    run = DEMO / "runs" / args.timeline_run / "seed0"
    test = read_manifest(DEMO / "manifest.csv").query("split == 'test'")
    # alternate normal and abnormal videos, so that alerts rise and clear
    normal, abnormal = test[test["label"] == 0], test[test["label"] == 1]
    order = [r for pair in zip(normal.itertuples(), abnormal.itertuples()) for r in pair]
    ts = b"".join(ts_bytes(r.path) for r in order)
    seconds = sum(r.n_frames / r.fps for r in order)
    server = TcpStream([ts], pace=seconds / math.ceil(len(ts) / 1880))
    png = Path(args.timeline_png)
    jl = png.with_suffix(".jsonl")
    cmd = [str(ROOT / ".venv" / "bin" / "wsvad"), "watch", server.url, "--run", str(run.relative_to(ROOT)),
           "--plot", str(png), "--plot-every", "5", "--out", str(jl), "--reconnect-timeout", "0", "-q"]
    print("$", " ".join(cmd).replace(server.url, "tcp://127.0.0.1:PORT"), flush=True)
    try:
        subprocess.run(cmd, cwd=ROOT, check=True)
    finally:
        server.close()
    recs = [json.loads(x) for x in jl.read_text().splitlines()]
    jl.unlink()
    end = recs[-1]
    table.add(f"{args.timeline_run}: {len(order)} demo test videos back to back", end["snippets"],
              note=f"{end['alerts']} alert(s), latency median {end['latency_ms']['median_last_1000']} ms; "
                   f"wrote {png.relative_to(ROOT) if png.is_relative_to(ROOT) else png}")
    out["end"] = end


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--parts", nargs="+", default=["latency", "accuracy", "memory"],
                   choices=["latency", "accuracy", "memory", "timeline"])
    p.add_argument("--timeline-run", default="mil/rtfm_i3d_r50", metavar="METHOD/FEATURES",
                   help="demo run of the timeline part (mil/rtfm_i3d_r50)")
    p.add_argument("--timeline-png", default=str(ROOT / "docs" / "img" / "watch_timeline.png"))
    p.add_argument("--loops", type=int, default=3, help="plays of the demo video in the latency stream (3)")
    p.add_argument("--long-snippets", type=int, default=1500, help="snippets of the synthetic long stream (1500)")
    p.add_argument("--window", type=int, default=32,
                   help="W of the windowed method in the memory part (32, the demo's n_segments)")
    p.add_argument("--history", type=int, nargs="+", default=[100, 1000, 10000],
                   help="history lengths at which the naive whole-history re-scoring is timed")
    p.add_argument("--build", action="store_true", help="make the missing demo runs with Snakemake first (train_all)")
    common.add_common_args(p)
    args = p.parse_args()
    if args.build:  # every demo run (Snakemake skips the finished ones)
        build(["train_all"])
    info = common.setup(args)
    tables, extra = [], {}
    for part, title in (("latency", "live latency per backbone (loopback TCP, real-time pace)"),
                        ("accuracy", "AUC: live (causal or windowed) vs offline scoring, demo test set"),
                        ("memory", "long synthetic stream (lavfi testsrc2, tiny run): ring buffers vs whole history"),
                        ("timeline", "the README's live timeline")):
        if part in args.parts:
            t = Table(title)
            extra[part] = {}
            {"latency": latency, "accuracy": accuracy, "memory": memory, "timeline": timeline}[part](
                args, t, extra[part])
            t.print()
            tables.append(t)
    common.finish([], info, args.json, {"tables": {t.title: t.rows for t in tables}, **extra})


if __name__ == "__main__":
    main()
