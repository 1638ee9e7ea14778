"""`wsvad score` on a run trained on imported (published) features (issue 11, item 5): without
the family's extractor weights it refuses, naming the missing ``weights`` key; with them (the
config's, or ``--weights``) it extracts the video with the run's recipe and that file.

The run: RTFM-layout features fabricated for the tiny demo videos (RTFM's file names, ten crops
in TenCrop order), imported as the ``import_shard`` rule does, MIL trained on them. The recipe
is the shipped ``rtfm_i3d_r50`` preset at 32 px so that scoring stays quick; the weights file is
a seeded I3Res50 state dict in the layout of Tushar-N's ``i3d_r50_kinetics.pth``."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from published_features import fabricate_published_features
from seeded_weights import load_layout, seeded_state_dict
from tiny_dag import tiny_dataset
from wsvad_core.cli import main, score_video
from wsvad_core.data.ground_truth import build_store_ground_truth
from wsvad_core.data.manifest import read_manifest
from wsvad_core.features.importers import import_shard, normalize_import_spec
from wsvad_core.features.store import finalize_from_shards
from wsvad_core.recipes import normalize_recipe
from wsvad_core.runs import RunError
from wsvad_core.training.run import run_training

REPO = Path(__file__).resolve().parents[2]
PRESET = yaml.safe_load((REPO / "config" / "feature_sets.yaml").read_text())["feature_sets"]["rtfm_i3d_r50"]
I3RES50_LAYOUT = REPO / "tests" / "fixtures" / "extractors" / "gowtham_i3res50" / "layout.json"


def imported_recipe(weights=None) -> dict:
    return normalize_recipe({**PRESET, "name": "rtfm_i3d_r50", "resize": [40, 36], "crop_size": 32,
                             "weights": weights})


@pytest.fixture(scope="module")
def imported_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("imported")
    ds = tiny_dataset(root)
    rows = read_manifest(ds["manifest"]).to_dict("records")
    spec = normalize_import_spec({"file_layout": "rtfm", "root": str(root / "published"),
                                  "train": "train/{video}_i3d.npy", "test": "test/{video}_i3d.npy"})
    # 32-frame videos: two 16-frame snippets each
    fabricate_published_features(rows, spec, {r["video_id"]: 2 for r in rows}, seed=0, abnormal_shift=1.0)
    store = root / "rtfm_i3d_r50.zarr"
    marker = root / "rtfm_i3d_r50.import" / "0.json"
    import_shard(rows, spec, imported_recipe(), store, marker, progress=False)
    finalize_from_shards([marker], store / "zarr.json")
    run_dir = root / "runs" / "mil" / "rtfm_i3d_r50" / "seed0"
    run_dir.mkdir(parents=True)
    build_store_ground_truth(ds["manifest"], store, ds["annotation"], 16, run_dir / "gt.npz")
    run_training(method="mil", manifest=ds["manifest"], store=store, run_dir=run_dir, seed=0,
                 overrides={"max_steps": 5, "batch_size": 2}, progress=False)
    layout = load_layout(I3RES50_LAYOUT)
    weights = root / "i3d_r50_kinetics.pth"
    torch.save(seeded_state_dict(layout, 0), weights)
    video = Path(next(r["path"] for r in rows if r["split"] == "test"))
    return {"run": run_dir, "video": video, "weights": weights}


def test_without_weights_it_refuses_naming_the_key(imported_run, tmp_path, capsys):
    with pytest.raises(RunError, match=r"feature_sets\.rtfm_i3d_r50\.weights.*--weights FILE") as err:
        score_video(imported_run["video"], imported_run["run"], tmp_path / "s.json", device="cpu", progress=False)
    assert "published rtfm_i3d_r50 features" in str(err.value)
    assert not (tmp_path / "s.json").exists()
    # the command line gives the same reason in one line, exit status 1
    assert main(["score", str(imported_run["video"]), "--run", str(imported_run["run"]),
                 "--out", str(tmp_path / "c.json"), "--quiet"]) == 1
    assert "feature_sets.rtfm_i3d_r50.weights" in capsys.readouterr().err


def test_with_the_families_weights_it_extracts_with_them(imported_run, tmp_path, capsys):
    out = tmp_path / "s.json"
    assert main(["score", str(imported_run["video"]), "--run", str(imported_run["run"]), "--out", str(out),
                 "--weights", str(imported_run["weights"]), "--device", "cpu"]) == 0
    assert "random-init" not in capsys.readouterr().err  # a real (here: seeded) weights file, no warning
    saved = json.loads(out.read_text())
    assert saved["weights"] == str(imported_run["weights"]) and saved["feature_set"] == "rtfm_i3d_r50"
    assert saved["n_snippets"] == 2 and len(saved["frame_scores"]) == 32
    assert np.isfinite(saved["snippet_scores"]).all()


def test_a_file_of_another_network_is_refused(imported_run, tmp_path):
    bad = tmp_path / "not_i3res50.pth"
    torch.save({"conv.weight": torch.zeros(1)}, bad)
    with pytest.raises(Exception, match=str(bad)):
        score_video(imported_run["video"], imported_run["run"], tmp_path / "s.json", device="cpu",
                    progress=False, weights=bad)
