"""Plots of results, as PNG: a run's ROC and PR curves, one score timeline per test video with
the ground-truth intervals shaded, and a bar chart of a dataset's table.

Figures are built with ``matplotlib.figure.Figure`` (no pyplot): no global figure state, no
GUI backend, safe in Snakemake jobs and in the ``wsvad`` command. Every file is written to a
temporary name and renamed, a timeline folder as a whole.
"""
from __future__ import annotations

import math
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from wsvad_core.io import atomic_path, shared_mode

__all__ = ["label_intervals", "plot_timeline", "plot_curves", "plot_table", "table_bars", "table_html",
           "settings_html", "plot_run", "load_frame_scores", "timeline_name"]

SCORE_COLOR = "#1f4e9c"
GT_COLOR = "#e4572e"
DPI = 100


def label_intervals(labels) -> list[tuple[int, int]]:
    """Inclusive ``(start, end)`` frame runs where ``labels`` is non-zero."""
    y = np.asarray(labels).reshape(-1) != 0
    if not y.any():
        return []
    edges = np.flatnonzero(np.diff(np.concatenate([[False], y, [False]]).astype(np.int8)))
    return [(int(s), int(e) - 1) for s, e in zip(edges[::2], edges[1::2])]


def _save(fig: Figure, out: str | os.PathLike) -> Path:
    with atomic_path(out, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=DPI)
    return Path(out)


def plot_timeline(frame_scores, out: str | os.PathLike, *, gt=None, fps: float | None = None,
                  title: str = "", threshold: float | None = None,
                  snippet_len: int | None = None) -> Path:
    """Frame scores against time, ground-truth anomaly frames shaded (when ``gt`` is given),
    an optional dashed decision threshold; frames below, seconds on top when ``fps`` is known."""
    s = np.asarray(frame_scores, dtype=np.float64).reshape(-1)
    if s.size == 0:
        raise ValueError(f"{out}: no frame scores to plot")
    # fixed margins, not constrained layout: a run draws one timeline per test video, and the
    # layout pass doubles the cost of each (0.47 -> 0.27 s per figure on the demo's CPU)
    fig = Figure(figsize=(9, 2.6))
    ax = fig.add_subplot()
    frames = np.arange(s.size)
    if gt is not None:
        gt = np.asarray(gt).reshape(-1)
        if gt.size != s.size:
            raise ValueError(f"{out}: {s.size} frame scores but {gt.size} ground-truth frames")
        for k, (a, b) in enumerate(label_intervals(gt)):
            # span whole frames: frame i covers [i, i + 1)
            ax.axvspan(a, b + 1, color=GT_COLOR, alpha=0.22, lw=0,
                       label="ground-truth anomaly" if k == 0 else None)
    ax.step(np.append(frames, s.size), np.append(s, s[-1]), where="post", color=SCORE_COLOR, lw=1.6,
            label="anomaly score")
    if threshold is not None:
        ax.axhline(threshold, color="0.45", lw=0.9, ls="--", label=f"threshold {threshold:g}")
    ax.set_xlim(0, s.size)
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("frame" + (f" (snippets of {snippet_len})" if snippet_len else ""))
    ax.set_ylabel("score")
    ax.grid(alpha=0.25, lw=0.6)
    seconds_axis = bool(fps and math.isfinite(fps) and fps > 0)
    if seconds_axis:
        top = ax.secondary_xaxis("top", functions=(lambda f: f / fps, lambda t: t * fps))
        top.set_xlabel("seconds", fontsize=8)
        top.tick_params(labelsize=8)
    fig.subplots_adjust(left=0.065, right=0.985, bottom=0.19, top=0.73 if seconds_axis else 0.87)
    ax.legend(loc="upper right", fontsize=8, framealpha=0.85)
    if title:
        ax.set_title(title, fontsize=10, loc="left")
    return _save(fig, out)


def _roc_pr(y: np.ndarray, s: np.ndarray):
    from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score, roc_curve

    fpr, tpr, _ = roc_curve(y, s)
    precision, recall, _ = precision_recall_curve(y, s)
    return (fpr, tpr, roc_auc_score(y, s)), (recall, precision, average_precision_score(y, s))


