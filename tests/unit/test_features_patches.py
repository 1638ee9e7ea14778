"""Patch-level features (features/patches.py): grid geometry on hand-made images, the recipe
rules (a ``patch_grid`` makes a recipe's kind ``<kind>_patch``), extraction into the (patches, T, D)
layout, the stacked store, and the TimeSformer backbone."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from synthetic import write_video
from wsvad_core.errors import FeatureError, WeightsMismatchError
from wsvad_core.features.backbones import create_backbone
from wsvad_core.features.extract import extract_videos
from wsvad_core.features.patches import StackedStore, cell_bounds, grid_patches, select_patch_stores, store_grid
from wsvad_core.features.store import finalize_store, open_store, write_video_array
from wsvad_core.features.transforms import preprocess
from wsvad_core.grids import grid_code, parse_grid
from wsvad_core.recipes import normalize_recipe, recipe_fingerprint

PATCH = {"backbone": "i3res50", "patch_grid": [1, 2], "clip_len": 8, "stride": 8,
         "frames_per_snippet": 8, "crops": "center", "resize": 32, "crop_size": 32,
         "batch_size": 2, "weights": None, "init_seed": 0}


def ramp(h: int, w: int) -> torch.Tensor:
    return (torch.arange(h)[:, None] * 100 + torch.arange(w)[None, :]).float()[None]


@pytest.mark.parametrize("value", [[2, 3], (2, 3), "2x3", 23])
def test_parse_grid_forms(value):
    assert parse_grid(value) == (2, 3)


@pytest.mark.parametrize("value", [[0, 3], 20, 7, "2-3", [2], True])
def test_parse_grid_rejects(value):
    with pytest.raises(ValueError, match="patch grid"):
        parse_grid(value)


def test_grid_code_is_rows_x_cols():
    # one spelling for stores and methods (SSRL's two-digit 23 is read, never written)
    assert grid_code(23) == grid_code([2, 3]) == grid_code("2x3") == "2x3"


def test_cell_bounds_tile_without_overlap():
    assert cell_bounds(7, 3) == [(0, 2), (2, 4), (4, 7)]
    assert cell_bounds(6, 2) == [(0, 3), (3, 6)]
    with pytest.raises(ValueError, match="cannot cut"):
        cell_bounds(2, 3)


def test_grid_patches_raster_order_exact_cells():
    img = ramp(6, 9)  # 2 x 3 grid of 3x3 cells, no resampling at size 3
    p = grid_patches(img, (2, 3), 3)
    assert p.shape == (6, 1, 3, 3)
    for r in range(2):
        for c in range(3):
            assert torch.equal(p[r * 3 + c], img[:, 3 * r:3 * r + 3, 3 * c:3 * c + 3]), (r, c)


def test_grid_patches_resizes_each_cell_alone():
    # a cell of constant value stays that constant after resizing: no bleeding from neighbours
    img = torch.zeros(1, 4, 6)
    for c in range(3):
        img[:, :, 2 * c:2 * c + 2] = c + 1
    p = grid_patches(img, (1, 3), 5)
    assert p.shape == (3, 1, 5, 5)
    for c in range(3):
        assert torch.allclose(p[c], torch.full((1, 5, 5), float(c + 1)))


def test_preprocess_patch_layout():
    frames = torch.randint(0, 255, (2, 4, 30, 40, 3), dtype=torch.uint8)
    r = {"resize": 30, "crop_size": 8, "crops": "center", "mean": [0.5] * 3, "std": [0.25] * 3,
         "patch_grid": (3, 4)}
    x = preprocess(frames, r)
    assert x.shape == (2, 12, 3, 4, 8, 8)  # (N, patches, C, T, S, S)
    # patch 5 = row 1, col 1: the cell (10:20, 10:20) of the normalised frame, exact at size 10
    y = preprocess(frames, {**r, "crop_size": 10})
    ref = (frames[0, 0, 10:20, 10:20].permute(2, 0, 1).float() / 255 - 0.5) / 0.25
    assert torch.allclose(y[0, 5, :, 0], ref, atol=1e-5)
    # one view per patch: a patch recipe with crop views is refused before any extraction
    with pytest.raises(ValueError, match="one view per patch"):
        normalize_recipe({**PATCH, "crops": "ten"})


def test_recipe_rules():
    # a patch grid on a snippet backbone: kind <kind>_patch, the backbone's family, one view per cell
    r = normalize_recipe(PATCH)
    assert r["kind"] == "i3d_patch" and r["family"] == "rtfm_i3d_r50" and r["patch_grid"] == [1, 2]
    assert r["views"] == ["cell_0_0", "cell_0_1"]
    assert normalize_recipe({**PATCH, "patch_grid": "3x5"})["patch_grid"] == [3, 5]
    assert recipe_fingerprint(PATCH) != recipe_fingerprint({**PATCH, "patch_grid": [2, 1]})
    with pytest.raises(ValueError, match="patch grid"):
        normalize_recipe({**PATCH, "patch_grid": [0, 2]})
    with pytest.raises(ValueError, match="crops must be 'center'"):
        normalize_recipe({**PATCH, "crops": "ten"})
    # the same backbone without a grid is a snippet recipe of the backbone's kind
    snippet = {k: v for k, v in PATCH.items() if k != "patch_grid"}
    assert normalize_recipe(snippet)["kind"] == "i3d" and normalize_recipe(snippet)["views"] == ["center"]
    # snippet recipes get no patch key (patch_grid: null is dropped), so their fingerprints (and
    # stores) are unchanged
    assert "patch_grid" not in normalize_recipe({**snippet, "patch_grid": None})
    assert recipe_fingerprint({**snippet, "patch_grid": None}) == recipe_fingerprint(snippet)
    assert recipe_fingerprint(snippet) != recipe_fingerprint(PATCH)


def test_shipped_patch_presets_are_rtfm_i3d_r50_grids():
    """config/feature_sets.yaml: SSRL's 2x3 / 3x5 / 4x7 grids of the RTFM I3D (I3Res50): patch
    stores of kind i3d_patch in the snippet features' family, so that select_patch_stores pairs them."""
    import yaml

    from configs import REPO

    presets = yaml.safe_load((REPO / "config" / "feature_sets.yaml").read_text())["feature_sets"]
    snippet = normalize_recipe({**presets["rtfm_i3d_r50"], "name": "rtfm_i3d_r50"})
    for name, grid in (("rtfm_i3d_r50_p2x3", [2, 3]), ("rtfm_i3d_r50_p3x5", [3, 5]), ("rtfm_i3d_r50_p4x7", [4, 7])):
        r = normalize_recipe({**presets[name], "name": name})
        assert (r["backbone"], r["kind"], r["patch_grid"]) == ("i3res50", "i3d_patch", grid), name
        assert r["family"] == snippet["family"] == "rtfm_i3d_r50" and len(r["views"]) == grid[0] * grid[1]


