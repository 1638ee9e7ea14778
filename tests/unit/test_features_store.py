"""Zarr v3 feature store: round trip, atomic writes, finalisation, validation."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import zarr

from wsvad_core.errors import FeatureError
from wsvad_core.features import store as store_mod
from wsvad_core.features.store import (
    check_video_features,
    finalize_store,
    list_written_videos,
    open_store,
    write_video_array,
)

ROOT = Path(__file__).resolve().parents[2]


def feats(crops=2, t=5, d=8, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((crops, t, d)).astype(np.float32)


def attrs(label=0, split="train", **extra) -> dict:
    return {"n_frames": 80, "fps": 25.0, "label": label, "split": split, **extra}


def test_round_trip(tmp_path):
    sd = tmp_path / "f.zarr"
    a, b = feats(t=300, seed=1), feats(t=3, seed=2)
    write_video_array(sd, "vid_a", a, attrs(1, "test", klass=np.int64(3)))
    write_video_array(sd, "vid_b", b, attrs())
    assert not (sd / "zarr.json").exists()  # shards never write the root metadata
    root_attrs = {"recipe": {"backbone": "i3res50", "mean": (0.45, 0.45, 0.45)},
                  "provenance": {"weights": "random-init", "init_seed": 0}}
    finalize_store(sd, root_attrs, ["vid_a", "vid_b"])

    fs = open_store(sd)
    assert fs.video_ids == ["vid_a", "vid_b"] and len(fs) == 2 and "vid_a" in fs and "x" not in fs
    assert fs.attrs["recipe"]["mean"] == [0.45, 0.45, 0.45]
    assert fs.attrs["provenance"]["weights"] == "random-init"
    assert (fs.dim, fs.crops) == (8, 2)
    got = fs["vid_a"]
    assert isinstance(got, np.ndarray) and got.dtype == np.float16 and got.shape == (2, 300, 8)
    np.testing.assert_allclose(got, a, rtol=1e-3, atol=1e-3)
    assert fs.shape("vid_b") == (2, 3, 8) and fs.n_snippets("vid_b") == 3
    assert fs.video_attrs("vid_a") == {"n_frames": 80, "fps": 25.0, "label": 1, "split": "test", "klass": 3}
    with pytest.raises(KeyError, match="no video 'nope'"):
        fs["nope"]

    # chunked along T
    arr = zarr.open_array(str(sd / "vid_a"), mode="r")
    assert arr.chunks == (2, 128, 8)
    assert zarr.open_array(str(sd / "vid_b"), mode="r").chunks == (2, 3, 8)

    # a fresh zarr reader sees the consolidated metadata
    g = zarr.open_group(str(sd), mode="r", use_consolidated=True)
    consolidated = g.metadata.consolidated_metadata
    assert consolidated is not None and set(consolidated.metadata) == {"vid_a", "vid_b"}
    assert dict(g.attrs)["videos"] == ["vid_a", "vid_b"]
    assert g["vid_b"].dtype == np.float16
    root = json.loads((sd / "zarr.json").read_text())
    assert root["node_type"] == "group" and "consolidated_metadata" in root


def test_float32_store_and_named_views(tmp_path):
    """store_dtype float32 (the presets that reproduce an extractor exactly) keeps the values
    exactly; a store names the view of each crop index, and test_views resolve through it."""
    sd = tmp_path / "f32.zarr"
    a = feats(crops=3, t=4) * 1e3 + 1e-3   # float16 would round these
    write_video_array(sd, "v", a, attrs(), dtype="float32")
    finalize_store(sd, {"views": ["center", "tl", "flip_center"]})
    fs = open_store(sd)
    assert fs["v"].dtype == np.float32 and np.array_equal(fs["v"], a)
    assert list_written_videos(sd)["v"]["data_type"] == "float32"
    assert fs.view_indices(["flip_center", "center"]) == [2, 0]
    with pytest.raises(FeatureError, match=r"has no view \['br'\] \(its views: \['center', 'tl', 'flip_center'\]\)"):
        fs.view_indices(["br"])
    with pytest.raises(ValueError, match="store dtype 'float64'"):
        write_video_array(sd, "w", a, attrs(), dtype="float64")
    # a store made before views had names cannot resolve them
    old = tmp_path / "old.zarr"
    write_video_array(old, "v", feats(), attrs())
    finalize_store(old, {})
    with pytest.raises(FeatureError, match="does not name its views"):
        open_store(old).view_indices(["center"])
    # one store, one dtype
    write_video_array(sd, "w", feats(crops=3, t=4), attrs())          # float16
    with pytest.raises(FeatureError, match=r"arrays disagree .*dtypes \['float16', 'float32'\]"):
        finalize_store(sd, {})


def test_open_store_accepts_its_zarr_json(tmp_path):
    sd = tmp_path / "s.zarr"
    write_video_array(sd, "v", feats(), attrs())
    finalize_store(sd, {})
    assert open_store(sd / "zarr.json").video_ids == ["v"]


def test_rewrite_replaces_and_finalize_prunes(tmp_path):
    sd = tmp_path / "s.zarr"
    write_video_array(sd, "keep", feats(t=4), attrs())
    write_video_array(sd, "gone", feats(), attrs())
    write_video_array(sd, "keep", feats(t=9, seed=5), attrs(label=1))  # re-extracted
    (sd / ".tmp" / "leftover.123.abcd").mkdir(parents=True)
    (sd / "notes.txt").write_text("not an array")
    finalize_store(sd, {"v": 1}, ["keep"])
    assert not (sd / "gone").exists() and not (sd / ".tmp").exists() and (sd / "notes.txt").exists()
    fs = open_store(sd)
    assert fs.video_ids == ["keep"] and fs.shape("keep") == (2, 9, 8)
    assert fs.video_attrs("keep")["label"] == 1
    # finalising again (a re-run merge) keeps the arrays and replaces the root metadata
    finalize_store(sd, {"v": 2}, ["keep"])
    assert open_store(sd).attrs["v"] == 2 and open_store(sd).shape("keep") == (2, 9, 8)


def test_finalize_requires_every_video(tmp_path):
    sd = tmp_path / "s.zarr"
    write_video_array(sd, "a", feats(), attrs())
    with pytest.raises(FeatureError, match=r"s\.zarr: 1 videos have no complete array: \['b'\]"):
        finalize_store(sd, {}, ["a", "b"])
    assert not (sd / "zarr.json").exists()


def test_finalize_rejects_mixed_recipes(tmp_path):
    sd = tmp_path / "s.zarr"
    write_video_array(sd, "a", feats(d=8), attrs())
    write_video_array(sd, "b", feats(d=16), attrs())
    with pytest.raises(FeatureError, match="arrays disagree"):
        finalize_store(sd, {})


def test_exception_mid_write_leaves_nothing(tmp_path, monkeypatch):
    sd = tmp_path / "s.zarr"
    write_video_array(sd, "v", feats(t=4), attrs(label=0))  # an older, complete version
    real_fill = store_mod._fill

    def crash_after_first_chunk(z, data, chunk_t):
        real_fill(z, data[:, :chunk_t], chunk_t)
        raise RuntimeError("disk full (simulated)")

    monkeypatch.setattr(store_mod, "_fill", crash_after_first_chunk)
    with pytest.raises(RuntimeError, match="simulated"):
        write_video_array(sd, "v", feats(t=300), attrs(label=1))
    with pytest.raises(RuntimeError, match="simulated"):
        write_video_array(sd, "w", feats(t=300), attrs())
    assert not (sd / "w").exists()
    assert list((sd / ".tmp").iterdir()) == []
    # the old complete array is untouched
    assert set(list_written_videos(sd)) == {"v"}
    assert zarr.open_array(str(sd / "v"), mode="r").shape == (2, 4, 8)


def test_hard_crash_mid_write_never_looks_complete(tmp_path):
    """The process dies (no cleanup, no exception handling) after writing one chunk."""
    sd = tmp_path / "s.zarr"
    write_video_array(sd, "done", feats(), attrs())
    script = textwrap.dedent(f"""
        import os, sys
        sys.path.insert(0, {str(ROOT)!r})
        import numpy as np
        from wsvad_core.features import store
        real = store._fill
        def die(z, data, chunk_t):
            real(z, data[:, :chunk_t], chunk_t)
            os._exit(3)
        store._fill = die
        store.write_video_array({str(sd)!r}, "crashed", np.ones((2, 300, 8), np.float32), {{"n_frames": 1}})
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 3, proc.stderr
    assert not (sd / "crashed").exists()
    assert len(list((sd / ".tmp").iterdir())) == 1  # the partial array sits under .tmp only
    assert set(list_written_videos(sd)) == {"done"}
    finalize_store(sd, {}, ["done"])
    assert not (sd / ".tmp").exists() and open_store(sd).video_ids == ["done"]