def plot_curves(frame_scores: Mapping[str, np.ndarray], gt: Mapping[str, np.ndarray],
                out: str | os.PathLike, title: str = "") -> Path:
    """Frame-level ROC (left) and precision-recall (right) curves over all test frames pooled,
    as the metrics are computed."""
    vids = list(gt)
    missing = [v for v in vids if v not in frame_scores]
    if missing:
        raise KeyError(f"{out}: no frame scores for {len(missing)} test videos: {missing[:5]}")
    y = np.concatenate([np.asarray(gt[v]).reshape(-1) for v in vids]).astype(np.int8)
    s = np.concatenate([np.asarray(frame_scores[v], dtype=np.float64).reshape(-1) for v in vids])
    if y.size != s.size:
        raise ValueError(f"{out}: {s.size} frame scores for {y.size} ground-truth frames")
    fig = Figure(figsize=(9, 4), layout="constrained")
    ax_roc, ax_pr = fig.subplots(1, 2)
    if y.min() == y.max():  # one class only: no curve is defined
        for ax in (ax_roc, ax_pr):
            ax.text(0.5, 0.5, "test frames hold one class only:\nno ROC / PR curve",
                    ha="center", va="center", transform=ax.transAxes)
    else:
        (fpr, tpr, auc), (recall, precision, ap) = _roc_pr(y, s)
        ax_roc.plot(fpr, tpr, color=SCORE_COLOR, lw=1.8, label=f"AUC {100 * auc:.2f}")
        ax_roc.plot([0, 1], [0, 1], color="0.6", lw=0.9, ls="--", label="chance")
        ax_pr.plot(recall, precision, color=SCORE_COLOR, lw=1.8, drawstyle="steps-post",
                   label=f"AP (step) {100 * ap:.2f}")
        ax_pr.axhline(y.mean(), color="0.6", lw=0.9, ls="--", label=f"chance {100 * y.mean():.1f}%")
    ax_roc.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC (frame level)",
               xlim=(0, 1), ylim=(0, 1.01))
    ax_pr.set(xlabel="recall", ylabel="precision", title="precision-recall (frame level)",
              xlim=(0, 1), ylim=(0, 1.01))
    for ax in (ax_roc, ax_pr):
        ax.grid(alpha=0.25, lw=0.6)
        ax.set_aspect("equal")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="best", fontsize=9)
    if title:
        fig.suptitle(title, fontsize=11)
    return _save(fig, out)


def table_bars(df, metric: str) -> tuple[list[str], list[dict]]:
    """The bars of one metric panel of :func:`plot_table`: the methods (x groups) and one series
    per feature set, split by checkpoint selection (and by weights) where the table holds more
    than one; each series: ``feature_set``, ``selection``, ``label``, ``mean`` and ``std`` (in %,
    NaN where a method has no row). Tables hold a ``last`` and a ``best`` row per method × feature
    set, so without the split two rows would share one bar."""
    from wsvad_core.reporting.tables import SELECTION_LABELS

    if "selection" not in df:
        df = df.assign(selection="last")
    split = [c for c in ("selection", "weights") if c in df and df[c].nunique() > 1]
    keys = ["feature_set", *split]
    dup = df[df.duplicated(["method", *keys], keep=False)]
    if not dup.empty:
        raise ValueError(f"table rows are not unique per method × {' × '.join(keys)}: "
                         f"{dup[['method', *keys]].drop_duplicates().to_dict('records')[:3]}")
    methods = sorted(df["method"].unique())
    series = []
    for key, rows in df.groupby(keys, sort=True):
        key = key if isinstance(key, tuple) else (key,)
        by = dict(zip(keys, key))
        rows = rows.set_index("method")
        names = [str(by["feature_set"])]
        if "selection" in split:
            names.append(SELECTION_LABELS.get(by["selection"], str(by["selection"])))
        if "weights" in split:
            names.append(str(by["weights"]))
        series.append({"feature_set": by["feature_set"],
                       "selection": by.get("selection", rows["selection"].iloc[0]),
                       "label": " · ".join(names),
                       "mean": [100 * rows[f"{metric}_mean"].get(m, np.nan) for m in methods],
                       "std": [100 * rows[f"{metric}_std"].get(m, np.nan) for m in methods]})
    return methods, series


