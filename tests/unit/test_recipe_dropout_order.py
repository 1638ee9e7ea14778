"""Seed for seed: with dropout on, ``torch.manual_seed(s)`` before ``model.loss`` gives the
official training cost, because the random masks are drawn in the official order (the forward's
dropouts, then the top-k selection mask of the abnormal half, then the normal half's; RTFM
model.py, S3R detector.py, SSRL model.py, CLIP-TSA model.py, MGFN models/mgfn.py ``MSNSD``).

The official losses (tests/fixtures/<method>/dropout_seed_loss.json) were computed by running the
official code outside this repository on each folder's equivalence-fixture weights and batch
(README.md there, section "Official loss with dropout under a seed")."""
import json

import numpy as np
import pytest
import torch

from official_fixtures import FIXTURES, npz_fixture, official_model, torch_fixture

pytestmark = pytest.mark.usefixtures("one_thread")

TOL = 1e-5


def _official(method: str) -> dict:
    return json.loads((FIXTURES / method / "dropout_seed_loss.json").read_text())


def _npz_case(method: str):
    meta, io, state = npz_fixture(method)
    extra, missing = {}, []
    if method == "s3r":  # the dictionary comes from its own .npy, not the checkpoint
        extra, missing = {"dictionary": io["dictionary"]}, ["dictionary"]
    model = official_model(method, meta["feat_dim"], state, expect_missing=missing,
                           **meta["overrides"], **extra)
    x = torch.from_numpy(io["x_train"].astype(np.float32))
    B = meta["batch_per_class"]
    return model, x[:B], x[B:], _official(method)["loss"]


def _ssrl_case(stage: int):
    io = torch_fixture("ssrl", "io.pt", weights_only=True)
    grids = [] if stage == 1 else [23, 35, 47]
    steps = [1] * (len(grids) + 1)
    state = torch_fixture("ssrl", f"stage{stage}_state_dict.pt", weights_only=True)
    # one process (the fixture's official run is single-process), batch 2 + 2
    model = official_model("ssrl", io["D"], state, expect_missing=["step"],
                           multi_patch_size=grids, stage_steps=steps, max_steps=sum(steps),
                           batch_size=io["B"], ddp_world_size=1, n_segments=io["T"])
    model.step.fill_(sum(steps))
    model.load_state_dict(model.state_dict())  # re-applies the stage
    # stage 4 trains as train.py --train_part: the clip Aggregate and branches 0, 1 in eval mode
    assert model.stage == stage
    x = io["x"] if stage == 4 else io["x"][:, :10]
    B = io["B"]
    return model, x[:B], x[B:], _official("ssrl")[f"loss_stage{stage}"]


def _cliptsa_case():
    f = torch_fixture("cliptsa", "official.pt")
    model = official_model("cliptsa", f["feat_dim"], f["state_dict"], seed=f["seed"])
    B = f["batch_size"]
    return model, f["batch"][:B], f["batch"][B:], _official("cliptsa")["loss"]


CASES = {
    "rtfm": lambda: _npz_case("rtfm"),
    "s3r": lambda: _npz_case("s3r"),
    "mgfn": lambda: _npz_case("mgfn"),
    "ssrl_stage1": lambda: _ssrl_case(1),
    "ssrl_stage4": lambda: _ssrl_case(4),
    "cliptsa": _cliptsa_case,
}


@pytest.mark.parametrize("case", CASES)
def test_seeded_loss_with_dropout_is_the_official_one(case):
    model, normal, abnormal, official = CASES[case]()
    model.train()
    got = []
    for seed in (0, 1, 2):
        torch.manual_seed(seed)
        with torch.no_grad():
            got.append(float(model.loss(normal, abnormal)["loss"]))
    diff = [abs(g - o) for g, o in zip(got, official)]
    assert max(diff) <= TOL, f"{case}: wsvad {got} vs official {official}"