@pytest.mark.parametrize("bad,what", [(np.nan, "NaN/inf"), (np.inf, "NaN/inf"), (1e6, "overflow float16")])
def test_non_finite_rejected(tmp_path, bad, what):
    sd = tmp_path / "s.zarr"
    x = feats()
    x[1, 2, 3] = bad
    with pytest.raises(FeatureError, match=f"video 'Abuse001_x264': 1 .*{what}"):
        write_video_array(sd, "Abuse001_x264", x, attrs())
    assert not (sd / "Abuse001_x264").exists()


@pytest.mark.parametrize("vid", ["a/b", ".hidden", "", "zarr.json"])
def test_bad_video_ids(tmp_path, vid):
    with pytest.raises(FeatureError, match="cannot name an array"):
        write_video_array(tmp_path / "s.zarr", vid, feats(), attrs())


def test_wrong_shape_rejected(tmp_path):
    with pytest.raises(FeatureError, match=r"\(crops, T, D\)"):
        write_video_array(tmp_path / "s.zarr", "v", np.zeros((5, 8), np.float32), attrs())


def test_features_read_from_a_store_are_checked(tmp_path):
    """check_video_features: what training and evaluation check on every array they read."""
    sd = tmp_path / "s.zarr"
    write_video_array(sd, "v", feats(crops=10, t=4, d=512), attrs())
    finalize_store(sd, {})
    store = open_store(sd)
    x = store["v"]
    check_video_features(store, "v", x, dim=512, crops=10)
    with pytest.raises(FeatureError, match=r"s\.zarr, video 'v': feature dim D=512, expected 2048"):
        check_video_features(store, "v", x, dim=2048)
    with pytest.raises(FeatureError, match="10 crops, expected 1"):
        check_video_features(store, "v", x, dim=512, crops=1)
    with pytest.raises(FeatureError, match=r"expected \(crops, T, D\), got shape \(4, 512\)"):
        check_video_features(store, "v", x[0], dim=512)
    with pytest.raises(KeyError, match="no video 'w'"):
        store["w"]


def test_unfinalised_store_is_not_opened(tmp_path):
    sd = tmp_path / "s.zarr"
    write_video_array(sd, "v", feats(), attrs())
    with pytest.raises(FeatureError, match=r"s\.zarr: no zarr\.json.*not finalised"):
        open_store(sd)
