"""Same config and seed on the CPU -> identical features and an identical metrics.json; another
seed -> other numbers (so the comparison can fail). GPU behaviour: docs/errors.md."""
from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from tiny_dag import TINY_RECIPE, tiny_dataset, tiny_run, tiny_store
from wsvad_core.device import select_device
from wsvad_core.features.extract import extract_videos
from wsvad_core.features.store import open_store


def unmerged_array(store_dir, video_id) -> np.ndarray:
    """An array of a store no merge has finalised yet."""
    import zarr

    return zarr.open_array(str(store_dir / video_id), mode="r")[...]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("det")
    ds = tiny_dataset(root)
    return ds, tiny_store(ds, root / "a.zarr"), root


def test_extraction_is_repeatable(tiny):
    import pandas as pd

    ds, store, root = tiny
    rows = pd.read_csv(ds["manifest"], dtype={"video_id": str}).head(2).to_dict("records")
    extract_videos(rows, TINY_RECIPE, root / "b", "cpu", progress=False)  # a second backbone from the recipe
    a = open_store(store)
    for row in rows:
        again = unmerged_array(root / "b", row["video_id"])
        assert np.array_equal(a[row["video_id"]], again), row["video_id"]



def test_same_seed_same_metrics_other_seed_other_metrics(tiny):
    ds, store, root = tiny
    first = tiny_run(ds, store, root / "run0a", seed=0).read_bytes()
    second = tiny_run(ds, store, root / "run0b", seed=0).read_bytes()
    assert first == second  # byte for byte: every metric, every digit
    ckpt = [torch.load(root / r / "checkpoint.pt", weights_only=False)["model"] for r in ("run0a", "run0b")]
    assert all(torch.equal(ckpt[0][k], ckpt[1][k]) for k in ckpt[0])
    other = tiny_run(ds, store, root / "run1", seed=1).read_bytes()
    assert other != first
    with np.load(root / "run0a" / "scores.npz") as a, np.load(root / "run1" / "scores.npz") as b:
        assert any(not np.array_equal(a[k], b[k]) for k in a.files if k.startswith("snippet/"))


def test_deterministic_mode_switch(monkeypatch):
    """$WSVAD_DETERMINISTIC=1 turns on what GPU repeatability needs (set before CUDA starts)."""
    before = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
              torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic,
              torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    monkeypatch.setenv("WSVAD_DETERMINISTIC", "1")
    try:
        assert select_device(prefer="cpu").type == "cpu"
        assert torch.are_deterministic_algorithms_enabled()
        assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
        assert not torch.backends.cudnn.allow_tf32 and not torch.backends.cuda.matmul.allow_tf32
        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
    finally:
        torch.use_deterministic_algorithms(before[0], warn_only=before[1])
        (torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic,
         torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32) = before[2:]
