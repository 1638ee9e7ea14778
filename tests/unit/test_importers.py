"""Published-feature importers on small fabricated files in the official layouts and names."""
import json
from pathlib import PurePosixPath

import numpy as np
import pytest

from benchmark_files import bench, benchmark_files
from published_features import fabricate_published_features
from wsvad_core.data.benchmarks import benchmark_videos
from wsvad_core.errors import FeatureError
from wsvad_core.features.importers import (
    IMPORT_LAYOUTS,
    import_shard,
    import_videos,
    normalize_import_spec,
    store_views,
    video_feature_paths,
)
from wsvad_core.features.store import finalize_from_shards, open_store

UCF_LISTS = benchmark_files("ucf_crime")
XD_LISTS = benchmark_files("xd_violence")


def rows(videos):
    return [{**v.as_row(), "class": v.cls} for v in videos]


@pytest.fixture(scope="module")
def ucf():
    return benchmark_videos("ucf_crime", UCF_LISTS)


def pick(videos, n_train=2, n_test=2):
    train = [v for v in videos if v.split == "train"]
    test = [v for v in videos if v.split == "test"]
    return train[:1] + train[-(n_train - 1):] + test[:1] + test[-(n_test - 1):]  # both labels


RTFM = {"file_layout": "rtfm", "train": "UCF_Train_ten_crop_i3d/{video}_i3d.npy",
        "test": "UCF_Test_ten_crop_i3d/{video}_i3d.npy"}
URDMU = {"file_layout": "urdmu", "train": "{folder}/{video}__{crop}.npy", "test": "{folder}/{video}__{crop}.npy"}
VADCLIP = {"file_layout": "vadclip", "train": "{folder}/{video}__{crop}.npy",
           "test": "{folder}/{video}__{crop}.npy"}


@pytest.mark.parametrize("raw", [RTFM, URDMU, VADCLIP], ids=["rtfm", "urdmu", "vadclip"])
def test_import_roundtrip_official_layouts(tmp_path, ucf, raw):
    spec = normalize_import_spec({**raw, "root": str(tmp_path / "feats")})
    videos = rows(pick(ucf))
    t = {v["video_id"]: 3 + i for i, v in enumerate(videos)}
    files = fabricate_published_features(videos, spec, t, seed=1, dtype="float32")
    names = {p.relative_to(tmp_path / "feats").as_posix() for p in files}
    if raw is RTFM:
        assert "UCF_Train_ten_crop_i3d/Abuse001_x264_i3d.npy" in names and len(files) == 4
    else:  # the names of UR-DMU's UCF_Train.list / VadCLIP's ucf_CLIP_rgb.csv
        assert "Abuse/Abuse001_x264__0.npy" in names and "Abuse/Abuse001_x264__9.npy" in names
        assert any(n.startswith("Testing_Normal_Videos_Anomaly/Normal_Videos_944_x264__") for n in names)
        assert len(files) == 40
    store = tmp_path / "s.zarr"
    import_videos(videos, spec, store, clip_len=16)
    from wsvad_core.features.store import finalize_store

    finalize_store(store, {"k": 1})
    fs = open_store(store)
    for v in videos:
        got = fs[v["video_id"]]
        paths = video_feature_paths(v, spec)
        if spec["per_crop"]:
            want = np.stack([np.load(p) for p in paths])
        else:
            want = np.load(paths[0]).transpose(1, 0, 2)
        assert got.shape == (10, t[v["video_id"]], spec["dim"]) and got.dtype == np.float16
        np.testing.assert_array_equal(got, want.astype(np.float16))
        assert fs.video_attrs(v["video_id"])["split"] == v["split"]
        assert fs.video_attrs(v["video_id"])["label"] == v["label"]


def test_template_reproduces_official_list_names(ucf):
    """Every file named in UR-DMU's UCF_Test.list and VadCLIP's test csv is what the templates give."""
    spec = normalize_import_spec({**URDMU, "root": "dataset"})
    listed = set(bench("ucf_crime/UCF_Test.list").read_text().split())
    ours = {p.as_posix() for v in rows(ucf) if v["split"] == "test" for p in video_feature_paths(v, spec)}
    assert listed == ours
    clip = normalize_import_spec({**VADCLIP, "root": "/home/xbgydx/Desktop/UCFClipFeatures", "crops": [5]})
    listed = {line.split(",")[0] for line in bench("ucf_crime/ucf_CLIP_rgbtest.csv").read_text().split()[1:]}
    assert listed == {p.as_posix() for v in rows(ucf) if v["split"] == "test"
                      for p in video_feature_paths(v, clip)}
    xd = rows(benchmark_videos("xd_violence", XD_LISTS))
    xspec = normalize_import_spec({"file_layout": "urdmu", "root": "/media/peng/Samsung_T5/i3d-features",
                                   "train": "RGB/{video}__{crop}.npy", "test": "RGBTest/{video}__{crop}.npy",
                                   "crops": 5})
    listed = set(bench("xd_violence/rgb_test.list").read_text().split())
    assert listed == {p.as_posix() for v in xd if v["split"] == "test" for p in video_feature_paths(v, xspec)}


