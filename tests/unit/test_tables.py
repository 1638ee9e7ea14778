import json

import pandas as pd

from wsvad_core.reporting.tables import write_tables


def _metrics(tmp_path, method, fs, seed, auc, weights="random-init"):
    p = tmp_path / f"{method}_{fs}_{seed}.json"
    p.write_text(json.dumps({"method": method, "feature_set": fs, "seed": seed, "selection": "last",
                             "weights": weights, "auc": auc, "ap_step": auc - 0.1, "ap_trapz": auc - 0.11,
                             "auc_abnormal": 0.6, "far_normal": 0.05}))
    return p


def test_mean_std_over_seeds_and_provenance(tmp_path):
    paths = [_metrics(tmp_path, "rtfm", "rtfm_i3d_r50", 0, 0.80), _metrics(tmp_path, "rtfm", "rtfm_i3d_r50", 1, 0.90),
             _metrics(tmp_path, "mil", "vadclip_vitb16", 0, 0.70, weights="/w/clip.pt")]
    summary = write_tables(paths, tmp_path / "t.csv", tmp_path / "t.md")
    row = summary.set_index("method").loc["rtfm"]
    assert row["seeds"] == 2 and abs(row["auc_mean"] - 0.85) < 1e-12 and abs(row["auc_std"] - 0.05) < 1e-12
    csv = pd.read_csv(tmp_path / "t.csv")
    assert set(csv["method"]) == {"rtfm", "mil"}
    md = (tmp_path / "t.md").read_text()
    assert "| rtfm | rtfm_i3d_r50 | **random-init** | last | 2 | 85.00 ± 5.00 |" in md
    assert "/w/clip.pt" in md and "randomly initialised backbone" in md


def test_paper_only_methods_are_marked(tmp_path):
    paths = [_metrics(tmp_path, "tpwng", "vadclip_vitb16", 0, 0.9), _metrics(tmp_path, "rtfm", "rtfm_i3d_r50", 0, 0.8)]
    write_tables(paths, tmp_path / "t.csv", tmp_path / "t.md")
    md = (tmp_path / "t.md").read_text()
    assert "| tpwng † | vadclip_vitb16 |" in md and "| rtfm | rtfm_i3d_r50 |" in md
    assert "†: architecture and losses from the paper's description alone" in md
    only_official = write_tables(paths[1:], tmp_path / "u.csv", tmp_path / "u.md")
    assert len(only_official) == 1 and "†" not in (tmp_path / "u.md").read_text()
