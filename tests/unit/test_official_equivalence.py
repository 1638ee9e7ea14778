"""RTFM, S3R, MGFN, UR-DMU and BN-WVAD reproduce their official modules: each official module,
run outside this repository on its own random weights (tests/fixtures/<method>/README.md), gave
the eval-mode scores of a multi-crop test video and a training loss; those weights, loaded
through wsvad's name mapping, give the same at 1e-5.

Fixtures: meta.json (feat_dim, overrides, batch_per_class, ...), io.npz (inputs and official
outputs), official_state_dict.pt. What differs between methods is the table ``CASES``."""

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pytest
import torch

from official_fixtures import TOL, npz_fixture, official_model

pytestmark = pytest.mark.usefixtures("one_thread")


@dataclass(frozen=True)
class Case:
    # (our loss key, fixture key, factor on the fixture value, tolerance): the official loss
    # terms, some of which the official code weights after logging them (factor)
    loss_terms: tuple
    # training-mode overrides matching how the fixture's loss was made (e.g. dropout 0)
    train_overrides: dict = field(default_factory=dict)
    score_key: str = "scores_test"
    # official test output -> our [0, 1] score (None: the same)
    score_of_official: Callable | None = None
    # io.npz key of the method's dictionary: it is not in the checkpoint (its own .npy)
    dictionary_key: str | None = None
    # (our state-dict key, official key): tensors the name mapping must carry over; when given,
    # the official state dict must also cover every entry of ours
    same_tensors: tuple = ()
    # method-specific checks after the shared ones: (model, io, x) with x the test input / the
    # training batch (normal videos first)
    check_scores: Callable | None = None
    check_train: Callable | None = None


def _bnwvad_raw_scores(model, io, x):
    # raw_score is the official output, before the s / (1 + s) map
    torch.testing.assert_close(model.raw_score(x)[0], torch.from_numpy(io["raw_scores_test"]),
                               **TOL)


def _bnwvad_bn_statistics(model, io, x):
    # the training forward leaves the official BatchNorm running statistics behind
    for i, bn in enumerate(model.normal_head.bns):
        for stat in ("running_mean", "running_var"):
            torch.testing.assert_close(getattr(bn, stat), torch.from_numpy(io[f"{stat}_{i}"]),
                                       **TOL)


def _s3r_macro_scores(model, io, x):
    macro = model.forward(x)["macro_scores"]
    torch.testing.assert_close(macro.detach(), torch.from_numpy(io["macro_scores"]), **TOL)


def _mgfn_train_scores(model, io, x):
    _, scores = model(x)
    torch.testing.assert_close(scores.detach(), torch.from_numpy(io["train_scores"]), **TOL)


