"""``wsvad watch SOURCE --run RUN``: score a live source snippet by snippet.

Records, one JSON object per line (``type``):

* ``start``: the source (its codec, size, frame rate), the run, the backbone, the scoring
  context (causal, or the window W), the alert settings;
* ``snippet``: per snippet, its number, the frame range (stream frame numbers, inclusive) and
  stream time, the score, the smoothed score, the alert state (off / pending / on), the latency
  from its last frame's arrival to its score and the compute time; ``padded`` for a last snippet
  cut short by the end of the source;
* ``alert``: the alert going on or off;
* ``gap``: the source dropped and came back: when, for how long, after how many attempts, why,
  and the frames of the unfinished snippet that were dropped;
* ``end``: why it ended (the source is over, it stayed down, SIGINT / SIGTERM, an error) and
  the totals, the latency percentiles and the peak memory.
"""
from __future__ import annotations

import logging
import math
import os
import queue
import resource
import signal
import sys
import threading
import time
from collections import deque
from datetime import datetime
from pathlib import Path

import numpy as np

from wsvad_core.errors import FeatureError

log = logging.getLogger(__name__)

__all__ = ["watch", "DEFAULT_FPS"]

DEFAULT_FPS = 25.0  # when the source does not say and --fps is not given
LATENCY_KEPT = 1000  # latencies kept for the percentiles of the end record (a ring, not the whole stream)


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t).astimezone().isoformat(timespec="milliseconds")


def _peak_rss_mb() -> float:
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(kb / (2**20 if sys.platform == "darwin" else 2**10), 1)


