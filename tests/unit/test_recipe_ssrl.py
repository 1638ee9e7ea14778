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


def _bn_buffers(model) -> dict:
    return {k: v.clone() for k, v in model.state_dict().items()
            if k.endswith(("running_mean", "running_var", "num_batches_tracked"))}


@pytest.mark.parametrize("stage", [1, 2])
def test_ddp_emulation_keeps_the_first_process_batchnorm_statistics(stage):
    """Official DDP (main.py:76, ``DistributedDataParallel`` with its default
    ``broadcast_buffers=True``) overwrites every process's buffers with rank 0's before each
    forward, and rank 0 saves the checkpoint (main.py:125-133): the BatchNorm statistics take one
    momentum update per step, from rank 0's sub-batch. Reference: the single-process forward
    (the official forward, tests/test_official_ssrl.py) on the first sub-batch only."""
    D, world, per = 32, 8, 2
    common = dict(multi_patch_size=[23], stage_steps=[5, 5], max_steps=10, n_segments=8, seed=3)
    model, _ = create_method("ssrl", D, batch_size=world * per, ddp_world_size=world, **common)
    ref, _ = create_method("ssrl", D, batch_size=per, ddp_world_size=1, **common)
    for m in (model, ref):  # stage 2: the clip Aggregate is frozen (eval), the 2x3 branch learns
        m.step.fill_(0 if stage == 1 else 5)
        m.load_state_dict(m.state_dict())
        assert m.stage == stage
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2 * world * per, 10 + 6, 8, D, generator=g)
    x[world * per:] *= 1.5
    normal, abnormal = x[:world * per], x[world * per:]

    initial = _bn_buffers(model)
    model.train()
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    torch.manual_seed(0)
    model.loss(normal, abnormal)["loss"].backward()
    opt.step()

    ref.train()
    torch.manual_seed(0)
    with torch.no_grad():
        ref.loss(normal[:per], abnormal[:per])

    got, want = _bn_buffers(model), _bn_buffers(ref)
    assert got.keys() == want.keys() and len(got) > 0
    updated = [k for k in got if k.endswith("running_var") and not torch.equal(got[k], initial[k])]
    assert updated  # the training BatchNorms did update (stage 2: the 2x3 branch's only)
    assert all(k.startswith("aggregate_patch.0.") or k.startswith("patch_to_clip.0.")
               for k in updated) == (stage == 2)
    for k in got:
        torch.testing.assert_close(got[k], want[k], rtol=0, atol=1e-6, msg=lambda m, k=k: f"{k}: {m}")
