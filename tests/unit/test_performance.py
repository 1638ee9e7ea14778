"""The fast paths give the same numbers as the slow ones: channels-last extraction, batched and
read-ahead scoring, S3R's fused attention, and the benchmarks' official-style baselines."""
from __future__ import annotations

import importlib.util
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from synthetic import I3D, write_video  # tiny I3D recipe, synthetic h264 writer
from wsvad_core.errors import FeatureError
from wsvad_core.evaluation import evaluate as evaluate_mod
from wsvad_core.evaluation.evaluate import score_videos
from wsvad_core.features import extract as extract_mod
from wsvad_core.features.backbones import create_backbone
from wsvad_core.features.extract import extract_videos
from wsvad_core.features.store import finalize_store, open_store, write_video_array
from wsvad_core.methods import create_method
from wsvad_core.recipes import normalize_recipe

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


def bench_module(name: str):
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))  # the scripts import their sibling `common`
    spec = importlib.util.spec_from_file_location(f"wsvad_bench_{name}", BENCH / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


TEN = normalize_recipe({**I3D, "crops": "ten", "resize": 36})


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    d = tmp_path_factory.mktemp("perf")  # 9 frames: one full and one loop-padded 8-frame snippet
    return {"video_id": "v0", "path": write_video(d / "v0.mp4", 9, seed=5), "n_frames": 9, "fps": 25.0,
            "label": 0, "split": "test"}


@pytest.fixture(scope="module")
def i3d():
    return create_backbone(TEN["backbone"], TEN)


# -- extraction --------------------------------------------------------------------------------

def test_channels_last_embed_equals_contiguous(i3d):
    r = normalize_recipe(I3D)  # centre crop
    assert extract_mod._has_conv3d(i3d)
    assert not extract_mod._has_conv3d(torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3)))
    frames = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (2, 8, 40, 64, 3), dtype=np.uint8))
    with torch.inference_mode():
        i3d.to(memory_format=torch.contiguous_format)
        plain = extract_mod._embed(i3d, frames, r, torch.device("cpu"), False, channels_last=False)
        i3d.to(memory_format=torch.channels_last_3d)
        fast = extract_mod._embed(i3d, frames, r, torch.device("cpu"), False, channels_last=True)
    assert fast.shape == plain.shape == (2, 1, 2048)
    torch.testing.assert_close(fast, plain, rtol=1e-4, atol=1e-5)


def test_naive_baseline_gives_the_pipelines_features(video, i3d, tmp_path):
    """The benchmark's per-snippet, per-crop loop computes the same features as the extractor
    (ten crops, loop-padded last snippet), so its speed-up is measured at the same recipe."""
    ex = bench_module("extraction")
    extract_videos([video], TEN, tmp_path / "s.zarr", progress=False, backbone=i3d)
    assert i3d.blocks[0].conv.weight.is_contiguous(memory_format=torch.channels_last_3d)
    finalize_store(tmp_path / "s.zarr", {"recipe": TEN}, ["v0"])
    ours = open_store(tmp_path / "s.zarr")["v0"].astype(np.float32)
    i3d.to(memory_format=torch.contiguous_format)  # the baseline's default layout
    naive = ex.naive_extract_video(video["path"], TEN, i3d, torch.device("cpu"))
    assert naive.shape == ours.shape == (10, 2, 2048)
    scale = np.abs(naive).max()
    assert np.abs(naive - ours).max() <= scale * 2**-10  # float16 storage rounding only


# -- training input ----------------------------------------------------------------------------

def test_official_process_feat_equals_segment_policy():
    from wsvad_core.data.segments import meanpool

    ti = bench_module("training_input")
    rng = np.random.default_rng(0)
    for t in (5, 32, 77, 491):
        feat = rng.standard_normal((t, 16)).astype(np.float32)
        np.testing.assert_allclose(ti.official_process_feat(feat, 32), meanpool(feat, 32), rtol=1e-6, atol=1e-6)


