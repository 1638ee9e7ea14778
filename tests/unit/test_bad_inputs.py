"""Every bad input of docs/errors.md: a specific error naming the file or key, and no partial
output. Each test runs the stage function the rule runs, on a tiny demo dataset."""
from __future__ import annotations

import copy
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import zarr

from configs import SCHEMA, merged_config
from synthetic import write_frames  # before decord: the two ffmpeg builds crash a process that imports av second
from tiny_dag import TINY_RECIPE
from wsvad_core.config import ConfigError, check_config, validate_config
from wsvad_core.data.demo import TEST_ANNOTATION_NAME, TRAIN_LIST_NAME, generate_demo_dataset
from wsvad_core.data.manifest import build_manifest, read_manifest, write_manifest
from wsvad_core.errors import AnnotationError, FeatureError, VideoReadError, WeightsMismatchError
from wsvad_core.features.extract import extract_shard
from wsvad_core.features.store import finalize_store, list_written_videos, write_video_array

LAYOUT = dict(n_train_normal=1, n_train_abnormal=1, n_test_normal=1, n_test_abnormal=1)


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("pristine")
    generate_demo_dataset(root, seed=0, n_frames=32, width=64, height=48, fps=25, **LAYOUT)
    return root


@pytest.fixture()
def ds(pristine, tmp_path) -> Path:
    """A fresh copy of the tiny dataset to break."""
    return Path(shutil.copytree(pristine, tmp_path / "data"))


def manifest_stage(root: Path, out: Path, min_frames: int = 1) -> None:
    """What workflow_scripts/manifest.py does (the rule passes ``min_frames``: the longest
    clip_len of the dataset's extracted feature sets)."""
    files = {"train_list": root / TRAIN_LIST_NAME, "test_annotation": root / TEST_ANNOTATION_NAME}
    write_manifest(build_manifest("ucf_crime", files, root, progress=False, min_frames=min_frames), out)


def extract_stage(manifest: Path, recipe: dict, store: Path, marker: Path) -> None:
    """What the extract_shard rule does with its one shard's manifest rows."""
    extract_shard(read_manifest(manifest).to_dict("records"), recipe, store, marker, device="cpu", progress=False)


def first_video(root: Path, folder: str = "Explosion") -> Path:
    return sorted((root / folder).glob("*.mp4"))[0]


def rewrite_first_line(listing: Path, edit) -> None:
    """Replace line 1 of a list or annotation file by ``edit(line)``."""
    lines = listing.read_text().splitlines()
    lines[0] = edit(lines[0])
    listing.write_text("\n".join(lines) + "\n")


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


# ------------------------------------------------------------------------------ videos

def test_corrupt_mp4(ds, tmp_path):
    bad = first_video(ds)
    data = bytearray(bad.read_bytes())
    data[48:] = np.random.default_rng(0).integers(0, 256, len(data) - 48, dtype=np.uint8).tobytes()
    bad.write_bytes(bytes(data))  # the container header survives, everything after is noise
    out = tmp_path / "out" / "manifest.csv"
    with pytest.raises(VideoReadError) as exc:
        manifest_stage(ds, out)
    assert str(bad) in str(exc.value) and "cannot be opened" in str(exc.value)
    assert leftovers(out.parent) == []


def test_zero_byte_video(ds, tmp_path):
    bad = first_video(ds, "Training_Normal_Videos_Anomaly")
    bad.write_bytes(b"")
    out = tmp_path / "out" / "manifest.csv"
    with pytest.raises(VideoReadError, match="empty \\(0 bytes\\)") as exc:
        manifest_stage(ds, out)
    assert str(bad) in str(exc.value)
    assert leftovers(out.parent) == []


def test_unreadable_codec(ds, tmp_path):
    bad = first_video(ds)
    # a valid mp4 whose video track declares a codec no ffmpeg knows ("avc1" -> "wsv9")
    bad.write_bytes(bad.read_bytes().replace(b"avc1", b"wsv9"))
    out = tmp_path / "out" / "manifest.csv"
    with pytest.raises(VideoReadError, match="codec has no decoder") as exc:
        manifest_stage(ds, out)
    assert str(bad) in str(exc.value) and "re-encode" in str(exc.value)
    assert leftovers(out.parent) == []