def plot_table(summary, out: str | os.PathLike, title: str = "",
               metrics: Sequence[str] = ("auc", "ap_step")) -> Path:
    """Grouped bars of a dataset's table (``results/tables/{dataset}.csv``, or its DataFrame):
    one group per method, one bar per feature set and checkpoint selection (colour = feature
    set, hatching = selection), mean ± std over seeds, one panel per metric."""
    import pandas as pd

    from wsvad_core.reporting.tables import METRICS, SELECTION_LABELS

    df = pd.read_csv(summary) if isinstance(summary, (str, os.PathLike)) else summary
    if df.empty:
        raise ValueError(f"{out}: the table has no rows")
    fsets = sorted(df["feature_set"].unique())
    selections = sorted(df["selection"].unique()) if "selection" in df else ["last"]
    n_methods, n_series = (len(x) for x in table_bars(df, metrics[0]))
    # a panel widens with its bars, so 13 methods x 3 feature sets stay readable
    panel = max(4.2, 0.3 * n_methods * (1 + 0.5 * (n_series - 1)))
    fig = Figure(figsize=(panel * len(metrics) + 0.2 * n_series + 0.6, 4.2), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(metrics), sharey=True))
    width = 0.8 / n_series
    cmap = ["#1f4e9c", "#e4572e", "#29a36a", "#9c6ade", "#f2a541", "#4cb5c3"]
    hatches = ["", "//", "..", "xx"]
    for ax, metric in zip(axes, metrics):
        methods, series = table_bars(df, metric)
        # each method's bars are centred on its tick, however many of the series it has
        present = np.array([[not np.isnan(v) for v in ser["mean"]] for ser in series])
        rank, count = np.cumsum(present, axis=0) - 1, present.sum(axis=0)
        for k, ser in enumerate(series):
            x = np.arange(len(methods)) + (rank[k] - (count - 1) / 2) * width
            bars = ax.bar(x, ser["mean"], width * 0.92, yerr=ser["std"], capsize=3, label=ser["label"],
                          color=cmap[fsets.index(ser["feature_set"]) % len(cmap)],
                          hatch=hatches[selections.index(ser["selection"]) % len(hatches)],
                          edgecolor="white", linewidth=0)
            ax.bar_label(bars, fmt="%.1f", fontsize=6 if n_series > 1 else 7, padding=2)
        ax.set_xticks(np.arange(len(methods)), methods, rotation=30 if len(methods) > 4 else 0,
                      ha="right" if len(methods) > 4 else "center")
        ax.set_title(METRICS.get(metric, metric) + " (%)", fontsize=10)
        ax.set_ylim(0, 105)
        ax.grid(axis="y", alpha=0.25, lw=0.6)
    axes[0].set_ylabel("mean ± std over seeds")
    handles, labels = axes[0].get_legend_handles_labels()
    legend_title = ("features · checkpoint" if len(selections) > 1 else
                    f"features (checkpoint: {SELECTION_LABELS.get(selections[0], selections[0])})")
    fig.legend(handles, labels, title=legend_title, fontsize=8, title_fontsize=8, loc="outside right upper")
    if "weights" in df and (df["weights"] == "random-init").any():
        title = (title + "  " if title else "") + "(random-init backbone: not comparable to papers)"
    if title:
        fig.suptitle(title, fontsize=11)
    return _save(fig, out)


