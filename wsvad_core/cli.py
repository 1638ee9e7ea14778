"""The ``wsvad`` command: day-to-day use of finished runs and stores without Snakemake.

``wsvad score VIDEO --run RUN_DIR``
    decode VIDEO, extract its features with exactly the recipe (and weights) the run was trained
    on, score it with the run's checkpoint, and write the frame scores (JSON) and a timeline
    plot (PNG).
``wsvad info STORE``
    summarise a feature store: recipe, weights provenance, videos per split and label, snippet
    counts, size; ``--check`` also reads every array and counts NaN/inf values.
``wsvad watch SOURCE --run RUN_DIR``
    score a live stream, a capture device or a recording still being written, snippet by
    snippet, as JSON lines (``wsvad_core/live/``).

Progress bars go to stderr on every long step; ``--quiet`` silences them and the log.
Expected failures (a corrupt video, a folder that is not a run, a store that is not finalised)
print one line naming the file and the problem and exit with status 1.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

from wsvad_core.errors import AnnotationError, FeatureError, VideoReadError, WeightsMismatchError
from wsvad_core.scoring import load_run, run_protocol, scoring_recipe  # noqa: F401 (wsvad score uses them)

log = logging.getLogger("wsvad")

# failures that are the input's fault: one line, no traceback
USER_ERRORS = (VideoReadError, FeatureError, WeightsMismatchError, AnnotationError, FileNotFoundError,
               NotADirectoryError, ValueError, KeyError)


def extract_one(video: str | os.PathLike, recipe: dict, device, progress: bool = True,
                n_frames: int | None = None) -> tuple[np.ndarray, dict]:
    """Features ``(crops, T, D)`` of one video through the same code and float16 store the
    pipeline uses (so scores match the run's own evaluation), and the video's attributes."""
    from wsvad_core.features.extract import extract_videos
    from wsvad_core.features.store import finalize_store, open_store

    with tempfile.TemporaryDirectory(prefix="wsvad-score-") as tmp:
        row = {"video_id": "video", "path": str(video), "n_frames": n_frames, "fps": None, "label": None,
               "split": None}  # n_frames only sizes the progress bar
        extract_videos([row], recipe, tmp, device, progress=progress)
        finalize_store(tmp, {"recipe": recipe})
        store = open_store(tmp)
        return store["video"], store.video_attrs("video")


def score_video(video: str | os.PathLike, run_dir: str | os.PathLike, out_json: str | os.PathLike | None = None,
                out_png: str | os.PathLike | None = None, *, device: str | None = None,
                checkpoint: str = "checkpoint.pt", progress: bool = True, weights: str | None = None) -> dict:
    """``wsvad score``: returns the JSON record it writes. The video's features are made with the
    recipe (and weights file) of the run's features; a run trained on imported published features
    needs that family's extractor weights: the recipe's, or ``weights``."""
    import torch

    from wsvad_core.device import select_device
    from wsvad_core.evaluation.metrics import snippet_to_frame
    from wsvad_core.features.decode import probe_video
    from wsvad_core.io import write_json
    from wsvad_core.reporting.plots import plot_timeline
    from wsvad_core.runs import build_model

    video = Path(video)
    n_probed, _ = probe_video(video)  # a missing or unreadable video fails before any model is built
    record, state_dict = load_run(run_dir, checkpoint)
    ckpt = str(Path(run_dir) / checkpoint)
    recipe, provenance = dict(record.recipe), record.provenance
    if n_probed < int(recipe["clip_len"]):
        raise VideoReadError(video, f"{n_probed} frame(s): shorter than one {recipe['clip_len']}-frame "
                             "snippet of the run's feature recipe, so there is nothing to score")
    recipe = scoring_recipe(record, ckpt, weights)
    dev = select_device(prefer=device)
    feats, attrs = extract_one(video, recipe, dev, progress=progress, n_frames=n_probed)
    if feats.shape[-1] != record.feat_dim:
        raise FeatureError(f"{video}: features of dim {feats.shape[-1]}, the run's model takes "
                           f"{record.feat_dim} ({ckpt})")
    model = build_model(record, state_dict)[0].to(dev)
    test_views, threshold = run_protocol(run_dir)
    if test_views:  # the run's protocol scores these views only (VadCLIP: UCF-Crime's flip_center)
        feats = feats[[recipe["views"].index(v) for v in test_views]]
    with torch.inference_mode():
        snippet = model.score(torch.from_numpy(feats.astype(np.float32))[None].to(dev))[0].float().cpu().numpy()
    clip_len = int(recipe["clip_len"])
    n_frames, fps = int(attrs["n_frames"]), float(attrs["fps"])
    frame = snippet_to_frame(snippet, clip_len, n_frames)

    run_dir = Path(run_dir)
    weights = recipe.get("weights") or "random-init"
    provenance = {**provenance, "extracted_with": weights}
    result = {
        "video": str(video.resolve()), "run": str(run_dir.resolve()), "checkpoint": ckpt,
        "method": record.method, "feature_set": recipe.get("name"), "seed": record.seed,
        "weights": weights, "provenance": provenance, "n_frames": n_frames, "fps": fps,
        "clip_len": clip_len, "n_snippets": int(len(snippet)), "threshold": threshold,
        "max_score": float(frame.max()), "frames_above_threshold": int((frame >= threshold).sum()),
        "snippet_scores": [float(x) for x in snippet], "frame_scores": [float(x) for x in frame],
    }
    stem = video.stem
    out_json = Path(out_json) if out_json else Path(f"{stem}.scores.json")
    out_png = Path(out_png) if out_png else out_json.with_name(f"{stem}.timeline.png")
    title = f"{video.name}   {record.method} / {recipe.get('name')} / seed {record.seed}"
    if weights == "random-init":
        title += "  [random-init]"
    plot_timeline(frame, out_png, fps=fps, title=title, threshold=threshold, snippet_len=clip_len)
    result["timeline_png"] = str(out_png)
    write_json(out_json, result)
    result["scores_json"] = str(out_json)
    return result


# ----------------------------------------------------------------------------------- info

def store_info(store_dir: str | os.PathLike, check: bool = False, progress: bool = True) -> dict:
    """``wsvad info``: what a finalised feature store holds, as a dict."""
    from collections import Counter

    from tqdm import tqdm

    from wsvad_core.features.store import open_store

    store = open_store(store_dir)
    recipe = store.attrs.get("recipe") or {}
    splits, labels, snippets, seconds = Counter(), Counter(), [], 0.0
    for vid in tqdm(store.video_ids, desc="videos", unit="video", disable=not progress, leave=False):
        a = store.video_attrs(vid)
        splits[str(a.get("split"))] += 1
        labels[{0: "normal", 1: "abnormal"}.get(a.get("label"), "unknown")] += 1
        snippets.append(store.n_snippets(vid))
        if a.get("n_frames") and a.get("fps"):
            seconds += float(a["n_frames"]) / float(a["fps"])
    size = sum(f.stat().st_size for f in Path(store.path).rglob("*") if f.is_file())
    info = {
        "store": str(store.path), "videos": len(store), "dim": store.dim if len(store) else None,
        "crops": store.crops if len(store) else None, "backbone": store.attrs.get("backbone"),
        "kind": recipe.get("kind"), "family": recipe.get("family"), "views": store.attrs.get("views"),
        "recipe": recipe,
        "provenance": store.attrs.get("provenance"),
        "splits": dict(splits), "labels": dict(labels),
        "snippets": {"total": int(sum(snippets)), "min": int(min(snippets, default=0)),
                     "median": float(np.median(snippets)) if snippets else 0.0,
                     "max": int(max(snippets, default=0))},
        "video_hours": round(seconds / 3600, 3), "size_mb": round(size / 2**20, 2),
    }
    if check:
        bad, foreign = {}, {}
        dtype = np.dtype(recipe.get("store_dtype") or "float16")  # the recipe says what was written
        for vid in tqdm(store.video_ids, desc="check", unit="video", disable=not progress, leave=False):
            try:
                x = store[vid]
            except (FeatureError, KeyError) as err:
                foreign[vid] = str(err.args[0] if isinstance(err, KeyError) else err)
                continue
            if x.shape[0] != store.crops or x.shape[2] != store.dim or x.dtype != dtype:
                foreign[vid] = (f"shape {x.shape} {x.dtype}, the store says ({store.crops}, T, "
                                f"{store.dim}) {dtype}")
            n = int(x.size - np.count_nonzero(np.isfinite(x)))
            if n:
                bad[vid] = n
        info["non_finite"] = bad
        info["foreign"] = foreign
    return info


def _format_info(info: dict) -> str:
    r, p = info["recipe"], info["provenance"] or {}
    weights = p.get("weights", "unknown")
    if weights == "random-init":
        weights = f"RANDOM-INIT (init_seed {p.get('init_seed')}): features carry no pretrained knowledge"
    elif p.get("sha256"):
        weights += f" (sha256 {p['sha256'][:16]}…)"
    s = info["snippets"]
    lines = [
        f"store      {info['store']}",
        f"backbone   {info['backbone']} ({info['kind']}; family {info['family']}), {info['dim']}-d, "
        f"{info['crops']} view(s): {', '.join(info['views'] or [])}",
        f"recipe     {r.get('clip_len')}-frame snippets, stride {r.get('stride')}, "
        f"{r.get('frames_per_snippet')} frame(s) each, resize {r.get('resize')}, crop {r.get('crop_size')} "
        f"({r.get('crops')})",
        f"weights    {weights}",
        f"videos     {info['videos']}: " + ", ".join(f"{k} {v}" for k, v in sorted(info["splits"].items()))
        + "; " + ", ".join(f"{k} {v}" for k, v in sorted(info["labels"].items())),
        f"snippets   {s['total']} (per video min {s['min']}, median {s['median']:g}, max {s['max']}), "
        f"{info['video_hours']:g} h of video",
        f"size       {info['size_mb']:g} MB",
    ]
    if "non_finite" in info:
        bad, foreign = info["non_finite"], info["foreign"]
        lines.append("check      all values finite" if not bad else
                     f"check      {len(bad)} video(s) with NaN/inf: "
                     + ", ".join(f"{k} ({v})" for k, v in list(bad.items())[:10]))
        if foreign:
            lines.append(f"check      {len(foreign)} array(s) not written by wsvad for this store: "
                         + "; ".join(f"{k}: {v}" for k, v in list(foreign.items())[:5]))
    return "\n".join(lines)


# ----------------------------------------------------------------------------------- main

def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="wsvad", description="Weakly-supervised video anomaly detection: "
                                "score a video with a trained run, inspect a feature store.")
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("score", help="score one video with a trained run",
                       description="Decode VIDEO, extract features with the run's recipe, score it with "
                       "the run's checkpoint; write frame scores (JSON) and a timeline (PNG).")
    s.add_argument("video", help="a video file (anything decord/ffmpeg reads)")
    s.add_argument("--run", required=True, metavar="RUN_DIR",
                   help="a training run folder, results/<dataset>/runs/<method>/<features>/seed<n>")
    s.add_argument("--out", metavar="JSON", help="frame scores (default: ./<video name>.scores.json)")
    s.add_argument("--plot", metavar="PNG", help="timeline plot (default: beside --out, <video name>.timeline.png)")
    s.add_argument("--weights", metavar="FILE",
                   help="the backbone weights file to extract with (default: the run's feature recipe's; "
                        "needed for a run trained on imported published features)")
    s.add_argument("--checkpoint", default="checkpoint.pt",
                   help="checkpoint file in RUN_DIR (default checkpoint.pt; checkpoint_best.pt where kept)")
    s.add_argument("--device", choices=("auto", "cpu", "cuda"), default=None,
                   help="default: $WSVAD_DEVICE, else a GPU when there is one")
    s.add_argument("-q", "--quiet", action="store_true", help="no progress bars, no log")
    i = sub.add_parser("info", help="summarise a feature store",
                       description="Recipe, weights provenance, videos and snippet counts of a Zarr feature store.")
    i.add_argument("store", help="a feature store folder (results/<dataset>/features/<feature_set>.zarr)")
    i.add_argument("--check", action="store_true", help="also read every array and count NaN/inf values")
    i.add_argument("--json", action="store_true", help="print JSON instead of text")
    i.add_argument("-q", "--quiet", action="store_true", help="no progress bars, no log")
    _watch_parser(sub)
    return p


def _key_value(text: str) -> tuple[str, str]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"{text!r}: expected KEY=VALUE (an FFmpeg input option)")
    key, value = text.split("=", 1)
    return key, value


def _watch_parser(sub) -> None:
    w = sub.add_parser(
        "watch", help="score a live stream, a camera or a growing recording, snippet by snippet",
        description="Read SOURCE through FFmpeg (PyAV) as it arrives; score every completed snippet with "
        "the run's recipe, backbone and model (a causal method snippet by snippet, any other over a "
        "sliding window of the last W snippets); write one JSON line per snippet (scores, alert state, "
        "latency) and optionally a timeline PNG. A dropped stream is reopened with backoff; SIGINT or "
        "SIGTERM flushes and closes every output.")
    w.add_argument("source", help="a recording (possibly still being written: .ts, .mkv, fragmented .mp4), "
                   "a stream URL (rtsp://, http://, tcp://, udp://, rtmp://, srt:// ...), or a capture "
                   "device (/dev/video0, or a name with --format)")
    w.add_argument("--run", required=True, metavar="RUN_DIR",
                   help="a training run folder, results/<dataset>/runs/<method>/<features>/seed<n>")
    w.add_argument("--out", metavar="JSONL", default="-", help="JSON-lines output (default: stdout)")
    w.add_argument("--append", action="store_true", help="append to --out instead of replacing it")
    w.add_argument("--plot", metavar="PNG", help="timeline plot, replaced atomically every --plot-every snippets")
    w.add_argument("--plot-every", type=int, default=25, metavar="N", help="redraw the plot every N snippets (25)")
    w.add_argument("--plot-span", type=int, default=600, metavar="N", help="snippets shown in the plot (600)")
    w.add_argument("--window", type=int, metavar="W",
                   help="snippets of context for a method that is not causal (default: the method's, "
                        "the number of segments it trained on)")
    w.add_argument("--threshold", type=float,
                   help="alert threshold on the smoothed score (default: the run's far_threshold, else 0.5)")
    w.add_argument("--hysteresis", type=float, default=0.1,
                   help="the alert clears below threshold - hysteresis (default 0.1)")
    w.add_argument("--min-duration", type=float, default=1.0, metavar="SECONDS",
                   help="seconds of video above threshold before the alert goes on (default 1)")
    w.add_argument("--smooth", type=int, default=3, metavar="K",
                   help="moving average of the last K snippet scores (default 3; 1: none)")
    w.add_argument("--format", dest="fmt", metavar="FMT",
                   help="FFmpeg input format: a capture device (v4l2, avfoundation, dshow, lavfi ...) or a demuxer")
    w.add_argument("--option", action="append", type=_key_value, default=[], metavar="KEY=VALUE",
                   help="an FFmpeg input option (repeatable), e.g. video_size=1280x720 framerate=25")
    w.add_argument("--fps", type=float, help="frame rate, when the source does not state it (else 25 is assumed)")
    w.add_argument("--timeout", type=float, default=10.0, metavar="SECONDS",
                   help="no data for this long: a stream has dropped, a growing recording is finished (10)")
    w.add_argument("--reconnect-timeout", type=float, default=float("inf"), metavar="SECONDS",
                   help="give up on a dropped stream or device after this long (default: never; 0: do not reopen)")
    w.add_argument("--weights", metavar="FILE", help="backbone weights file (as for `wsvad score`)")
    w.add_argument("--checkpoint", default="checkpoint.pt", help="checkpoint file in RUN_DIR (checkpoint.pt)")
    w.add_argument("--device", choices=("auto", "cpu", "cuda"), default=None,
                   help="default: $WSVAD_DEVICE, else a GPU when there is one")
    w.add_argument("-q", "--quiet", action="store_true", help="no status line, no log")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    # the log goes to stderr for this command only; the caller's logging is restored after
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root.handlers[:] = [handler]
    root.setLevel(logging.ERROR if args.quiet else logging.WARNING)
    try:
        return _run(args, progress=not args.quiet)
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])


def _run(args, progress: bool) -> int:
    try:
        if args.command == "watch":
            from wsvad_core.live.watch import watch

            try:
                end = watch(args.source, args.run, args.out, args.plot, window=args.window,
                            threshold=args.threshold, hysteresis=args.hysteresis, min_duration=args.min_duration,
                            smooth=args.smooth, plot_every=args.plot_every, plot_span=args.plot_span,
                            fmt=args.fmt, options=dict(args.option), fps=args.fps, timeout=args.timeout,
                            reconnect_timeout=args.reconnect_timeout, checkpoint=args.checkpoint,
                            weights=args.weights, device=args.device, progress=progress, append=args.append)
            except KeyboardInterrupt:  # a second SIGINT: the outputs were closed on the way out
                return 130
            if progress:
                print(f"wsvad watch: {end['snippets']} snippets, {end['alerts']} alert(s), {end['gaps']} gap(s); "
                      f"{end['reason']}", file=sys.stderr)
            return 0
        if args.command == "score":
            rec = score_video(args.video, args.run, args.out, args.plot, device=args.device,
                              checkpoint=args.checkpoint, progress=progress, weights=args.weights)
            warn = "  [random-init backbone: illustration only]" if rec["weights"] == "random-init" else ""
            print(f"{rec['method']} / {rec['feature_set']}: {rec['n_frames']} frames, max score "
                  f"{rec['max_score']:.3f}, {rec['frames_above_threshold']} frames >= {rec['threshold']:g}{warn}")
            print(f"scores   {rec['scores_json']}\ntimeline {rec['timeline_png']}")
            return 0
        info = store_info(args.store, check=args.check, progress=progress)
        print(json.dumps(info, indent=2, sort_keys=True) if args.json else _format_info(info))
        return 1 if info.get("non_finite") or info.get("foreign") else 0
    except USER_ERRORS as err:
        msg = err.args[0] if isinstance(err, KeyError) and err.args else str(err)
        print(f"wsvad {args.command}: error: {msg}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
