"""Per-class and video-level metrics, and the benchmark tables (selection rows, reported numbers)."""
import json
import math

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from wsvad_core.evaluation.metrics import class_tokens, per_class_auc, video_metrics
from wsvad_core.reference_numbers import reported_for
from wsvad_core.reporting.tables import write_tables


def test_per_class_auc_pools_each_class_with_all_normals():
    labels = {"a1": np.array([0, 1, 1, 0]), "b1": np.array([1, 1, 0, 0]), "n1": np.zeros(4, int),
              "n2": np.zeros(3, int)}
    scores = {"a1": np.array([.1, .9, .8, .2]), "b1": np.array([.3, .2, .6, .7]),
              "n1": np.array([.1, .2, .3, .4]), "n2": np.array([.5, .1, .1])}
    classes = {"a1": "Abuse", "b1": "B1-G", "n1": "Normal", "n2": "Normal"}
    got = per_class_auc(scores, labels, classes)
    assert set(got) == {"Abuse", "B1", "G"}  # an XD video of two classes counts for both
    for c, vids in (("Abuse", ["a1"]), ("G", ["b1"])):
        sel = vids + ["n1", "n2"]
        want = roc_auc_score(np.concatenate([labels[v] for v in sel]), np.concatenate([scores[v] for v in sel]))
        assert got[c] == pytest.approx(want)
    assert class_tokens("B4-0-0") == ["B4"] and class_tokens("Normal") == []


def test_video_metrics_at_threshold():
    scores = {"a": np.array([.2, .9]), "b": np.array([.1, .4]), "n": np.array([.6, .1]), "m": np.array([.2])}
    m = video_metrics(scores, {"a": 1, "b": 1, "n": 0, "m": 0}, threshold=0.5)
    # predicted anomalous: a (tp), n (fp); missed: b (fn); m correct negative
    assert (m["video_precision"], m["video_recall"], m["video_f1"], m["video_accuracy"]) == (0.5, 0.5, 0.5, 0.5)
    assert m["video_auc"] == pytest.approx(0.75) and m["video_threshold"] == 0.5
    assert video_metrics(scores, {"a": 1, "b": 1, "n": 0, "m": 0}, threshold=0.95)["video_f1"] == 0.0


def test_benchmark_table_rows_per_selection_with_reported_number(tmp_path):
    paths = []
    for seed, (last, best) in enumerate([(0.80, 0.84), (0.82, 0.86)]):
        sel = {s: {"auc": v, "ap_step": .3, "ap_trapz": .3, "auc_abnormal": .6, "far_normal": .1,
                   "video_auc": .9, "video_f1": .8, "step": st, "per_class_auc": {"Abuse": v - .1}}
               for s, v, st in (("last", last, 100), ("best", best, 40))}
        m = {"method": "rtfm", "feature_set": "rtfm_i3d_r50", "family": "rtfm_i3d_r50", "seed": seed,
             "selection": "last",
             "weights": "published:rtfm", "provenance": {"source": "RTFM features"}, "selections": sel,
             **sel["last"]}
        paths.append(tmp_path / f"{seed}.json")
        paths[-1].write_text(json.dumps(m))
    s = write_tables(paths, tmp_path / "t.csv", tmp_path / "t.md", tmp_path / "t.tex", benchmark="ucf_crime")
    rows = s.set_index("selection")
    assert rows.loc["last", "auc_mean"] == pytest.approx(.81) and rows.loc["best", "auc_mean"] == pytest.approx(.85)
    assert rows.loc["best", "auc_class_Abuse_mean"] == pytest.approx(.75)
    assert (s["reported_value"] == 84.30).all() and reported_for("ucf_crime", "rtfm", "rtfm_i3d_r50").metric == "auc"
    md = (tmp_path / "t.md").read_text()
    assert "| rtfm | rtfm_i3d_r50 | published:rtfm | best | 2 | 85.00 ± 1.00 |" in md
    # same family as the paper's number: no features note in the cell
    assert "84.30 AUC [1]" in md and "[1] Tian et al., RTFM, ICCV 2021" in md and "RTFM features" in md
    tex = (tmp_path / "t.tex").read_text()
    assert r"best on test & 2 & 85.00 $\pm$ 1.00" in tex and r"rtfm\_i3d\_r50" in tex
    assert math.isnan(pd.read_csv(tmp_path / "t.csv")["reported_value"].iloc[0]) is False


def test_reported_numbers_are_matched_by_family(tmp_path):
    """The reported column looks the paper's number up by the run's feature family (metrics.json
    "family"), not by the feature-set name: a renamed or re-extracted set of the same family gets
    the paper's number; another family gets it with the paper's features named."""
    assert reported_for("ucf_crime", "rtfm", "rtfm_i3d_r50").value == 84.30
    assert reported_for("ucf_crime", "urdmu", "kinetics_i3d").value == 86.97
    # RTFM on Kinetics-I3D features: the RTFM-features number, flagged as such
    assert reported_for("ucf_crime", "rtfm", "kinetics_i3d").features == "rtfm_i3d_r50"
    paths = []
    for i, (fs, family) in enumerate([("my_extraction", "rtfm_i3d_r50"), ("deepmil_i3d", "kinetics_i3d")]):
        m = {"method": "rtfm", "feature_set": fs, "family": family, "seed": 0, "selection": "last",
             "weights": "/w.pth", "auc": 0.8, "ap_trapz": .3, "ap_step": .3}
        paths.append(tmp_path / f"{i}.json")
        paths[-1].write_text(json.dumps(m))
    s = write_tables(paths, tmp_path / "t.csv", tmp_path / "t.md", tmp_path / "t.tex", benchmark="ucf_crime")
    assert (s["reported_value"] == 84.30).all()
    md = (tmp_path / "t.md").read_text().splitlines()
    row = {line.split(" | ")[1]: line for line in md if line.startswith("| rtfm |")}
    assert row["my_extraction"].endswith("| 84.30 AUC [1] |")
    assert row["deepmil_i3d"].endswith("| 84.30 AUC, rtfm_i3d_r50 [1] |")
