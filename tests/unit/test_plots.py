"""Plots on hand-made scores: timeline (ground truth shaded), ROC/PR curves, table bars. The
plots and the report of a real run: integration/test_pipeline.py."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pngs import png, shaded_columns
from wsvad_core.reporting.plots import label_intervals, plot_curves, plot_table, plot_timeline, table_bars, table_html


def test_label_intervals():
    assert label_intervals([0, 1, 1, 0, 0, 1]) == [(1, 2), (5, 5)]
    assert label_intervals(np.zeros(4)) == []
    assert label_intervals([1, 1]) == [(0, 1)]


def test_timeline_shades_exactly_the_ground_truth(tmp_path):
    scores = np.linspace(0, 1, 200)
    everything = shaded_columns(png(plot_timeline(scores, tmp_path / "all.png", gt=np.ones(200), fps=25)))
    gt = np.zeros(200, np.uint8)
    gt[50:100] = 1
    band = shaded_columns(png(plot_timeline(scores, tmp_path / "t.png", gt=gt, fps=25, title="v", threshold=0.5)))
    # the plot area is what a full shade covers (vertical grid lines cut a few columns out)
    left, width = everything[0], everything[-1] - everything[0] + 1
    span = band[-1] - band[0] + 1
    assert len(band) > 0.9 * span  # one band
    assert abs(span / width - 0.25) < 0.02  # frames 50..99 of 200
    assert abs((band[0] - left) / width - 0.25) < 0.02
    assert len(shaded_columns(png(plot_timeline(scores, tmp_path / "n.png", fps=25)))) == 0
    with pytest.raises(ValueError, match="200 frame scores but 10 ground-truth frames"):
        plot_timeline(scores, tmp_path / "x.png", gt=gt[:10])
    assert not (tmp_path / "x.png").exists()


def test_curves_and_table_plots(tmp_path):
    rng = np.random.default_rng(0)
    gt = {"a": np.r_[np.zeros(30), np.ones(20)].astype(np.uint8), "b": np.zeros(40, np.uint8)}
    scores = {"a": np.r_[rng.uniform(0, .6, 30), rng.uniform(.4, 1, 20)], "b": rng.uniform(0, .6, 40)}
    img = png(plot_curves(scores, gt, tmp_path / "c.png", title="run"))
    assert img.shape[1] > img.shape[0]  # two panels side by side
    with pytest.raises(KeyError, match="no frame scores for 1 test videos"):
        plot_curves({"a": scores["a"]}, gt, tmp_path / "bad.png")
    table = pd.DataFrame({"method": ["mil", "mil", "rtfm"],
                          "feature_set": ["rtfm_i3d_r50", "vadclip_vitb16", "rtfm_i3d_r50"],
                          "selection": "last", "weights": "random-init", "seeds": [3, 3, 1],
                          **{f"{k}_{s}": [0.9, 0.8, 0.7] if s == "mean" else [0.01, 0.02, 0.0]
                             for k in ("auc", "ap_step", "ap_trapz", "auc_abnormal", "far_normal")
                             for s in ("mean", "std")}})
    png(plot_table(table, tmp_path / "t.png", title="demo"))
    html = table_html(table, tmp_path / "t.html", title="demo").read_text()
    assert html.count("<tr>") == 4 and "90.00 ± 1.00" in html and "random-init" in html



def test_table_bars_split_by_checkpoint_selection(tmp_path):
    """A benchmark table has a `last` and a `best` row per method × feature set: each gets its
    own, labelled bar; a table with one selection keeps one bar per feature set."""
    metrics = ("auc", "ap_step", "ap_trapz", "auc_abnormal", "far_normal")
    table = pd.DataFrame({"method": ["rtfm", "rtfm", "mil", "mil", "rtfm", "rtfm"],
                          "feature_set": ["rtfm_i3d_r50"] * 4 + ["vadclip_vitb16"] * 2,
                          "selection": ["last", "best", "best", "last", "last", "best"],
                          "weights": "published", "seeds": 3,
                          **{f"{k}_mean": [0.80, 0.85, 0.70, 0.60, 0.75, 0.78] for k in metrics},
                          **{f"{k}_std": [0.01, 0.02, 0.03, 0.04, 0.05, 0.06] for k in metrics}})
    methods, series = table_bars(table, "auc")
    assert methods == ["mil", "rtfm"]
    got = {s["label"]: (s["mean"], s["std"]) for s in series}
    assert set(got) == {"rtfm_i3d_r50 · last step", "rtfm_i3d_r50 · best on test", "vadclip_vitb16 · last step",
                        "vadclip_vitb16 · best on test"}
    assert np.allclose(got["rtfm_i3d_r50 · last step"], ([60, 80], [4, 1]))
    assert np.allclose(got["rtfm_i3d_r50 · best on test"], ([70, 85], [3, 2]))
    assert np.isnan(got["vadclip_vitb16 · best on test"][0][0]) and got["vadclip_vitb16 · best on test"][0][1] == 78
    png(plot_table(table, tmp_path / "t.png", title="ucf"))
    _, last_only = table_bars(table[table["selection"] == "last"], "auc")
    assert [s["label"] for s in last_only] == ["rtfm_i3d_r50", "vadclip_vitb16"]  # sorted by name
    with pytest.raises(ValueError, match="not unique per method × feature_set × selection"):
        table_bars(pd.concat([table, table.iloc[:1]]), "auc")
