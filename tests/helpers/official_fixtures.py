"""What the official-equivalence tests (tests/unit/test_official_*.py) share: reading the fixtures
under tests/fixtures/<method>/ (how each was made: its README.md) and building a method that
carries the official weights through wsvad's name mapping."""

import functools
import json
from pathlib import Path

import numpy as np
import torch

from wsvad_core.methods import create_method, get_method, load_official

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
TOL = dict(atol=1e-5, rtol=0)


@functools.cache
def npz_fixture(method: str) -> tuple[dict, dict, dict]:
    """``(meta, io, state)`` from meta.json, io.npz and official_state_dict.pt (read once per
    session; the tests only read them)."""
    folder = FIXTURES / method
    meta = json.loads((folder / "meta.json").read_text())
    with np.load(folder / "io.npz") as npz:
        io = {k: npz[k] for k in npz.files}
    state = torch.load(folder / "official_state_dict.pt", weights_only=True)
    return meta, io, state


def torch_fixture(method: str, name: str, weights_only: bool = False):
    """A fixture saved with torch.save (tests/fixtures/<method>/<name>)."""
    return torch.load(FIXTURES / method / name, weights_only=weights_only)


def official_model(method: str, feat_dim: int, state, expect_missing=(), **kwargs):
    """``create_method(method, feat_dim, **kwargs)`` with the official ``state`` loaded; only the
    keys in ``expect_missing`` may be absent from it, and it may hold nothing the model lacks."""
    model, _ = create_method(method, feat_dim, **kwargs)
    missing, unexpected = load_official(get_method(method), model, state)
    assert missing == list(expect_missing) and unexpected == []
    return model
