"""SSRL, TimeSformer-MIL and UR-DMU + patch stage beyond the method contract
(test_method_contract.py): specs, official defaults, the stage schedules (and learning in every
stage), the per-process loss split, the focal term, and a run through the shared training and
evaluation code with a snippet store plus patch stores."""
from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch

from tiny_dag import TINY_PROTOCOL
from train_record import record_for
from wsvad_core.cards import cards
from wsvad_core.methods import create_method, get_method, make_optimizer
from wsvad_core.methods.timesformer_mil import binary_focal_loss
from wsvad_core.training.data import TrainingSet
from wsvad_core.training.loop import train

pytestmark = pytest.mark.usefixtures("one_thread")

NEW = ["ssrl", "timesformer_mil", "urdmu_patch"]
ANOMALY = slice(5, 8)


def toy(n: int, crops: int, T: int, D: int, abnormal: bool, g: torch.Generator, patches: int = 0):
    """Noise features; abnormal videos carry a shifted signal on snippets 5-7 in every crop and
    in the last two patches (the anomaly sits in one region of the frame)."""
    x = torch.randn(n, crops + patches, T, D, generator=g) * 0.5
    if abnormal:
        x[:, :crops, ANOMALY, : D // 2] += 2.0
        if patches:
            x[:, crops + patches - 2:, ANOMALY, : D // 2] += 2.0
    return x


def test_specs_and_backbone_kinds_agree():
    from wsvad_core.recipes import normalize_recipe

    by_kind = {}
    for b in cards().backbones.values():
        by_kind.setdefault(b.kind, []).append(b.name)
    for name in NEW:
        spec = get_method(name)
        grids = spec.hparams().patch_grids()
        assert spec.card().reads_patches == spec.reads_patches == bool(grids)
        for kind in spec.accepts:  # some backbone makes what the method accepts (and its patches)
            assert kind in by_kind
            for grid in grids:  # a patch_grid recipe on such a backbone makes the patch kind
                r = normalize_recipe({"backbone": by_kind[kind][0], "patch_grid": list(grid)})
                assert r["kind"] == kind + "_patch" and len(r["views"]) == grid[0] * grid[1]
    assert get_method("ssrl").accepts == ("i3d",) and get_method("timesformer_mil").accepts == ("timesformer",)


def test_official_defaults():
    hp = get_method("ssrl").hparams()
    assert (hp.batch_size, hp.ddp_world_size, hp.lr, hp.weight_decay, hp.optimizer) == (32, 8, 1e-3, 5e-3, "adam")
    assert hp.multi_patch_size == (23, 35, 47) and hp.patch_grids() == ((2, 3), (3, 5), (4, 7))
    assert hp.stage_steps is None and hp.max_steps == 600000 and hp.seed == 10
    model, _ = create_method("ssrl", 32)  # 4 equal stages of 150000 steps (stageN --max_epoch)
    assert model.stage_ends == [150000, 300000, 450000, 600000]
    assert get_method("ssrl").segment_policy == "meanpool" and hp.n_segments == 32
    t = get_method("timesformer_mil").hparams()
    assert (t.lambda_focal, t.lambda_smooth, t.lambda_sparse, t.l2_weight_reg) == (0.1, 0.1, 0.0, 0.0)
    u = get_method("urdmu_patch").hparams()
    assert (u.batch_size, u.lr, u.n_segments, u.max_steps) == (64, 1e-4, 200, 6000)
    assert create_method("urdmu_patch", 32)[0].stage_ends == [3000, 6000]


def test_ssrl_rejects_inconsistent_settings():
    with pytest.raises(ValueError, match="sum"):
        create_method("ssrl", 32, stage_steps=[1, 2, 3, 3], max_steps=10)
    with pytest.raises(ValueError, match="4 non-negative step counts"):
        create_method("ssrl", 32, stage_steps=[5, 5], max_steps=10)
    # max_steps alone: split over the stages, the remainder to the last
    assert create_method("ssrl", 32, max_steps=10)[0].stage_ends == [2, 4, 6, 10]
    with pytest.raises(ValueError, match="multiple of ddp_world_size"):
        create_method("ssrl", 32, stage_steps=[1, 1, 1, 1], max_steps=4, batch_size=6)
    model, _ = create_method("ssrl", 32, stage_steps=[1, 1, 1, 1], max_steps=4, batch_size=8)
    with pytest.raises(ValueError, match="crops"):
        model.score(torch.randn(1, 40, 5, 32))  # fewer than the 49 patches


def ssrl(dim: int = 16, **kw):
    kw = {"multi_patch_size": [12, 23], "stage_steps": [2, 2, 2], "max_steps": 6, "batch_size": 2,
          "ddp_world_size": 1, **kw}
    return create_method("ssrl", dim, **kw)


def test_ssrl_stage_schedule_freezes_and_trains_one_branch_at_a_time():
    model, hp = ssrl()
    g = torch.Generator().manual_seed(0)
    P = 2 + 6
    nor, abn = toy(4, 2, 16, 16, False, g, P), toy(4, 2, 16, 16, True, g, P)
    data = TrainingSet(nor.half(), abn.half(), [f"n{i}" for i in range(4)], [f"a{i}" for i in range(4)])
    snapshots = {}

    class Spy:  # records the weights at every stage change, through the shared loop
        def __init__(self, m):
            self.m = m
            self.orig = m.after_step

        def __call__(self):
            self.orig()
            snapshots[int(self.m.step)] = {k: v.clone() for k, v in self.m.state_dict().items()}

    model.after_step = Spy(model)
    opt = make_optimizer(model, hp)
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        train(model, hp, data, d, device=torch.device("cpu"), optimizer=opt, progress=False,
              record=record_for(hp, "ssrl", 16))
    s0 = create_method("ssrl", 16, **dataclasses.asdict(hp))[0].state_dict()

    def changed(a, b, prefix):
        return any(not torch.equal(a[k], b[k]) for k in a if k.startswith(prefix) and a[k].is_floating_point())

    # stage 1 (steps 1-2): clip aggregate and classifier learn, branches untouched
    assert changed(s0, snapshots[2], "aggregate_clip.") and changed(s0, snapshots[2], "classifier.")
    assert not changed(s0, snapshots[2], "aggregate_patch.") and not changed(s0, snapshots[2], "linear_out.")
    # stage 2 (steps 3-4): only branch 0 (grid 1x2) learns; frozen BatchNorm statistics too
    assert changed(snapshots[2], snapshots[4], "aggregate_patch.0.")
    assert changed(snapshots[2], snapshots[4], "linear_out.0.")
    assert not changed(snapshots[2], snapshots[4], "aggregate_clip.")
    assert not changed(snapshots[2], snapshots[4], "classifier.")
    assert not changed(snapshots[2], snapshots[4], "aggregate_patch.1.")
    # stage 3 (steps 5-6): only branch 1 (grid 2x3)
    assert changed(snapshots[4], snapshots[6], "patch_to_clip.1.")
    for frozen in ("aggregate_clip.", "classifier.", "aggregate_patch.0.", "patch_to_clip.0.", "linear_out.0."):
        assert not changed(snapshots[4], snapshots[6], frozen), frozen
    assert model.stage == 3 and int(model.step) == 6
    model.train()
    assert not model.aggregate_clip.training and not model.patch_to_clip[0].training
    assert model.patch_to_clip[1].training and model.drop_out.training


def test_ssrl_loss_is_the_mean_of_per_process_losses():
    model, _ = ssrl(batch_size=4, ddp_world_size=2)
    model.eval()  # no dropout: deterministic
    g = torch.Generator().manual_seed(1)
    nor, abn = toy(4, 2, 16, 16, False, g, 8), toy(4, 2, 16, 16, True, g, 8)
    whole = model.loss(nor, abn)
    halves = [model._process_loss(nor[i:i + 2], abn[i:i + 2]) for i in (0, 2)]
    for k in whole:
        torch.testing.assert_close(whole[k], (halves[0][k] + halves[1][k]) / 2)
    one_process = ssrl(batch_size=4)[0].eval()
    one_process.load_state_dict(model.state_dict())
    assert not torch.allclose(one_process.loss(nor, abn)["smoothness"], whole["smoothness"])


def test_focal_loss_by_hand():
    p, y = torch.tensor([0.9, 0.2, 0.6]), torch.tensor([1.0, 0.0, 0.0])
    ref = [-0.25 * 0.1 ** 2 * np.log(0.9), -0.75 * 0.2 ** 2 * np.log(0.8), -0.75 * 0.6 ** 2 * np.log(0.4)]
    assert binary_focal_loss(p, y, 2.0, 0.25).item() == pytest.approx(np.mean(ref), rel=1e-5)
    assert binary_focal_loss(p, y, 0.0, -1).item() == pytest.approx(
        torch.nn.functional.binary_cross_entropy(p, y).item(), rel=1e-5)


def test_timesformer_mil_terms_and_weights():
    model, hp = create_method("timesformer_mil", 16, batch_size=3, dropout=0.0)
    g = torch.Generator().manual_seed(2)
    nor, abn = toy(3, 1, 32, 16, False, g), toy(3, 1, 32, 16, True, g)
    out = model.loss(nor, abn)
    assert set(out) == {"loss", "ranking", "focal", "smoothness"}
    torch.testing.assert_close(out["loss"], out["ranking"] + out["focal"] + out["smoothness"])
    s = model.score(torch.cat([abn, nor]))
    bags = s.max(1).values
    ref = 0.1 * binary_focal_loss(bags, torch.tensor([1.0] * 3 + [0.0] * 3), 2.0, 0.25)
    torch.testing.assert_close(out["focal"], ref)
    torch.testing.assert_close(out["smoothness"], 0.1 * ((s[:3, 1:] - s[:3, :-1]) ** 2).sum())


def _fit(model, hp, steps, crops, T, D, patches=0, seed=0):
    torch.manual_seed(seed)
    opt = make_optimizer(model, hp)
    g = torch.Generator().manual_seed(seed)
    losses = []
    for _ in range(steps):
        model.train()
        out = model.loss(toy(hp.batch_size, crops, T, D, False, g, patches),
                         toy(hp.batch_size, crops, T, D, True, g, patches))
        opt.zero_grad(set_to_none=True)
        out["loss"].backward()
        opt.step()
        model.after_step()
        losses.append(out["loss"].item())
    nor = model.score(toy(6, crops, T, D, False, g, patches))
    abn = model.score(toy(6, crops, T, D, True, g, patches))
    return losses, nor, abn


@pytest.mark.parametrize("name", ["ssrl", "urdmu_patch"])
def test_learns_toy_problem_in_every_stage(name):
    # small dims and few steps: the suite runs on 2 shared cores
    if name == "ssrl":  # stage 1 then one patch stage
        model, hp = ssrl(dim=32, multi_patch_size=[12], stage_steps=[50, 10], max_steps=60,
                         batch_size=4, n_segments=16, hidden1=32, hidden2=16, dropout=0.2)
        losses, nor, abn = _fit(model, hp, 60, 1, 16, 32, patches=2)
        stage_losses = [losses[:10], losses[30:40]]
        assert model.stage == 2
    else:  # stage 1 (UR-DMU) then the patch stage, each must learn
        model, hp = create_method(name, 16, batch_size=4, stage_steps=[30, 30], max_steps=60,
                                  n_segments=16, width=16, dim_head=4, heads=2, mlp_dim=16,
                                  cls_hidden=8, a_nums=4, n_nums=4, lr=3e-3, patch_grid=[1, 2],
                                  patch_heads=2)
        losses, nor, abn = _fit(model, hp, 60, 1, 16, 16, patches=2)
        assert np.mean(losses[-10:]) < np.mean(losses[30:40]), "the patch stage does not learn"
        stage_losses = [losses[:10], losses[20:30]]
    assert np.mean(stage_losses[1]) < 0.9 * np.mean(stage_losses[0])
    assert ((nor >= 0) & (nor <= 1)).all() and ((abn >= 0) & (abn <= 1)).all()
    assert abn[:, ANOMALY].mean() > nor.mean() + 0.2


def test_urdmu_patch_stage_two_leaves_stage_one_alone():
    model, hp = create_method("urdmu_patch", 16, batch_size=2, stage_steps=[1, 3], max_steps=4,
                              n_segments=16, width=16, dim_head=4, mlp_dim=16, cls_hidden=8,
                              a_nums=4, n_nums=4, patch_grid=[1, 2])
    g = torch.Generator().manual_seed(3)
    nor, abn = toy(2, 1, 16, 16, False, g, 2), toy(2, 1, 16, 16, True, g, 2)
    assert set(model.loss(nor, abn)) >= {"video_bce", "memory"}  # stage 1 = UR-DMU's own loss
    model.after_step()
    model.train()
    assert model.stage == 2 and not model.stage1.training
    out = model.loss(nor, abn)
    assert set(out) == {"loss", "patch_video_bce", "patch_normal", "patch_align"}
    out["loss"].backward()
    assert all(p.grad is None for p in model.stage1.parameters())
    assert model.cross.to_q.weight.grad is not None
    # final score = fusion of the stage-1 score and the best cell's score
    model.eval()
    x = torch.cat([nor[:1], abn[:1]])
    s1 = model.stage1.test_forward(x[:, 0])
    _, sp = model.patch_scores(x[:, 0], x[:, 1:])
    torch.testing.assert_close(model.score(x), 0.5 * s1 + 0.5 * sp.max(1).values)


def test_run_training_and_evaluation_with_patch_stores(tmp_path):
    """The train and evaluate stages with one snippet store and two patch stores (one unused):
    the run stacks the store of its grid, the checkpoint names it, evaluation re-opens it."""
    from wsvad_core.evaluation.run import run_evaluation
    from wsvad_core.features.store import finalize_store, write_video_array
    from wsvad_core.training.run import run_training

    g = torch.Generator().manual_seed(4)
    rows, gt = [], {}
    stores = {"s": (1, "i3d", None), "p12": (2, "i3d_patch", [1, 2]), "p21": (2, "i3d_patch", [2, 1]),
              "other": (2, "i3d_patch", [1, 2])}
    arrays = {k: {} for k in stores}
    for i in range(12):
        label, split = i % 2, "train" if i < 8 else "test"
        vid = f"v{i}"
        x = toy(1, 1, 8, 16, bool(label), g, patches=2)[0].numpy()
        arrays["s"][vid], arrays["p12"][vid] = x[:1], x[1:]
        arrays["p21"][vid] = x[1:] * 0
        arrays["other"][vid] = x[1:]
        rows.append({"video_id": vid, "path": f"/videos/{vid}.mp4", "split": split, "label": label,
                     "class": "Abuse" if label else "Normal", "n_frames": 128, "fps": 25.0})
        if split == "test":
            gt[vid] = np.zeros(8 * 16, dtype=np.uint8)
            if label:
                gt[vid][5 * 16:8 * 16] = 1
    for name, (_crops, kind, grid) in stores.items():
        for vid, a in arrays[name].items():
            write_video_array(tmp_path / f"{name}.zarr", vid, a, {})
        # "other": patches of another network (family) than the snippet features
        family = "kinetics_i3d" if name == "other" else "rtfm_i3d_r50"
        recipe = {"kind": kind, "family": family, "name": name, **({"patch_grid": grid} if grid else {})}
        finalize_store(tmp_path / f"{name}.zarr", {"recipe": recipe, "kind": kind, "family": family})
    pd.DataFrame(rows).to_csv(tmp_path / "manifest.csv", index=False)
    np.savez(tmp_path / "gt.npz", __order__=np.array(list(gt)), **gt)
    overrides = {"multi_patch_size": [12], "stage_steps": [3, 2], "max_steps": 5, "batch_size": 2,
                 "ddp_world_size": 1}
    run_training(method="ssrl", manifest=tmp_path / "manifest.csv", store=tmp_path / "s.zarr",
                 run_dir=tmp_path / "run", seed=0, overrides=overrides, progress=False,
                 patch_stores=[tmp_path / "p21.zarr", tmp_path / "p12.zarr"])
    state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)
    assert state["patch_stores"] == [str(tmp_path / "p12.zarr")]
    assert int(state["model"]["step"]) == 5
    m = run_evaluation(checkpoint=tmp_path / "run" / "checkpoint.pt", manifest=tmp_path / "manifest.csv",
                       store=tmp_path / "s.zarr", ground_truth=tmp_path / "gt.npz",
                       scores_out=tmp_path / "run" / "scores.npz", metrics_out=tmp_path / "run" / "m.json",
                       protocol={**TINY_PROTOCOL, "clip_len": 16}, progress=False)
    assert m["n_test_videos"] == 4 and 0 <= m["auc"] <= 1
    with pytest.raises(Exception, match=r"patch_grid \[1, 2\]"):
        run_training(method="ssrl", manifest=tmp_path / "manifest.csv", store=tmp_path / "s.zarr",
                     run_dir=tmp_path / "run2", seed=0, overrides=overrides, progress=False,
                     patch_stores=[tmp_path / "p21.zarr"])
    # the grid's store must hold patches of the snippet features' family
    with pytest.raises(Exception, match="of family 'kinetics_i3d', the snippet store of family 'rtfm_i3d_r50'"):
        run_training(method="ssrl", manifest=tmp_path / "manifest.csv", store=tmp_path / "s.zarr",
                     run_dir=tmp_path / "run3", seed=0, overrides=overrides, progress=False,
                     patch_stores=[tmp_path / "other.zarr"])