def test_missing_file_names_video_and_writes_nothing(tmp_path, ucf):
    spec = normalize_import_spec({**URDMU, "root": str(tmp_path / "f")})
    videos = rows(pick(ucf))
    fabricate_published_features(videos, spec, {v["video_id"]: 4 for v in videos})
    gone = video_feature_paths(videos[2], spec)[7]
    gone.unlink()
    with pytest.raises(FileNotFoundError) as err:
        import_videos(videos, spec, tmp_path / "s.zarr", 16)
    assert videos[2]["video_id"] in str(err.value) and gone.name in str(err.value)
    assert not (tmp_path / "s.zarr").exists()


def test_mismatched_files_are_named(tmp_path, ucf):
    spec = normalize_import_spec({**URDMU, "root": str(tmp_path / "f")})
    v = rows(pick(ucf))[:1]
    fabricate_published_features(v, spec, {v[0]["video_id"]: 5})
    p3 = video_feature_paths(v[0], spec)[3]
    np.save(p3, np.zeros((6, 1024), np.float32))  # one crop longer than the others
    with pytest.raises(FeatureError, match=r"different lengths.*Abuse001_x264__3\.npy': 6"):
        import_videos(v, spec, tmp_path / "s.zarr", 16)
    np.save(p3, np.zeros((5, 2048), np.float32))  # RTFM-sized features in the UR-DMU layout
    with pytest.raises(FeatureError, match=r"Abuse001_x264__3\.npy: video 'Abuse001_x264' has shape \(5, 2048\)"):
        import_videos(v, spec, tmp_path / "s.zarr", 16)
    rspec = normalize_import_spec({**RTFM, "root": str(tmp_path / "r")})
    f = video_feature_paths(v[0], rspec)[0]
    f.parent.mkdir(parents=True)
    np.save(f, np.zeros((4, 5, 2048), np.float32))  # 5 crops, not 10
    with pytest.raises(FeatureError, match=r"Abuse001_x264_i3d\.npy: video 'Abuse001_x264' has 5 crops"):
        import_videos(v, rspec, tmp_path / "s.zarr", 16)


def test_spec_errors_name_the_key():
    with pytest.raises(ValueError, match=r"x\.file_layout: 'i3d'"):
        normalize_import_spec({"file_layout": "i3d", "root": "/r", "train": "{video}", "test": "{video}"}, "x")
    with pytest.raises(ValueError, match=r"x\.train: template .* \{crop\}"):
        normalize_import_spec({"file_layout": "urdmu", "root": "/r", "train": "{video}.npy",
                               "test": "{video}__{crop}"}, "x")
    # the old key name is an unknown key now (the dataset layout is `layout`, the files' `file_layout`)
    with pytest.raises(ValueError, match=r"x: unknown key\(s\) \['layout'\]"):
        normalize_import_spec({**URDMU, "layout": "urdmu", "root": "/r"}, "x")
    # which views a dataset scores at test time is the dataset's test_views now, not an import key
    with pytest.raises(ValueError, match=r"x: unknown key\(s\) \['test_crops'\]"):
        normalize_import_spec({**VADCLIP, "root": "/r", "test_crops": [5]}, "x")
    assert normalize_import_spec({**URDMU, "root": "/r", "crops": 5})["crops"] == [0, 1, 2, 3, 4]
    # views name every crop index of the files, distinct names of features/transforms.py's views
    with pytest.raises(ValueError, match=r"x\.views: .* must name every crop index"):
        normalize_import_spec({**URDMU, "root": "/r", "crops": 5, "views": ["center", "tl", "tr", "bl"]}, "x")
    with pytest.raises(ValueError, match=r"x\.views"):
        normalize_import_spec({**URDMU, "root": "/r", "crops": 2, "views": ["center", "middle"]}, "x")
    with pytest.raises(ValueError, match=r"x\.views"):
        normalize_import_spec({**URDMU, "root": "/r", "crops": 2, "views": ["tl", "tl"]}, "x")
    with pytest.raises(ValueError, match=r"x\.crops"):
        normalize_import_spec({**URDMU, "root": "/r", "crops": [1, 1]}, "x")