def test_extract_patch_store_layout(tmp_path):
    path = write_video(tmp_path / "v.mp4", 16, seed=3)
    rows = [{"video_id": "v", "path": path, "n_frames": 16, "fps": 25.0, "label": 1,
             "split": "test"}]
    recipe = normalize_recipe(PATCH)
    backbone = create_backbone("i3res50", recipe)
    extract_videos(rows, recipe, tmp_path / "s.zarr", progress=False, backbone=backbone)
    finalize_store(tmp_path / "s.zarr", {"recipe": recipe, "kind": recipe["kind"], "family": recipe["family"],
                                         "views": recipe["views"]})
    store = open_store(tmp_path / "s.zarr")
    feats = store["v"]
    assert feats.shape == (2, 2, 2048)  # (rows*cols patches, T, D)
    assert store.video_attrs("v")["patch_grid"] == [1, 2] and store_grid(store) == (1, 2)
    # patch 1 is the right half of each frame, resized to the crop, through the backbone
    from wsvad_core.features.decode import SnippetReader

    reader = SnippetReader(path, 8, 8, 8)
    clips = next(iter(reader.batches(2)))
    x = preprocess(clips, recipe)
    with torch.inference_mode():
        ref = backbone.embed(x[:, 1])
    np.testing.assert_allclose(feats[1], ref.numpy().astype(np.float16), rtol=2e-3, atol=2e-3)
    assert not np.allclose(feats[0], feats[1])


def _store(path, arrays, recipe):
    for vid, a in arrays.items():
        write_video_array(path, vid, a, {"n_frames": a.shape[1] * 16})
    finalize_store(path, {"recipe": recipe, "kind": recipe.get("kind"), "family": recipe.get("family")})
    return open_store(path)


FAMILY = "rtfm_i3d_r50"