def table_html(summary, out: str | os.PathLike, title: str = "") -> Path:
    """A dataset's table as a small standalone HTML page (what the report shows inline; the
    .csv and .md stay the files to cite)."""
    import html

    import pandas as pd

    from wsvad_core.reporting.tables import METRICS

    df = pd.read_csv(summary) if isinstance(summary, (str, os.PathLike)) else summary
    head = ["method", "features", "weights", "selection", "seeds", *METRICS.values()]
    rows = []
    for r in df.to_dict("records"):
        cells = [r["method"], r["feature_set"], r["weights"], r["selection"], str(r["seeds"])]
        cells += [f"{100 * r[f'{k}_mean']:.2f} ± {100 * r[f'{k}_std']:.2f}" for k in METRICS]
        rows.append("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in cells) + "</tr>")
    note = ""
    if (df["weights"] == "random-init").any():
        note = ("<p><b>random-init</b>: features from a randomly initialised backbone (no weights file "
                "was configured); these numbers say nothing about the methods' published accuracy.</p>")
    page = f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>{html.escape(title or "table")}</title>
<style>body{{font-family:sans-serif;margin:1em}} table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}} td:nth-child(-n+4),th{{text-align:left}}
th{{background:#eef}}</style></head><body>
<h3>{html.escape(title)}</h3>
<p>Frame-level metrics in %, mean ± std over seeds.</p>
<table><tr>{"".join(f"<th>{html.escape(h)}</th>" for h in head)}</tr>
{chr(10).join(rows)}
</table>{note}</body></html>
"""
    with atomic_path(out, suffix=".html") as tmp:
        tmp.write_text(page, encoding="utf-8")
    return Path(out)


def settings_html(settings: Mapping, out: str | os.PathLike, title: str = "") -> Path:
    """The settings a dataset's results were made with (resolved recipes, method overrides,
    evaluation), as YAML in a small HTML page for the report."""
    import html

    import yaml

    text = yaml.safe_dump(json_safe(settings), sort_keys=False, default_flow_style=None, width=100)
    page = (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title></head>"
            f"<body style=\"font-family:sans-serif;margin:1em\"><h3>{html.escape(title)}</h3>"
            f"<pre style=\"font-size:13px\">{html.escape(text)}</pre></body></html>\n")
    with atomic_path(out, suffix=".html") as tmp:
        tmp.write_text(page, encoding="utf-8")
    return Path(out)


def json_safe(obj):
    """Plain dicts/lists/scalars (Snakemake hands params over as its own mapping types)."""
    import json

    return json.loads(json.dumps(obj, default=str))


def load_frame_scores(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """video_id -> frame scores of an evaluation's ``scores.npz``, in its order."""
    with np.load(path, allow_pickle=False) as npz:
        if "__order__" not in npz.files:
            raise ValueError(f"{path}: no '__order__' entry; not a scores.npz of the evaluate stage")
        return {str(v): npz[f"frame/{v}"] for v in npz["__order__"]}


def timeline_name(video_id: str) -> str:
    return f"{video_id}.png"


def _video_info(manifest) -> dict[str, dict]:
    if manifest is None:
        return {}
    from wsvad_core.data.manifest import read_manifest

    return {r["video_id"]: r for r in read_manifest(manifest).to_dict("records")}


def plot_run(scores: str | os.PathLike, ground_truth: str | os.PathLike, curves_out: str | os.PathLike,
             timelines_out: str | os.PathLike, *, metrics: str | os.PathLike | None = None,
             manifest: str | os.PathLike | None = None, clip_len: int | None = None,
             progress: bool = True) -> list[Path]:
    """The ``plot_run`` rule: ``curves_out`` (ROC + PR) and one timeline PNG per test video in
    the folder ``timelines_out``, which appears complete or not at all."""
    import json

    from tqdm import tqdm

    from wsvad_core.data.ground_truth import load_ground_truth

    frame = load_frame_scores(scores)
    gt = load_ground_truth(ground_truth)
    info = json.loads(Path(metrics).read_text()) if metrics else {}
    videos = _video_info(manifest)
    run = " / ".join(str(info[k]) for k in ("method", "feature_set") if k in info)
    if "seed" in info:
        run += f" / seed {info['seed']}"
    weights = info.get("weights")
    head = run + (f"  [{weights}]" if weights == "random-init" else "")
    plot_curves(frame, gt, curves_out, title=head)

    final = Path(timelines_out)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    written = []
    try:
        for vid in tqdm(list(gt), desc="timelines", unit="video", disable=not progress, leave=False):
            row = videos.get(vid, {})
            label = row.get("label", int(np.asarray(gt[vid]).any()))
            kind = "abnormal" if int(label) else "normal"
            title = f"{vid}  ({kind}{', ' + row['class'] if row.get('class') not in (None, 'Normal') else ''})"
            title += f"   {head}" if head else ""
            plot_timeline(frame[vid], tmp / timeline_name(vid), gt=gt[vid], fps=row.get("fps"),
                          title=title, threshold=info.get("far_threshold"), snippet_len=clip_len)
            written.append(final / timeline_name(vid))
        os.chmod(tmp, shared_mode(0o777))  # mkdtemp makes 0700; outputs are shared folders
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return [Path(curves_out), *written]