def test_video_shorter_than_one_snippet(pristine, tmp_path):
    root = Path(shutil.copytree(pristine, tmp_path / "data"))
    manifest = tmp_path / "manifest.csv"
    manifest_stage(root, manifest)
    short = first_video(root)
    write_frames(short, 5)  # 5 frames < clip_len 8
    store, marker = tmp_path / "f.zarr", tmp_path / "f.shards" / "0.json"
    with pytest.raises(VideoReadError, match="5 frame\\(s\\), shorter than one snippet \\(clip_len 8\\)") as exc:
        extract_stage(manifest, TINY_RECIPE, store, marker)
    assert str(short) in str(exc.value)
    assert not marker.exists() and not (store / "zarr.json").exists()
    assert short.stem not in list_written_videos(store)  # arrays done before it stay whole


def test_video_shorter_than_one_snippet_fails_the_manifest(ds, tmp_path):
    short = write_frames(first_video(ds), 5)  # Explosion001, line 1 of the train list
    out = tmp_path / "out" / "manifest.csv"
    with pytest.raises(AnnotationError, match=r"line 1: video .* 5 frame\(s\), fewer than one 8-frame snippet") as exc:
        manifest_stage(ds, out, min_frames=8)
    assert str(ds / TRAIN_LIST_NAME) in str(exc.value) and str(short) in str(exc.value)
    assert "remove it from this list" in str(exc.value)
    assert leftovers(out.parent) == []  # failed before any extraction: no manifest to extract from
    manifest_stage(ds, out, min_frames=5)  # exactly one snippet is enough
    assert read_manifest(out).set_index("video_id").loc[short.stem, "n_frames"] == 5


def test_missing_video_in_split_file(ds, tmp_path):
    missing = first_video(ds, "Training_Normal_Videos_Anomaly")
    missing.unlink()
    out = tmp_path / "out" / "manifest.csv"
    with pytest.raises(FileNotFoundError) as exc:
        manifest_stage(ds, out)
    msg = str(exc.value)
    assert str(ds / TRAIN_LIST_NAME) in msg and "line 2" in msg and missing.name in msg
    assert leftovers(out.parent) == []


# ----------------------------------------------------------------------------- annotations

def test_annotation_start_after_end(ds, tmp_path):
    ann = ds / TEST_ANNOTATION_NAME
    rewrite_first_line(ann, lambda line: f"{line.split()[0]}  Explosion  20  10  -1  -1  ")
    out = tmp_path / "out" / "manifest.csv"
    with pytest.raises(AnnotationError, match="line 1: interval 1: start 20 > end 10") as exc:
        manifest_stage(ds, out)
    assert str(ann) in str(exc.value)
    assert leftovers(out.parent) == []


def test_annotation_interval_after_the_video(ds, tmp_path):
    ann = ds / TEST_ANNOTATION_NAME
    # the video has 32 frames
    rewrite_first_line(ann, lambda line: f"{line.split()[0]}  Explosion  40  60  -1  -1  ")
    with pytest.raises(AnnotationError, match=r"line 1: interval \(40, 60\) starts after the last frame"):
        manifest_stage(ds, tmp_path / "manifest.csv")
    assert not (tmp_path / "manifest.csv").exists()


@pytest.mark.parametrize("listed_in", [TRAIN_LIST_NAME, TEST_ANNOTATION_NAME], ids=["train_list", "annotation"])
def test_video_name_with_a_space(ds, tmp_path, listed_in):
    listing = ds / listed_in
    name = listing.read_text().split()[0].rpartition("/")[2]  # Explosion001 (train), Explosion002 (test)
    spaced = name.replace("Explosion", "Explosion ")
    (ds / "Explosion" / name).rename(ds / "Explosion" / spaced)  # the file really is named so
    rewrite_first_line(listing, lambda line: line.replace(name, spaced))
    out = tmp_path / "out" / "manifest.csv"
    with pytest.raises(AnnotationError, match="line 1: .*with spaces cannot be listed.*rename the video") as exc:
        manifest_stage(ds, out)
    assert str(listing) in str(exc.value)
    assert leftovers(out.parent) == []


@pytest.mark.parametrize("kind", ["normal", "abnormal"])
def test_no_normal_or_no_abnormal_training_video(ds, tmp_path, kind):
    train = ds / TRAIN_LIST_NAME
    keep = [ln for ln in train.read_text().splitlines() if ("Normal" in ln) == (kind == "abnormal")]
    train.write_text("\n".join(keep) + "\n")
    out = tmp_path / "out" / "manifest.csv"
    with pytest.raises(AnnotationError, match=f"lists no {kind} training video") as exc:
        manifest_stage(ds, out)
    assert str(train) in str(exc.value)
    assert leftovers(out.parent) == []


