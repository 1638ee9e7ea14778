"""SSRL's official recipe: released checkpoints of any stage load into the default model (the
stage comes from the branches the checkpoint holds) and score like the official model; the
8-process DDP emulation keeps one process's BatchNorm statistics per step, as DDP does.

Fixtures: tests/fixtures/ssrl (README.md there): official stage-1 and stage-4 state dicts at
D = 32 and the official scores of ``io.pt["x"]``."""
import pytest
import torch
from official_fixtures import TOL, torch_fixture

from wsvad_core.methods import create_method, get_method, load_official

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def io():
    return torch_fixture("ssrl", "io.pt", weights_only=True)


def _state(stage: int) -> dict:
    return torch_fixture("ssrl", f"stage{stage}_state_dict.pt", weights_only=True)


def _default_model(io):
    # no overrides: the official grids 23, 35, 47 and 4 stages (only the fixture's small dim)
    model, hp = create_method("ssrl", io["D"])
    assert hp.multi_patch_size == (23, 35, 47)
    return model


@pytest.mark.parametrize("stage", [1, 4])
def test_official_checkpoint_of_either_stage_loads_and_scores_as_official(io, stage):
    model = _default_model(io)
    missing, unexpected = load_official(get_method("ssrl"), model, _state(stage))
    assert unexpected == []
    assert model.stage == stage  # inferred from the branch keys the checkpoint holds
    # the pipeline feeds the snippet crops followed by every grid's patches; a stage-1 model
    # reads only the snippet crops
    torch.testing.assert_close(model.score(io["x"]), io[f"scores_stage{stage}"], **TOL)


def test_stage_follows_the_number_of_branches(io):
    # a stage-3 checkpoint = the stage-4 one without its last branch
    state = {k: v for k, v in _state(4).items() if not any(
        k.startswith(f"{p}.2.") for p in ("Aggregate_patch", "patch_to_clip", "linear_out"))}
    model = _default_model(io)
    load_official(get_method("ssrl"), model, state)
    assert model.stage == 3
    with torch.no_grad():
        two_branches = model.eval().forward(io["x"], n_branches=2)[1]
    torch.testing.assert_close(model.score(io["x"]), two_branches, **TOL)


def test_checkpoint_with_a_gap_in_its_branches_is_refused(io):
    state = {k: v for k, v in _state(4).items() if not any(
        k.startswith(f"{p}.0.") for p in ("Aggregate_patch", "patch_to_clip", "linear_out"))}
    with pytest.raises(KeyError, match="branch"):
        load_official(get_method("ssrl"), _default_model(io), state)