# -- scoring -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def test_store(tmp_path_factory):
    d = tmp_path_factory.mktemp("score") / "s.zarr"
    rng = np.random.default_rng(1)
    ids = [f"t{i}" for i in range(7)]
    for vid, t in zip(ids, (3, 40, 1, 17, 64, 9, 25)):
        write_video_array(d, vid, rng.standard_normal((2, t, 32)).astype(np.float32),
                          {"n_frames": t * 16, "label": 0, "split": "test"})
    finalize_store(d, {"recipe": {}}, ids)
    return open_store(d), ids


def test_batched_scoring_equals_one_forward_per_video(test_store, monkeypatch):
    store, ids = test_store
    model, _ = create_method("mil", 32)
    assert type(model).snippet_independent  # MIL's MLP scores each snippet alone
    order = ids[::-1]  # the caller's order is kept
    calls = []
    original = type(model).score
    monkeypatch.setattr(type(model), "score", lambda self, x: calls.append(x.shape) or original(self, x))
    per_video = score_videos(model, store, order, torch.device("cpu"), progress=False)
    assert len(calls) == len(order)  # on the CPU, by default, one forward per video
    calls.clear()
    monkeypatch.setattr(evaluate_mod, "MAX_BATCH_ELEMENTS", 2 * 32 * 70)  # <= 70 snippets per forward
    batched = score_videos(model, store, order, torch.device("cpu"), progress=False, batch_videos=True)
    assert list(batched) == order
    for vid in order:
        assert batched[vid].shape == (store.shape(vid)[1],)
        np.testing.assert_allclose(batched[vid], per_video[vid], rtol=1e-5, atol=1e-6)
    assert 1 < len(calls) < len(order) and max(s[2] for s in calls) <= 70


def test_scoring_reads_ahead_and_reports_bad_videos(test_store):
    store, ids = test_store

    class Probe(torch.nn.Module):
        feat_dim = 32

        def __init__(self):
            super().__init__()
            self.threads = set()

        def score(self, x):
            self.threads.add(threading.current_thread().name)
            return x.float().mean(dim=(1, 3))

    class Damaged:  # a store whose 4th video holds NaN (e.g. written by another tool)
        path = "damaged.zarr"

        def __getitem__(self, vid):
            a = store[vid].astype(np.float32)
            if vid == ids[3]:
                a[0, 0, 0] = np.nan
            return a

    out = score_videos(Probe(), store, ids, torch.device("cpu"), progress=False)
    np.testing.assert_allclose(out[ids[1]], store[ids[1]].astype(np.float32).mean(axis=(0, 2)), rtol=1e-6)
    with pytest.raises(FeatureError, match=rf"damaged\.zarr, video '{ids[3]}': 1 NaN"):
        score_videos(Probe(), Damaged(), ids, torch.device("cpu"), progress=False)
    assert not any(t.name.startswith("wsvad-read") for t in threading.enumerate())


# -- attention ---------------------------------------------------------------------------------

def test_s3r_fused_attention_equals_explicit_softmax():
    atoms = np.random.default_rng(0).standard_normal((12, 64)).astype(np.float32)
    model, _ = create_method("s3r", 64, dictionary=atoms)
    model.eval()
    x = torch.randn(2, 3, 50, 64)
    with torch.no_grad():
        video = x.reshape(6, 50, 64)
        fused, none = model.en_normal(video, model.dictionary)
        explicit, affinity = model.en_normal(video, model.dictionary, return_affinity=True)
        assert none is None and affinity.shape == (6, 50, 12)
        torch.testing.assert_close(fused, explicit, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(affinity.sum(-1), torch.ones(6, 50))
        a, b = model(x), model(x, return_affinity=True)
        torch.testing.assert_close(a["video_scores"], b["video_scores"])
        assert a["affinity"] is None and b["affinity"].shape == (6, 50, 12)
    # hard shrinkage needs the affinity itself: the explicit path, whatever is asked
    model.en_normal.shrink_thres = 0.05
    with torch.no_grad():
        _, aff = model.en_normal(video, model.dictionary)
    assert aff is not None and (aff == 0).any()