def watch(source: str, run_dir: str | os.PathLike, out: str | os.PathLike | None = None,
          plot: str | os.PathLike | None = None, *, window: int | None = None, threshold: float | None = None,
          hysteresis: float = 0.1, min_duration: float = 1.0, smooth: int = 3, plot_every: int = 25,
          plot_span: int = 600, fmt: str | None = None, options: dict | None = None, fps: float | None = None,
          timeout: float = 10.0, reconnect_timeout: float = math.inf, checkpoint: str = "checkpoint.pt",
          weights: str | None = None, device: str | None = None, progress: bool = True,
          append: bool = False) -> dict:
    """Watch ``source`` with the run in ``run_dir`` until the source is over, stays down past
    ``reconnect_timeout`` seconds, or SIGINT / SIGTERM; returns the ``end`` record. ``out``:
    the JSON-lines file (None or "-": stdout); ``plot``: the timeline PNG, redrawn every
    ``plot_every`` snippets over the last ``plot_span``."""
    from wsvad_core.device import select_device
    from wsvad_core.features.transforms import host_transform
    from wsvad_core.live.alerts import ON, AlertTracker, Smoother
    from wsvad_core.live.outputs import JsonLines, OutputClosed, StatusLine, TimelinePlot
    from wsvad_core.live.scoring import ContextScorer, SnippetEmbedder
    from wsvad_core.live.snippets import SnippetAssembler
    from wsvad_core.live.source import Reader, open_source, parse_source
    from wsvad_core.recipes import normalize_recipe
    from wsvad_core.runs import build_model
    from wsvad_core.scoring import load_run, run_protocol, scoring_recipe

    # the run and the arguments are checked before any model is built
    record, state_dict = load_run(run_dir, checkpoint)
    ckpt = str(Path(run_dir) / checkpoint)
    recipe = normalize_recipe(scoring_recipe(record, ckpt, weights))
    test_views, run_threshold = run_protocol(run_dir)
    threshold = run_threshold if threshold is None else float(threshold)
    if window is not None and window < 1:
        raise ValueError(f"--window must be >= 1 snippet, got {window}")
    if fps is not None and not 0 < fps <= 1000:
        raise ValueError(f"--fps must be in (0, 1000], got {fps}")
    if plot and (plot_every < 1 or plot_span < 2):
        raise ValueError(f"--plot-every must be >= 1 and --plot-span >= 2, got {plot_every} and {plot_span}")
    smoother = Smoother(smooth)
    alerts = AlertTracker(threshold, hysteresis, min_duration)
    src = parse_source(source, fmt, options, timeout)

    dev = select_device(prefer=device)
    embedder = SnippetEmbedder(recipe, dev, views=test_views)
    model = build_model(record, state_dict)[0].to(dev)
    scorer = ContextScorer(model, window)
    if window is not None and scorer.causal:
        log.warning("method %s scores each snippet alone (causal): --window %d changes nothing",
                    record.method, window)
    assembler = SnippetAssembler(recipe["clip_len"], recipe["stride"], recipe["frames_per_snippet"],
                                 recipe["t_rule"])
    # opened once the models are built: a live source's first frames do not queue up meanwhile
    container, info = open_source(src)
    if fps is not None:
        fps_used, fps_from = float(fps), "--fps"
    elif info["fps"]:
        fps_used, fps_from = info["fps"], "stream"
    else:
        fps_used, fps_from = DEFAULT_FPS, "assumed"
        log.warning("%s: the source does not state its frame rate; assuming %g fps (set --fps)",
                    src.label, DEFAULT_FPS)
    reader = Reader(src, container, assembler.sampled, host_transform(recipe), reconnect_timeout)
    assembler.to_pixels = reader.pixels

    weights_used = recipe.get("weights") or "random-init"
    title = f"{Path(src.label).name if src.kind == 'file' else src.label}   {record.method} / " \
            f"{recipe.get('name')} / seed {record.seed}" + ("  [random-init]" if weights_used == "random-init" else "")
    jl = JsonLines(out, append=append)
    timeline = (TimelinePlot(plot, threshold, alerts.release, title, every=plot_every, span=plot_span)
                if plot else None)
    status = StatusLine(progress)
    stop: list[str] = []

    def on_signal(signum, _frame):
        if stop:  # a second signal: stop now, still closing the outputs on the way out
            raise KeyboardInterrupt
        stop.append(signal.Signals(signum).name)

    handlers = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            handlers[sig] = signal.signal(sig, on_signal)

    t_start = time.time()
    latencies: deque[float] = deque(maxlen=LATENCY_KEPT)
    computes: deque[float] = deque(maxlen=LATENCY_KEPT)
    totals = {"snippets": 0, "latency_sum": 0.0, "latency_max": 0.0, "gaps": 0}
    snippet_s = recipe["stride"] / fps_used

    def handle(snip) -> None:
        t0 = time.perf_counter()
        feats = embedder(snip.frames)
        if feats.shape[-1] != record.feat_dim:
            raise FeatureError(f"{src.label}: features of dim {feats.shape[-1]}, the run's model takes "
                               f"{record.feat_dim} ({ckpt})")
        score = scorer.push(feats)
        smoothed = smoother(score)
        start_s, end_s = snip.first / fps_used, (snip.last + 1) / fps_used
        state, event = alerts.update(smoothed, start_s, end_s)
        done = time.perf_counter()
        latency, compute = (done - snip.arrival) * 1e3, (done - t0) * 1e3
        now = time.time()
        rec = {"type": "snippet", "snippet": snip.index, "wall_time": _iso(now), "time": round(now, 3),
               "frames": [snip.first, snip.last], "stream_s": [round(start_s, 3), round(end_s, 3)],
               "score": score, "smoothed": smoothed, "alert": state, "latency_ms": round(latency, 1),
               "compute_ms": round(compute, 1)}
        if snip.padded:
            rec["padded"] = True
        jl.write(rec)
        if event is not None:
            jl.write({"type": "alert", **event, "snippet": snip.index, "wall_time": _iso(now), "time": round(now, 3)})
        latencies.append(latency)
        computes.append(compute)
        totals["snippets"] += 1
        totals["latency_sum"] += latency
        totals["latency_max"] = max(totals["latency_max"], latency)
        if timeline is not None:
            timeline.add(snip.wall, score, smoothed, state == ON,
                         note=f"{alerts.alerts} alert(s), {totals['gaps']} gap(s), "
                              f"latency {np.median(latencies):.0f} ms")
        status.update(f"score {score:.2f} ~{smoothed:.2f} alert {state}, latency {latency:.0f} ms, "
                      f"x{snippet_s * 1e3 / max(np.median(computes), 1e-6):.1f} real time")

    end_reason = "error"
    try:
        jl.write({
            "type": "start", "wall_time": _iso(t_start), "time": round(t_start, 3), "source": src.label,
            "kind": src.kind, "stream": info, "fps": fps_used, "fps_from": fps_from,
            "run": str(Path(run_dir).resolve()), "checkpoint": ckpt, "method": record.method,
            "feature_set": recipe.get("name"), "seed": record.seed, "backbone": recipe["backbone"],
            "weights": weights_used, "clip_len": recipe["clip_len"], "stride": recipe["stride"],
            "frames_per_snippet": recipe["frames_per_snippet"], "t_rule": recipe["t_rule"],
            "views": test_views or recipe["views"], "causal": scorer.causal,
            "window": None if scorer.causal else scorer.window, "threshold": threshold,
            "release": alerts.release, "min_duration_s": min_duration, "smooth": smoother.k,
            "device": str(dev), "pid": os.getpid()})
        reader.start()
        while True:
            if stop:
                end_reason = stop[0]
                break
            try:
                kind, payload = reader.q.get(timeout=0.2)
            except queue.Empty:
                continue
            if kind == "frame":
                snip = assembler.push(payload)
                if snip is not None:
                    handle(snip)
            elif kind == "gap":
                dropped = assembler.reset()
                totals["gaps"] += 1
                jl.write({"type": "gap", "wall_time": _iso(payload["until"]), "down_since": _iso(payload["since"]),
                          "frames_dropped": dropped, **payload})
                if timeline is not None:
                    timeline.add_gap(payload["since"], payload["until"])
            elif kind == "end":
                snip = assembler.finish()
                if snip is not None:
                    handle(snip)
                end_reason = f"source over: {payload}"
                break
            elif kind == "error":
                raise payload
    except OutputClosed:
        end_reason = "stdout closed"
    except KeyboardInterrupt:
        end_reason = "interrupted"
        raise
    except BaseException as err:
        end_reason = f"error: {err}"
        raise
    finally:
        reader.stop.set()
        reader.join(timeout=1.0)  # a read blocked in FFmpeg returns within the timeout; it is a daemon
        for sig, old in handlers.items():
            signal.signal(sig, old)
        lat = np.array(latencies) if latencies else np.zeros(1)
        n = totals["snippets"]
        end = {"type": "end", "wall_time": _iso(time.time()), "time": round(time.time(), 3), "reason": end_reason,
               "snippets": n, "frames": reader.frames, "frames_unscored": assembler.pending,
               "gaps": totals["gaps"], "alerts": alerts.alerts, "seconds": round(time.time() - t_start, 3),
               "latency_ms": {"mean": round(totals["latency_sum"] / n, 1) if n else None,
                              f"median_last_{LATENCY_KEPT}": round(float(np.median(lat)), 1) if n else None,
                              f"p95_last_{LATENCY_KEPT}": round(float(np.percentile(lat, 95)), 1) if n else None,
                              "max": round(totals["latency_max"], 1) if n else None},
               "compute_ms_median": round(float(np.median(computes)), 1) if computes else None,
               "real_time_factor": (round(snippet_s * 1e3 / float(np.median(computes)), 2)
                                    if computes else None),
               "corrupt_packets": reader.corrupt_packets, "peak_rss_mb": _peak_rss_mb()}
        status.close()
        try:
            if timeline is not None:
                timeline.close(note=f"{alerts.alerts} alert(s), {totals['gaps']} gap(s); ended: "
                                    f"{end_reason.split(';')[0][:60]}")
        finally:
            try:
                jl.write(end)
            except OutputClosed:
                pass
            jl.close()
    return end