# -------------------------------------------------------------------------------- features

def _rtfm_spec(root: Path) -> dict:
    from wsvad_core.features.importers import normalize_import_spec

    return normalize_import_spec({"file_layout": "rtfm", "root": str(root), "train": "{video}_i3d.npy",
                                  "test": "{video}_i3d.npy"})


@pytest.mark.parametrize("problem", ["dim", "nan", "inf"])
def test_imported_features_wrong_dim_or_not_finite(tmp_path, problem):
    from wsvad_core.features.importers import import_videos

    feats = np.random.default_rng(0).standard_normal((5, 10, 2048)).astype(np.float32)
    if problem == "dim":
        feats = feats[..., :1024]  # (T, crops, 1024): the UR-DMU dim in an RTFM layout
    else:
        feats[2, 3, 7] = np.nan if problem == "nan" else np.inf
    np.save(tmp_path / "v1_i3d.npy", feats)
    store = tmp_path / "store.zarr"
    video = {"video_id": "v1", "split": "train", "label": 0, "class": "Normal", "n_frames": 80}
    with pytest.raises(FeatureError) as exc:
        import_videos([video], _rtfm_spec(tmp_path), store, clip_len=16)
    msg = str(exc.value)
    if problem == "dim":
        assert str(tmp_path / "v1_i3d.npy") in msg and "(5, 10, 1024)" in msg and "2048" in msg
    else:
        assert str(store) in msg and "'v1'" in msg and "1 NaN/inf values" in msg
    assert list_written_videos(store) == {}


def _store_with(tmp_path: Path, arrays: dict) -> Path:
    store = tmp_path / "store.zarr"
    for vid, a in arrays.items():
        write_video_array(store, vid, a, {"split": "train", "label": int(vid.startswith("a"))})
    finalize_store(store, {"recipe": {"kind": "i3d", "family": "rtfm_i3d_r50", "name": "x"}})
    return store


def test_store_arrays_of_different_dims_fail_the_merge(tmp_path):
    store = tmp_path / "store.zarr"
    write_video_array(store, "n1", np.zeros((1, 4, 64), np.float32), {})
    write_video_array(store, "a1", np.zeros((1, 4, 32), np.float32), {})
    with pytest.raises(FeatureError, match="arrays disagree .*dims \\[32, 64\\]") as exc:
        finalize_store(store, {})
    assert str(store) in str(exc.value)
    assert not (store / "zarr.json").exists()


def test_damaged_store_array_fails_training_naming_the_video(tmp_path):
    from wsvad_core.training.run import run_training

    rng = np.random.default_rng(0)
    store = _store_with(tmp_path, {v: rng.standard_normal((1, 6, 16)).astype(np.float32)
                                   for v in ("n1", "n2", "a1", "a2")})
    z = zarr.open_array(str(store / "a2"), mode="r+")  # damage on disk, after the checks at write
    z[0, 3, 5] = np.nan
    manifest = tmp_path / "manifest.csv"
    pd.DataFrame({"video_id": ["n1", "n2", "a1", "a2"], "path": "-", "split": "train", "label": [0, 0, 1, 1],
                  "class": ["Normal"] * 2 + ["Abuse"] * 2, "n_frames": 96, "fps": 25.0}).to_csv(manifest, index=False)
    run = tmp_path / "run"
    with pytest.raises(FeatureError, match="video 'a2': 1 NaN/inf values") as exc:
        run_training(method="mil", manifest=manifest, store=store, run_dir=run, seed=0,
                     overrides={"max_steps": 5, "batch_size": 2}, progress=False)
    assert str(store) in str(exc.value)
    assert leftovers(run) == []


# --------------------------------------------------------------------------------- weights

def test_weights_of_another_architecture(pristine, tmp_path):
    manifest = tmp_path / "manifest.csv"
    manifest_stage(pristine, manifest)
    weights = tmp_path / "clip_like.pt"
    # keys of I3Res50's file (i3d_r50_kinetics.pth): conv1 with a 2D stem (wrong shape), the rest missing
    torch.save({"visual.conv1.weight": torch.zeros(768, 3, 16, 16),
                "conv1.weight": torch.zeros(64, 3, 1, 7, 7)}, weights)
    recipe = {**TINY_RECIPE, "weights": str(weights)}
    store, marker = tmp_path / "f.zarr", tmp_path / "f.shards" / "0.json"
    with pytest.raises(WeightsMismatchError) as exc:
        extract_stage(manifest, recipe, store, marker)
    msg = str(exc.value)
    assert msg.startswith(str(weights)) and "does not fit backbone i3res50" in msg
    # the differences are named as the file names them
    assert "unexpected keys: visual.conv1.weight" in msg and "blocks.0" not in msg
    assert "conv1.weight (file (64, 3, 1, 7, 7), model (64, 3, 5, 7, 7))" in msg
    assert "missing keys: bn1.weight" in msg
    assert not marker.exists() and list_written_videos(store) == {}


