"""Extraction end to end on tiny synthetic videos: store contents, equivalence with a direct
computation, shard/merge, failure behaviour, recipe fingerprints."""
from __future__ import annotations

import json
import threading

import numpy as np
import pytest
import torch

from synthetic import CLIP, I3D, write_video
from wsvad_core.errors import FeatureError, VideoReadError
from wsvad_core.features import extract as extract_mod
from wsvad_core.features.backbones import create_backbone
from wsvad_core.features.decode import SnippetReader
from wsvad_core.features.extract import extract_shard, extract_videos
from wsvad_core.features.store import finalize_from_shards, finalize_store, list_written_videos, open_store
from wsvad_core.features.transforms import host_transform, preprocess
from wsvad_core.recipes import normalize_recipe, recipe_fingerprint


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    d = tmp_path_factory.mktemp("videos")
    rows = []
    for i, (n, label, split) in enumerate([(20, 0, "train"), (9, 1, "test"), (16, 1, "train")]):
        rows.append({"video_id": f"v{i}", "path": write_video(d / f"v{i}.mp4", n, seed=i), "n_frames": n,
                     "fps": 25.0, "label": label, "split": split, "class": "Normal" if label == 0 else "Abuse"})
    return rows


@pytest.fixture(scope="module")
def i3d():
    return create_backbone("i3res50", normalize_recipe(I3D))


def test_extract_i3d_matches_direct_computation(videos, i3d, tmp_path):
    sd = tmp_path / "i3d.zarr"
    summaries = extract_videos(videos, I3D, sd, progress=True, backbone=i3d)
    assert [s["video_id"] for s in summaries] == ["v0", "v1", "v2"]
    assert [s["shape"] for s in summaries] == [[1, 3, 2048], [1, 2, 2048], [1, 2, 2048]]
    assert all(s["snippets_per_s"] > 0 for s in summaries)
    assert set(list_written_videos(sd)) == {"v0", "v1", "v2"} and not (sd / "zarr.json").exists()

    finalize_store(sd, {"recipe": normalize_recipe(I3D)}, ["v0", "v1", "v2"])
    fs = open_store(sd)
    a = fs.video_attrs("v1")
    assert a["n_frames"] == 9 and a["fps"] == 25.0 and a["label"] == 1 and a["split"] == "test"
    assert a["class"] == "Abuse" and a["n_snippets"] == 2 and a["recipe_fingerprint"] == recipe_fingerprint(I3D)

    # the stored features are what decode -> preprocess -> backbone gives, snippet by snippet
    r = normalize_recipe(I3D)
    reader = SnippetReader(videos[0]["path"], r["clip_len"], r["stride"], r["frames_per_snippet"], r["t_rule"],
                           host_transform(r))
    frames = torch.cat(list(reader.batches(8)))
    x = preprocess(frames, r)
    with torch.inference_mode():
        direct = i3d.embed(x[:, 0]).numpy()                     # (T, D)
    np.testing.assert_allclose(fs["v0"][0].astype(np.float32), direct, rtol=2e-3, atol=2e-3)


def test_extract_clip_ten_crops(videos, tmp_path):
    sd = tmp_path / "clip.zarr"
    summaries = extract_videos(videos[1:2], CLIP, sd, progress=False)
    assert [s["shape"] for s in summaries] == [[10, 2, 512]]
    arr = list_written_videos(sd)["v1"]
    assert arr["data_type"] == "float16" and arr["shape"] == [10, 2, 512]


def test_corrupt_video_fails_the_run_but_finished_arrays_stay(videos, i3d, tmp_path):
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"")
    rows = [videos[0], {**videos[1], "video_id": "bad", "path": str(bad)}, videos[2]]
    sd = tmp_path / "s.zarr"
    before = {t.name for t in threading.enumerate()}
    with pytest.raises(VideoReadError, match=r"broken\.mp4.*empty"):
        extract_videos(rows, I3D, sd, progress=False, backbone=i3d)
    written = list_written_videos(sd)
    assert set(written) == {"v0"} and written["v0"]["shape"] == [1, 3, 2048]
    assert list((sd / ".tmp").iterdir()) == []
    assert "wsvad-decode" not in {t.name for t in threading.enumerate()} - before