def test_stacked_store_and_selection(tmp_path):
    rng = np.random.default_rng(0)
    snip = _store(tmp_path / "a.zarr", {"x": rng.random((3, 5, 8)), "y": rng.random((3, 2, 8))},
                  {"kind": "i3d", "family": FAMILY})
    g23 = _store(tmp_path / "b.zarr", {"x": rng.random((6, 5, 8)), "y": rng.random((6, 2, 8))},
                 {"kind": "i3d_patch", "family": FAMILY, "patch_grid": [2, 3]})
    g12 = _store(tmp_path / "c.zarr", {"x": rng.random((2, 5, 8)), "y": rng.random((2, 2, 8))},
                 {"kind": "i3d_patch", "family": FAMILY, "patch_grid": [1, 2]})
    picked = select_patch_stores([g12, g23], [23, (1, 2)], "i3d", FAMILY)
    assert [s.path for s in picked] == [g23.path, g12.path]
    st = StackedStore([snip, *picked])
    assert st.parts == [3, 6, 2] and st.crops == 11 and st.dim == 8 and st.shape("x") == (11, 5, 8)
    np.testing.assert_array_equal(st["y"], np.concatenate([snip["y"], g23["y"], g12["y"]]))
    assert "y" in st and list(st) == ["x", "y"]
    with pytest.raises(FeatureError, match=r"patch_grid \[3, 5\]"):
        select_patch_stores([g23], [35], "i3d", FAMILY)
    with pytest.raises(FeatureError, match="holds 'i3d_patch' features"):
        select_patch_stores([g23], [23], "clip", FAMILY)
    # patches of another network than the snippet features (same kind, other family)
    with pytest.raises(FeatureError, match="of family 'rtfm_i3d_r50', the snippet store of family 'kinetics_i3d'"):
        select_patch_stores([g23], [23], "i3d", "kinetics_i3d")
    with pytest.raises(FeatureError, match="not a patch store"):
        select_patch_stores([snip], [23], "i3d", FAMILY)
    short = _store(tmp_path / "d.zarr", {"x": rng.random((2, 4, 8)), "y": rng.random((2, 2, 8))},
                   {"kind": "i3d_patch", "family": FAMILY, "patch_grid": [1, 2]})
    with pytest.raises(FeatureError, match="different snippet counts"):
        StackedStore([snip, short])["x"]
    lacking = _store(tmp_path / "e.zarr", {"x": rng.random((2, 5, 8))},
                     {"kind": "i3d_patch", "family": FAMILY, "patch_grid": [1, 2]})
    with pytest.raises(FeatureError, match="lacks 1 videos"):
        StackedStore([snip, lacking])


TSF = {"backbone": "timesformer", "crop_size": 32, "resize": 32, "frames_per_snippet": 2,
       "init_seed": 0}


def test_timesformer_backbone_shapes_seed_and_weights(tmp_path, monkeypatch):
    from wsvad_core.features.backbones.timesformer import TimeSformer

    # the real module at depth 1 (TimeSformer-Base has 12): same code path, a fraction of the time
    monkeypatch.setattr(TimeSformer, "ARCH", {**TimeSformer.ARCH, "num_hidden_layers": 1})
    net = create_backbone("timesformer", TSF)
    assert net.kind == "timesformer" and net.dim == 768
    assert net.provenance["weights"] == "random-init"
    clips = torch.randn(3, 3, 2, 32, 32)
    with torch.inference_mode():
        y = net.embed(clips)
        y_again = create_backbone("timesformer", TSF).embed(clips)
    assert y.shape == (3, 768) and torch.equal(y, y_again)
    # a classification checkpoint (prefix, head) in safetensors reloads to the same features
    from safetensors.torch import save_file

    sd = {"timesformer." + k: v.contiguous() for k, v in net.model.state_dict().items()}
    sd["classifier.weight"] = torch.zeros(400, 768)
    save_file(sd, str(tmp_path / "tsf.safetensors"))
    loaded = create_backbone("timesformer", {**TSF, "weights": str(tmp_path / "tsf.safetensors"),
                                             "init_seed": 5})
    with torch.inference_mode():
        torch.testing.assert_close(loaded.embed(clips), y)
    with pytest.raises(WeightsMismatchError, match="frames_per_snippet to 2"):
        create_backbone("timesformer", {**TSF, "frames_per_snippet": 4,
                                        "weights": str(tmp_path / "tsf.safetensors")})
