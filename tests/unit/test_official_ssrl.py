"""SSRL reproduces the official nutuniv/SSRL model: official random weights loaded through
``load_official_state_dict`` give the official scores and training cost (fixtures and how they
were made: tests/fixtures/ssrl/README.md)."""
import pytest
import torch

from official_fixtures import TOL, official_model, torch_fixture

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def io():
    return torch_fixture("ssrl", "io.pt", weights_only=True)


def _model(io, stage: int):
    # stage 1 alone (no patch grids) or all four stages with the official grids
    grids = [] if stage == 1 else [23, 35, 47]
    steps = [1] * (len(grids) + 1)
    state = torch_fixture("ssrl", f"stage{stage}_state_dict.pt", weights_only=True)
    # the stage counter is not in an official checkpoint
    model = official_model("ssrl", io["D"], state, expect_missing=["step"],
                           multi_patch_size=grids, stage_steps=steps, max_steps=sum(steps),
                           batch_size=io["B"], ddp_world_size=1, n_segments=io["T"])
    model.step.fill_(sum(steps))  # trained through every stage: all branches in use
    model.load_state_dict(model.state_dict())
    assert model.stage == stage
    return model.eval()


@pytest.mark.parametrize("stage", [1, 4])
def test_scores_match_official(io, stage):
    model = _model(io, stage)
    x = io["x"] if stage == 4 else io["x"][:, :10]
    scores = model.score(x)  # one video at a time, eval mode
    torch.testing.assert_close(scores, io[f"scores_stage{stage}"], **TOL)


@pytest.mark.parametrize("stage", [1, 4])
def test_training_cost_matches_official(io, stage):
    model = _model(io, stage)
    x = io["x"] if stage == 4 else io["x"][:, :10]
    B = io["B"]
    with torch.no_grad():
        terms = model.loss(x[:B], x[B:])  # eval mode: the dropout mask is off, as in the fixture
    torch.testing.assert_close(terms["loss"], io[f"loss_stage{stage}"], **TOL)
    parts = sum(v for k, v in terms.items() if k != "loss")
    torch.testing.assert_close(parts, terms["loss"], rtol=0, atol=1e-6)


def test_patch_branches_change_the_scores(io):
    # the fixture's stage-4 scores differ from what the clip stage alone gives: the patch
    # branches (and their mapping) are exercised, not bypassed
    model = _model(io, 4)
    with torch.no_grad():
        clip_only = model.forward(io["x"], n_branches=0)[1]
    assert (clip_only - io["scores_stage4"]).abs().max() > 1e-3