def test_model_failure_stops_the_decoder(videos, i3d, tmp_path, monkeypatch):
    def boom(*args, **kwargs):
        raise RuntimeError("CUDA out of memory (simulated)")

    monkeypatch.setattr(extract_mod, "_embed", boom)
    with pytest.raises(RuntimeError, match="simulated"):
        extract_videos(videos, I3D, tmp_path / "s.zarr", progress=False, backbone=i3d)
    assert not any(t.name == "wsvad-decode" and t.is_alive() for t in threading.enumerate())
    assert list_written_videos(tmp_path / "s.zarr") == {}


def test_shards_and_finalize(videos, tmp_path):
    from wsvad_core.shards import shard_of

    sd = tmp_path / "features" / "i3d.zarr"
    recipe = {**I3D, "name": "i3d_tiny", "family": "i3d"}  # a family the recipe names
    markers = []
    assert [shard_of(v["video_id"], 3) for v in videos] == [1, 0, 0]  # 3 shards: one of them empty
    for shard in range(3):  # each shard job gets its rows from the DAG (rules/common.smk)
        out = tmp_path / "features" / "i3d.shards" / f"{shard}.json"
        rows = [v for v in videos if shard_of(v["video_id"], 3) == shard]
        extract_shard(rows, recipe, sd, out, device="cpu", progress=False)
        markers.append(out)
        assert not (sd / "zarr.json").exists()
    m = [json.loads(p.read_text()) for p in markers]
    assert [mk["videos"] for mk in m] == [["v1", "v2"], ["v0"], []]
    assert m[0]["provenance"] == {"weights": "random-init", "init_seed": 0}
    assert m[0]["recipe_fingerprint"] == recipe_fingerprint(recipe)
    assert m[0]["store_attrs"]["recipe"] == normalize_recipe(recipe)
    assert (m[0]["store_attrs"]["kind"], m[0]["store_attrs"]["family"], m[0]["store_attrs"]["views"]) == \
        ("i3d", "i3d", ["center"])

    finalize_from_shards(markers, sd / "zarr.json")
    fs = open_store(sd)
    assert sorted(fs.video_ids) == ["v0", "v1", "v2"] and fs.dim == 2048
    assert fs.attrs["recipe"]["family"] == "i3d" and fs.attrs["recipe"]["name"] == "i3d_tiny"
    assert fs.attrs["provenance"]["weights"] == "random-init"
    assert fs.attrs["recipe_fingerprint"] == recipe_fingerprint(recipe)

    # a re-run shard replaces arrays: the store stops looking complete until it is finalised again
    extract_shard([v for v in videos if v["video_id"] in m[0]["videos"]], recipe, sd, markers[0], device="cpu",
                  progress=False)
    assert not (sd / "zarr.json").exists()
    finalize_from_shards(markers, sd / "zarr.json")
    assert sorted(open_store(sd).video_ids) == ["v0", "v1", "v2"]

    # a shard made with another recipe (or other weights) cannot be finalised with the others
    other = json.loads(markers[1].read_text())
    other["recipe_fingerprint"] = "0" * 64
    markers[1].write_text(json.dumps(other))
    with pytest.raises(FeatureError, match=r"1\.json: made with another recipe"):
        finalize_from_shards(markers, sd / "zarr.json")
    other["recipe_fingerprint"], other["provenance"] = m[1]["recipe_fingerprint"], {"weights": "/w.pt"}
    markers[1].write_text(json.dumps(other))
    with pytest.raises(FeatureError, match=r"1\.json: made with another weights provenance"):
        finalize_from_shards(markers, sd / "zarr.json")
    # two shards claiming one video
    markers[1].write_text(json.dumps({**m[1], "videos": m[1]["videos"] + m[0]["videos"][:1]}))
    with pytest.raises(FeatureError, match="videos claimed by more than one shard"):
        finalize_from_shards(markers, sd / "zarr.json")
    with pytest.raises(FeatureError, match="no shard markers"):
        finalize_from_shards([], sd / "zarr.json")


def test_recipe_fingerprint():
    base = recipe_fingerprint(I3D)
    assert len(base) == 64
    assert recipe_fingerprint(dict(reversed(list(I3D.items())))) == base
    assert recipe_fingerprint({**I3D, "batch_size": 7, "name": "x"}) == base   # runtime only
    assert recipe_fingerprint({**I3D, "crop_size": 24, "resize": 24}) != base
    assert recipe_fingerprint({**I3D, "init_seed": 1}) != base
    # defaults filled in = written out
    full = {"backbone": "i3res50", "clip_len": 16, "stride": 16, "frames_per_snippet": 16, "crops": "center",
            "resize": 256, "crop_size": 224, "mean": [0.45] * 3, "std": [0.225] * 3, "weights": None,
            "t_rule": "ceil_loop", "interpolation": "bilinear", "jpeg": None, "store_dtype": "float16"}
    assert recipe_fingerprint({"backbone": "i3res50"}) == recipe_fingerprint(full)
    # the keys that change the pixels or the stored values change the fingerprint
    for change in ({"t_rule": "floor"}, {"interpolation": "pil_lanczos"}, {"store_dtype": "float32"},
                   {"jpeg": {"encoder": "opencv", "quality": 95}}, {"crops": "ten"}, {"resize": [40, 32]},
                   {"crops": ["tl", "tr"]}, {"family": "other"}):
        assert recipe_fingerprint({**I3D, **change}) != base, change