# ---------------------------------------------------------------------------------- config

@pytest.fixture(scope="module")
def shipped():
    return merged_config(validate=False)


@pytest.fixture()
def config(shipped):
    return copy.deepcopy(shipped)


def test_config_typo_names_the_key(config):
    """Every run validates the merged config against the schema (config.validate_config): the
    error names the key and where it is, without the schema dump."""
    bad = copy.deepcopy(config)
    bad["datasets"]["demo"]["n_shard"] = bad["datasets"]["demo"].pop("n_shards")
    with pytest.raises(ConfigError, match=r"config datasets\.demo: .*'n_shard' was unexpected") as exc:
        validate_config(bad, str(SCHEMA))
    assert "config.schema.yaml" in str(exc.value) and "\n" not in str(exc.value)
    validate_config(config, str(SCHEMA))  # the shipped one passes


def test_unknown_method_and_feature_set_name_the_key(config):
    bad = copy.deepcopy(config)
    bad["datasets"]["demo"]["methods"] = ["rtfn"]
    with pytest.raises(ConfigError, match=r"datasets\.demo\.methods: unknown method 'rtfn'"):
        check_config(bad)
    bad = copy.deepcopy(config)
    bad["datasets"]["demo"]["feature_sets"] = ["clip_vitb61"]
    with pytest.raises(ConfigError, match=r"datasets\.demo\.feature_sets: unknown feature set 'clip_vitb61'"):
        check_config(bad)
    bad = copy.deepcopy(config)
    bad["run_datasets"] = ["dmeo"]
    with pytest.raises(ConfigError, match=r"run_datasets: unknown dataset 'dmeo'"):
        check_config(bad)


def test_errors_doc_lists_every_case(repo):
    doc = (repo / "docs" / "errors.md").read_text()
    for case in ("corrupt", "zero-byte", "shorter than one snippet", "codec", "missing video",
                 "wrong dimension", "NaN", "architecture", "frame range", "typo", "unknown method",
                 "unknown feature set", "no normal", "no abnormal"):
        assert case in doc, case
    named = set(re.findall(r"`(test_\w+)(?:\[[^\]`]+\])?`", doc))
    # a row may name a test of any module under tests/: each named test must exist
    defined = set(re.findall(r"^def (test_\w+)", "\n".join(
        p.read_text() for p in (repo / "tests").rglob("test_*.py")), re.M))
    assert len(named) >= 20 and not named - defined, named - defined


# ------------------------------------------------------------------- writes and foreign stores

def test_disk_full_names_the_store_the_video_and_the_free_space(tmp_path, monkeypatch):
    import errno

    from wsvad_core.errors import StorageError
    from wsvad_core.features import store as store_mod

    sd = tmp_path / "s.zarr"
    write_video_array(sd, "v", np.ones((1, 3, 4), np.float32), {"n_frames": 48, "fps": 25.0, "label": 0,
                                                                  "split": "test"})

    def full(z, data, chunk_t):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(store_mod, "_fill", full)
    with pytest.raises(StorageError) as exc:
        write_video_array(sd, "w", np.ones((1, 3, 4), np.float32), {"n_frames": 48, "fps": 25.0, "label": 1,
                                                                      "split": "test"})
    msg = str(exc.value)
    assert f"video 'w' into the feature store {sd}" in msg and "No space left on device" in msg
    assert re.search(r"\d+\.\d\d GB free on ", msg) and "run the same command again" in msg
    # nothing half-written: the earlier video stays, the failed one is absent, no temporary left
    assert set(list_written_videos(sd)) == {"v"} and list((sd / ".tmp").iterdir()) == []


def test_info_on_a_zarr_group_that_is_not_a_wsvad_store(tmp_path, capsys):
    from wsvad_core.cli import main

    foreign = tmp_path / "foreign.zarr"
    group = zarr.open_group(str(foreign), mode="w", zarr_format=3)
    group.create_array("x", shape=(2, 3, 4), dtype="float32")
    assert main(["info", str(foreign), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert f"{foreign}: a Zarr group, but not a wsvad feature store" in err
