"""wsvad's extraction from a raw video equals the field's official extractors (issue 11).

Each fixture under tests/fixtures/extractors/<name>/ was made outside this repository by running
the official extractor code (its README says how) on tests/fixtures/videos/bbb_320x240_40f.mp4,
with seeded random weights in the official weights-file layout. Here the same weights are rebuilt
from ``layout.json`` (tests/helpers/seeded_weights.py), saved in that layout, read by wsvad's
backbone as a user's file would be, and the shipped recipe (config/feature_sets.yaml) extracts
the video: every crop must equal the official output within 1e-4 (fp32).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from seeded_weights import load_layout, seeded_state_dict
from wsvad_core.errors import WeightsMismatchError
from wsvad_core.features.backbones import create_backbone
from wsvad_core.features.decode import SnippetReader
from wsvad_core.features.extract import extract_videos
from wsvad_core.features.store import finalize_store, open_store
from wsvad_core.features.transforms import host_transform, preprocess
from wsvad_core.recipes import normalize_recipe

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures" / "extractors"
VIDEO = REPO / "tests" / "fixtures" / "videos" / "bbb_320x240_40f.mp4"
PRESETS = yaml.safe_load((REPO / "config" / "feature_sets.yaml").read_text())["feature_sets"]
TOL = 1e-4

# fixture -> (shipped preset, official array layout -> ours (crops, T, D))
CASES = {
    "gowtham_i3res50": ("gowtham_i3d_r50", lambda a: a.transpose(1, 0, 2)),  # official (T, crops, D)
    "urdmu_i3dpt": ("urdmu_i3d", lambda a: a),                              # official (crops, T, D)
    "xd_piergiaj": ("xd_i3d", lambda a: a),                                 # official (crops __k, T, D)
    "vadclip_vitb16": ("vadclip_vitb16_frames", lambda a: a),               # official (views __k, frames, D)
}
# xd_i3d is a reconstruction (the XD-Violence script is unreleased) and stores float16 as wsvad's
# other extracted sets do; the 1e-4 comparison is of the computation, so it is stored as float32
# here. The presets that claim an extractor exactly store float32 themselves (asserted below).
STORE_AS_FLOAT32 = {"xd_piergiaj"}


def weights_file(fixture: str, folder: Path) -> Path:
    """The fixture's seeded weights, saved as the official file is (a plain torch.save dict)."""
    layout = load_layout(FIXTURES / fixture / "layout.json")
    path = folder / layout["weights_file"]
    torch.save(seeded_state_dict(layout, layout["seed"]), path)
    return path


def recipe(preset: str, weights: Path, **changes) -> dict:
    return normalize_recipe({**PRESETS[preset], "name": preset, "weights": str(weights), **changes})


@pytest.mark.parametrize("fixture", ["gowtham_i3res50", "urdmu_i3dpt", "xd_piergiaj"])
def test_extraction_equals_the_official_extractor(fixture, tmp_path):
    preset, to_ours = CASES[fixture]
    official = np.load(FIXTURES / fixture / "official.npz")
    changes = {"store_dtype": "float32"} if fixture in STORE_AS_FLOAT32 else {}
    r = recipe(preset, weights_file(fixture, tmp_path), **changes)
    row = {"video_id": "v", "path": str(VIDEO), "n_frames": None, "fps": None, "label": 0, "split": "test"}
    extract_videos([row], r, tmp_path / "store", "cpu", progress=False)
    finalize_store(tmp_path / "store", {"recipe": r, "views": r["views"]})
    ours = open_store(tmp_path / "store")["v"]
    want = to_ours(official["features"])
    assert ours.dtype == np.float32 and ours.shape == want.shape  # the T rule gives the official T
    per_crop = np.abs(ours - want).reshape(len(want), -1).max(1)
    assert per_crop.max() <= TOL, per_crop


def test_vadclip_views_equal_the_official_crop_code(tmp_path):
    """VadCLIP's crop.py writes one feature per frame and view; the fixture holds the first 8
    frames (80 CLIP forwards: the whole clip would take minutes)."""
    official = np.load(FIXTURES / "vadclip_vitb16" / "official.npz")["features"]   # (10, 8, 512)
    r = recipe("vadclip_vitb16_frames", weights_file("vadclip_vitb16", tmp_path))
    model = create_backbone(r["backbone"], r)
    reader = SnippetReader(VIDEO, r["clip_len"], r["stride"], r["frames_per_snippet"], r["t_rule"],
                           host_transform(r))
    reader.indices = reader.indices[: official.shape[1]]
    with torch.inference_mode():
        x = preprocess(torch.cat(list(reader.batches(8))), r)          # (8, 10, 3, 1, 224, 224)
        b, v = x.shape[:2]
        ours = model.embed(x.reshape(b * v, *x.shape[2:])).reshape(b, v, -1).transpose(0, 1).numpy()
    assert r["views"][5] == "flip_center"                                # VadCLIP's UCF test crop __5
    per_view = np.abs(ours - official).reshape(len(official), -1).max(1)
    assert per_view.max() <= TOL, per_view


@pytest.mark.parametrize("fixture, backbone", [("gowtham_i3res50", "i3res50"),
                                               ("urdmu_i3dpt", "i3d_inception_i3dpt"),
                                               ("xd_piergiaj", "i3d_inception_piergiaj"),
                                               ("vadclip_vitb16", "openai_clip_vitb16")])
def test_public_weights_layouts_load_strictly_and_wrong_files_are_named(fixture, backbone, tmp_path):
    path = weights_file(fixture, tmp_path)
    create_backbone(backbone, normalize_recipe({"backbone": backbone, "weights": str(path)}))
    # another network's file: the error names the file and the key differences
    other = {"i3res50": "i3d_inception_i3dpt", "i3d_inception_i3dpt": "i3d_inception_piergiaj",
             "i3d_inception_piergiaj": "i3res50", "openai_clip_vitb16": "i3res50"}[backbone]
    with pytest.raises(WeightsMismatchError) as err:
        create_backbone(other, normalize_recipe({"backbone": other, "weights": str(path)}))
    assert str(path) in str(err.value) and ("missing keys" in str(err.value) or "not an OpenAI" in str(err.value))