@pytest.mark.parametrize("change,msg", [
    ({"frames_per_snippet": 4}, "frames_per_snippet must equal clip_len"),
    ({"frames_per_snippet": 9}, r"must be in \[1, clip_len=8\]"),
    ({"resize": 16}, r"resize 16 must be at least crop_size \(32\)"),
    ({"resize": [40, 24]}, r"resize \[40, 24\] must be at least crop_size"),
    ({"crops": "five"}, "crops must be one of"),
    ({"crops": ["tl", "centre"]}, r"\['centre'\] unknown"),
    ({"t_rule": "round"}, "t_rule must be one of"),
    ({"interpolation": "nearest"}, "interpolation must be one of"),
    ({"store_dtype": "float64"}, "store_dtype must be one of"),
    ({"jpeg": {"encoder": "pil", "quality": 95}}, "jpeg must be"),
    ({"patch_grid": [2, 3], "crops": "ten"}, "crops must be 'center'"),
    ({"backbone": "resnet"}, "unknown backbone"),
])
def test_bad_recipes(change, msg):
    with pytest.raises((ValueError, KeyError), match=msg):
        normalize_recipe({**I3D, **change})


def test_normalized_recipe_names_kind_family_and_views():
    r = normalize_recipe(I3D)
    assert (r["kind"], r["family"], r["views"]) == ("i3d", "rtfm_i3d_r50", ["center"])
    # the family is the backbone's unless the recipe names one; the kind always follows the backbone
    assert normalize_recipe({**I3D, "family": "my_i3d"})["family"] == "my_i3d"
    assert normalize_recipe({**I3D, "kind": "clip"})["kind"] == "i3d"
    assert normalize_recipe({**I3D, "crops": "ten"})["views"][5:] == ["flip_tr", "flip_tl", "flip_center",
                                                                     "flip_br", "flip_bl"]
    assert normalize_recipe(CLIP)["kind"] == "clip" and normalize_recipe(CLIP)["family"] == "vadclip_vitb16"
    # a patch grid makes the store kind <kind>_patch, one view per cell in raster order
    p = normalize_recipe({**I3D, "patch_grid": [2, 3]})
    assert p["kind"] == "i3d_patch" and p["views"] == ["cell_0_0", "cell_0_1", "cell_0_2", "cell_1_0",
                                                       "cell_1_1", "cell_1_2"]


def test_cpu_conv3d_forwards_are_small_and_give_the_same_features(monkeypatch):
    """On the CPU, 3D-conv backbones see at most CPU_CONV3D_FORWARD_ELEMENTS input elements per
    forward (memory-bound kernels are faster on small batches); the features are those of one
    big forward."""

    class Probe(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv3d(3, 4, 3, padding=1)
            self.batches = []

        def embed(self, x):
            self.batches.append(x.shape[0])
            return self.conv(x).mean(dim=(2, 3, 4))

    torch.manual_seed(0)
    model = Probe()
    r = {"resize": 20, "crop_size": 16, "crops": "ten", "mean": [0.5] * 3, "std": [0.25] * 3}
    frames = torch.randint(0, 255, (3, 4, 24, 32, 3), dtype=torch.uint8)  # 3 snippets x 10 crops
    per_clip = 3 * 4 * 16 * 16
    monkeypatch.setattr(extract_mod, "CPU_CONV3D_FORWARD_ELEMENTS", 4 * per_clip)
    small = extract_mod._embed(model, frames, r, torch.device("cpu"), False, channels_last=True)
    assert model.batches == [4] * 7 + [2]  # 30 clips in forwards of <= 4
    model.batches.clear()
    whole = extract_mod._embed(model, frames, r, torch.device("cpu"), False, channels_last=False)
    assert model.batches == [30]
    assert small.shape == (3, 10, 4)
    torch.testing.assert_close(small, whole, atol=1e-5, rtol=1e-5)
