"""Result tables: one row per method × feature set × checkpoint selection, mean ± std over
seeds, with the features' provenance and, for the benchmarks, the paper's reported number.

Written as .csv (every column, for plots and scripts), .md (the main table, the per-class
frame AUC and the sources) and .tex (the main table, booktabs)."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd

from wsvad_core.cards import method_card
from wsvad_core.io import atomic_path
from wsvad_core.reference_numbers import reported_for

METRICS = {"auc": "AUC", "ap_step": "AP (step)", "ap_trapz": "AP (trapz)",
           "auc_abnormal": "AUC abn.", "far_normal": "FAR normal"}
VIDEO_METRICS = {"video_auc": "video AUC", "video_f1": "video F1"}
KEYS = ["method", "feature_set", "selection", "weights"]
SELECTION_LABELS = {"last": "last step", "best": "best on test"}


def _rows_of(m: dict) -> list[dict]:
    """One row per checkpoint selection of a metrics.json (older files hold one, at top level)."""
    base = {"method": m["method"], "feature_set": m["feature_set"], "family": m.get("family", ""), "seed": m["seed"],
            "weights": m.get("weights", "unknown"),
            "source": (m.get("provenance") or {}).get("source", "")}
    out = []
    for sel, sm in (m.get("selections") or {m.get("selection", "last"): m}).items():
        row = {**base, "selection": sel, "step": sm.get("step")}
        row.update({k: sm.get(k, math.nan) for k in (*METRICS, *VIDEO_METRICS)})
        row.update({f"class:{c}": v for c, v in (sm.get("per_class_auc") or {}).items()})
        out.append(row)
    return out


def collect_metrics(paths) -> pd.DataFrame:
    rows = []
    for p in paths:
        rows += _rows_of(json.loads(Path(p).read_text()))
    if not rows:
        raise ValueError("no metrics.json given: the dataset has no runs")
    return pd.DataFrame(rows)


def summarise(df: pd.DataFrame, benchmark: str | None = None) -> pd.DataFrame:
    """Mean and (population) std over seeds of every metric and per-class AUC; for a
    benchmark dataset the reported number (metric, value, source) of the method."""
    classes = [c for c in df.columns if c.startswith("class:")]
    df = df.copy()
    df["source"] = df["source"].fillna("")
    agg = df.groupby(KEYS, sort=True)
    out = agg.size().rename("seeds").to_frame()
    out["source"] = agg["source"].first()
    out["family"] = agg["family"].first()
    for k in (*METRICS, *VIDEO_METRICS, *classes):
        name = f"auc_class_{k[6:]}" if k.startswith("class:") else k
        out[f"{name}_mean"] = agg[k].mean()
        out[f"{name}_std"] = agg[k].std(ddof=0)
    out = out.reset_index()
    rep = [reported_for(benchmark, m, fam) if benchmark else None
           for m, fam in zip(out["method"], out["family"])]
    out["reported_metric"] = [r.metric if r else "" for r in rep]
    out["reported_value"] = [r.value if r else math.nan for r in rep]
    out["reported_features"] = [r.features if r else "" for r in rep]
    out["reported_source"] = [r.source if r else "" for r in rep]
    return out


def _pm(r: dict, k: str) -> str:
    mean, std = r[f"{k}_mean"], r[f"{k}_std"]
    return "n/a" if pd.isna(mean) else f"{100 * mean:.2f} ± {100 * std:.2f}"


def _reported_cell(r: dict, refs: dict) -> str:
    if pd.isna(r.get("reported_value", math.nan)):
        return "–"
    src = r["reported_source"]
    refs.setdefault(src, len(refs) + 1)
    other = "" if r["reported_features"] == r.get("family") else f", {r['reported_features']}"
    metric = METRICS.get(r["reported_metric"], r["reported_metric"])
    return f"{r['reported_value']:.2f} {metric}{other} [{refs[src]}]"


def _paper_only(m: str) -> bool:
    return method_card(m).paper_only


def _method_cell(m: str) -> str:
    return f"{m} †" if _paper_only(m) else m


def _weights_cell(w: str) -> str:
    return "**random-init**" if w == "random-init" else w


def to_markdown(summary: pd.DataFrame) -> str:
    header = ["method", "features", "weights", "selection", "seeds", *METRICS.values(),
              *VIDEO_METRICS.values(), "reported"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    refs: dict[str, int] = {}
    for r in summary.to_dict("records"):
        cells = [_method_cell(r["method"]), r["feature_set"], _weights_cell(r["weights"]),
                 r["selection"], str(r["seeds"])]
        cells += [_pm(r, k) for k in (*METRICS, *VIDEO_METRICS)]
        cells.append(_reported_cell(r, refs))
        lines.append("| " + " | ".join(cells) + " |")
    notes = ["", "Frame-level metrics in %, mean ± std over seeds. selection: `last` = the last "
             "training step; `best` = the step with the best test score, evaluated on the method's "
             "official test schedule (`eval_every`, `eval_schedule`), as the official "
             "repositories select (an optimistic protocol). "
             "Video F1 calls a video anomalous when its highest frame score ≥ the threshold of "
             "`evaluation.video_threshold`."]
    if (summary["weights"] == "random-init").any():
        notes.append("\n**random-init**: features from a randomly initialised backbone (no weights "
                     "file was configured); these numbers say nothing about the method's published "
                     "accuracy.")
    if any(_paper_only(m) for m in summary["method"]):
        notes.append("\n†: architecture and losses from the paper's description alone (no "
                     "official code to match).")
    provenance = summary[summary["source"] != ""].drop_duplicates("weights")
    for r in provenance.to_dict("records"):
        notes.append(f"\n`{r['weights']}`: {r['source']}.")
    classes = sorted({c[len("auc_class_"):-len("_mean")] for c in summary.columns
                      if c.startswith("auc_class_") and c.endswith("_mean")})
    if classes:
        notes += ["", "Per-class frame AUC (%; each class's abnormal test videos with all normal "
                  "test videos):", "",
                  "| method | features | selection | " + " | ".join(classes) + " |",
                  "|" + "---|" * (3 + len(classes))]
        for r in summary.to_dict("records"):
            notes.append(f"| {r['method']} | {r['feature_set']} | {r['selection']} | "
                         + " | ".join(_pm(r, f"auc_class_{c}") for c in classes) + " |")
    if refs:
        notes += ["", "Reported numbers:"] + [f"[{i}] {s}" for s, i in refs.items()]
    return "\n".join(lines) + "\n" + "\n".join(notes) + "\n"


def _tex_escape(s: str) -> str:
    for a, b in (("_", r"\_"), ("%", r"\%"), ("&", r"\&"), ("#", r"\#"), ("$", r"\$")):
        s = s.replace(a, b)
    return s.replace("±", r"$\pm$").replace("–", "--")


def to_latex(summary: pd.DataFrame) -> str:
    cols = ["method", "features", "weights", "selection", "seeds", "AUC", "AP (trapz)", "reported"]
    lines = [r"\begin{tabular}{llllrrrl}", r"\toprule", " & ".join(cols) + r" \\", r"\midrule"]
    refs: dict[str, int] = {}
    for r in summary.to_dict("records"):
        cells = [r["method"], r["feature_set"], r["weights"],
                 SELECTION_LABELS.get(r["selection"], r["selection"]), str(r["seeds"]),
                 _pm(r, "auc"), _pm(r, "ap_trapz"), _reported_cell(r, refs)]
        lines.append(" & ".join(_tex_escape(str(c)) for c in cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    lines += [f"% [{i}] {s}" for s, i in refs.items()]
    return "\n".join(lines) + "\n"


def write_tables(metric_paths, csv_out, md_out, tex_out=None, benchmark: str | None = None) -> pd.DataFrame:
    """``benchmark``: the dataset layout (ucf_crime, shanghaitech, xd_violence) whose reported
    numbers go beside ours; None for the demo and user datasets."""
    summary = summarise(collect_metrics(metric_paths), benchmark)
    with atomic_path(csv_out) as tmp:
        summary.to_csv(tmp, index=False, float_format="%.6f")
    with atomic_path(md_out) as tmp:
        tmp.write_text(to_markdown(summary))
    if tex_out is not None:
        with atomic_path(tex_out) as tmp:
            tmp.write_text(to_latex(summary))
    return summary