def test_layouts_name_their_views_and_families():
    """Each published layout's file crop k has a view name (and the store made of crops [k, ...]
    names those views): TenCrop's order for RTFM, the oversample order for UR-DMU, VadCLIP's
    crop.py order (its UCF test crop __5 is the mirrored centre)."""
    fams = {k: (v["kind"], v["family"], v["dim"]) for k, v in IMPORT_LAYOUTS.items()}
    assert fams == {"rtfm": ("i3d", "rtfm_i3d_r50", 2048), "urdmu": ("i3d", "kinetics_i3d", 1024),
                    "vadclip": ("clip", "vadclip_vitb16", 512)}
    vadclip = normalize_import_spec({**VADCLIP, "root": "/r"})
    assert (vadclip["kind"], vadclip["family"]) == ("clip", "vadclip_vitb16")
    assert vadclip["views"][5] == "flip_center" and vadclip["views"][0] == "center"
    assert store_views(normalize_import_spec({**VADCLIP, "root": "/r", "crops": [5, 0]})) == ["flip_center", "center"]
    rtfm = normalize_import_spec({**RTFM, "root": "/r"})
    assert store_views(rtfm) == ["tl", "tr", "bl", "br", "center", "flip_tr", "flip_tl", "flip_br", "flip_bl",
                                 "flip_center"]
    # XD-Violence's five crops, __0 the centre: a spec names its files' views
    xd = normalize_import_spec({**URDMU, "root": "/r", "crops": 5, "views": ["center", "tl", "tr", "bl", "br"]})
    assert store_views(xd) == ["center", "tl", "tr", "bl", "br"]


def test_shards_and_merge_record_provenance(tmp_path, ucf):
    spec = normalize_import_spec({**RTFM, "root": str(tmp_path / "f")})
    recipe = {"name": "rtfm_i3d_r50", "backbone": "i3res50", "family": "rtfm_i3d_r50", "clip_len": 16}
    videos = rows(pick(ucf, 3, 3))
    fabricate_published_features(videos, spec, {v["video_id"]: 2 for v in videos})
    store = tmp_path / "x.zarr"
    # each shard job gets its videos from the DAG (rules/common.smk: import_shard_videos)
    markers = [import_shard(videos[i::2], spec, recipe, store, tmp_path / f"{i}.json", progress=False)
               for i in range(2)]
    assert sorted(markers[0]["videos"] + markers[1]["videos"]) == sorted(v["video_id"] for v in videos)
    finalize_from_shards([tmp_path / "0.json", tmp_path / "1.json"], store / "zarr.json")
    fs = open_store(store)
    assert len(fs) == 6 and fs.crops == 10 and fs.dim == 2048
    assert fs.attrs["provenance"]["weights"] == "published:rtfm"
    assert "RTFM" in fs.attrs["provenance"]["source"] and fs.attrs["recipe"]["name"] == "rtfm_i3d_r50"
    assert (fs.attrs["kind"], fs.attrs["family"]) == ("i3d", "rtfm_i3d_r50")
    assert fs.attrs["import"]["file_layout"] == "rtfm" and fs.attrs["views"] == IMPORT_LAYOUTS["rtfm"]["views"]
    # the store's views resolve to crop indices (evaluation's test_views)
    assert fs.view_indices(["center", "flip_center"]) == [4, 9]
    # a shard imported with other settings is refused by name
    m = json.loads((tmp_path / "1.json").read_text())
    m["recipe_fingerprint"] = "0" * 64
    (tmp_path / "1.json").write_text(json.dumps(m))
    with pytest.raises(FeatureError, match=r"1\.json: made with another recipe"):
        finalize_from_shards([tmp_path / "0.json", tmp_path / "1.json"], store / "zarr.json")


def test_benchmark_lists_give_official_splits():
    ucf = benchmark_videos("ucf_crime", UCF_LISTS)
    assert [sum(1 for v in ucf if (v.split, v.label) == k) for k in
            [("train", 1), ("train", 0), ("test", 1), ("test", 0)]] == [810, 800, 140, 150]
    assert ucf[1610].video_id == "Abuse028_x264" and ucf[1610].n_frames > 0  # RTFM test order
    sh = benchmark_videos("shanghaitech", benchmark_files("shanghaitech"))
    assert [sum(1 for v in sh if (v.split, v.label) == k) for k in
            [("train", 1), ("train", 0), ("test", 1), ("test", 0)]] == [63, 175, 44, 155]
    xd = benchmark_videos("xd_violence", XD_LISTS)
    assert [sum(1 for v in xd if (v.split, v.label) == k) for k in
            [("train", 1), ("train", 0), ("test", 1), ("test", 0)]] == [1905, 2049, 500, 300]
    assert {v.cls for v in xd if v.label == 0} == {"Normal"}
    assert PurePosixPath(xd[0].relpath).suffix == ".mp4"