CASES = {
    # dropout 0: the fixture's loss was made with model.drop_out p = 0
    "rtfm": Case(loss_terms=(("loss", "loss_total", 1.0, TOL),
                             ("smoothness", "loss_smooth", 1.0, TOL),
                             ("sparsity", "loss_sparse", 1.0, TOL)),
                 train_overrides={"dropout": 0.0}),
    # every dropout 0; the dictionary atoms come from their own .npy, not the checkpoint
    "s3r": Case(loss_terms=(("loss", "loss_total", 1.0, TOL),
                            ("macro", "loss_macro", 1.0, TOL)),
                train_overrides={"dropout": 0.0}, dictionary_key="dictionary",
                check_train=_s3r_macro_scores),
    # the fixture's selection dropout p = 0. The small terms relative to their size: sparsity on
    # the abnormal instead of the normal videos' scores differs by only 5e-6 on these random
    # weights (all scores near 0.5)
    "mgfn": Case(loss_terms=(("loss", "loss_total", 1.0, TOL),
                             ("smoothness", "loss_smooth", 1.0, dict(rtol=1e-5, atol=0)),
                             ("sparsity", "loss_sparse", 1.0, dict(rtol=1e-5, atol=0))),
                 train_overrides={"dropout": 0.0}, check_train=_mgfn_train_scores,
                 same_tensors=(("stages.0.blocks.0.attn.to_qkv.weight",
                                "stages.0.0.layers.0.1.to_qkv.weight"),
                               ("stages.1.blocks.2.attn.rel_pos.weight",
                                "stages.1.0.layers.2.1.rel_pos.weight"))),
    # train mode with dropout 0.5: torch.manual_seed(meta["train_seed"]) gives the official
    # dropout masks and reparameterisation noise; train.py logs triplet and kl before weighting
    "urdmu": Case(loss_terms=(("loss", "loss_total_loss", 1.0, TOL),
                              ("video_bce", "loss_att_loss", 1.0, TOL),
                              ("triplet", "loss_triplet", 0.1, TOL),
                              ("kl", "loss_kl_loss", 1e-3, TOL)),
                  same_tensors=(("abnormal_memory.memory_block", "Amemory.memory_block"),
                                ("cls_head.2.weight", "cls_head.mlp.2.weight"))),
    # official test output DFM x normal score; the pipeline's [0, 1] score is the increasing
    # map s / (1 + s) of it
    "bnwvad": Case(loss_terms=(("loss", "loss_total", 1.0, TOL),
                               ("normal", "loss_normal", 1.0, TOL),
                               ("mpp", "loss_mpp", 1.0, TOL)),
                   score_key="raw_scores_test", score_of_official=lambda s: s / (1 + s),
                   check_scores=_bnwvad_raw_scores, check_train=_bnwvad_bn_statistics,
                   same_tensors=(("normal_head.bn2.running_var",
                                  "normal_head.bn2.running_var"),)),
}


def _model(method: str, **overrides):
    meta, io, state = npz_fixture(method)
    key = CASES[method].dictionary_key
    if key is not None:
        overrides = {**overrides, "dictionary": io[key]}
    return official_model(method, meta["feat_dim"], state,
                          expect_missing=["dictionary"] if key else [],
                          **meta["overrides"], **overrides)


def _tensor(a: np.ndarray, add_axis: int) -> torch.Tensor:
    """float32 tensor; per-crop fixtures (UR-DMU, BN-WVAD) hold one video's (C, T, D) crops and
    (N, T, D) per-crop training samples, which get the missing video / crop axis."""
    x = torch.from_numpy(a.astype(np.float32))
    return x.unsqueeze(add_axis) if x.ndim == 3 else x


@pytest.mark.parametrize("method", [m for m, c in CASES.items() if c.same_tensors])
def test_official_names_cover_every_parameter(method):
    _, _, state = npz_fixture(method)
    model = _model(method)
    ours = model.state_dict()
    assert len(state) == len(ours)
    for our_key, official_key in CASES[method].same_tensors:
        torch.testing.assert_close(ours[our_key], state[official_key])


@pytest.mark.parametrize("method", CASES)
def test_scores_match_official(method):
    case = CASES[method]
    _, io, _ = npz_fixture(method)
    model = _model(method)
    x = _tensor(io["x_test"], 0)  # (1 video, C crops, T, D)
    official = torch.from_numpy(io[case.score_key])
    if case.score_of_official is not None:
        official = case.score_of_official(official)
    torch.testing.assert_close(model.score(x)[0], official, **TOL)
    if case.check_scores:
        case.check_scores(model, io, x)


@pytest.mark.parametrize("method", CASES)
def test_training_loss_matches_official(method):
    case = CASES[method]
    meta, io, _ = npz_fixture(method)
    model = _model(method, **case.train_overrides)
    model.train()
    x = _tensor(io["x_train"], 1)  # (2B, C, S, D), normal videos first
    B = meta["batch_per_class"]
    if "train_seed" in meta:
        torch.manual_seed(meta["train_seed"])  # same dropout masks and sampling noise
    out = model.loss(x[:B], x[B:])
    for key, official, factor, tol in case.loss_terms:
        torch.testing.assert_close(out[key].detach(), torch.tensor(factor * float(io[official])),
                                   **tol)
    if case.check_train:
        case.check_train(model, io, x)
