"""The contract every registered method keeps, tested over ``list_methods()`` (a method is tested
the day it is registered, as timm's ``tests/test_models.py`` does for its models): scores of a
multi-crop video, the loss dict, learning on a separable toy batch with the method's own
optimizer, scoring a long video within bounded memory, bad inputs; and every method's card.
What a single method does beyond the contract (official defaults, stages, clipping, text towers,
crop handling of its official test code): test_methods_*.py; equivalence with the official code:
test_official_*.py."""
from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from wsvad_core.cards import HParam, check_hparams, hparam_specs, method_card
from wsvad_core.data.segments import POLICIES
from wsvad_core.methods import create_method, get_method, list_methods, make_optimizer, resolve_hparams
from wsvad_core.methods.base import WSVADModel
from wsvad_core.methods.staged import StagedModel

pytestmark = pytest.mark.usefixtures("one_thread")

METHODS = list_methods()
D = 64  # feature dim: small, and divisible by what the methods need (S3R: 32, SSRL: 8)
CLASSES = ("Normal", "Explosion", "Fighting")
TEXT = dict(text_width=32, text_heads=2, text_layers=1)
# Small widths, fewer segments and one patch grid where the official values make a test slow
# (2048-d-sized stages, 200-256 segments, a 12-layer CLIP text tower, 8 DDP processes, 3 grids);
# the architecture code is the official one.
SMALL = {
    "mgfn": {"dims": (16, 32, 32), "dim_head": 16, "head_width": 16},
    "rtfm": {"aggregate_inner": 64},
    "urdmu": {"width": 32, "dim_head": 8, "mlp_dim": 32, "n_segments": 32},
    "bnwvad": {"width": 64, "dim_head": 16, "mlp_dim": 64, "n_segments": 32},
    "urdmu_patch": {"width": 16, "dim_head": 4, "heads": 2, "mlp_dim": 16, "cls_hidden": 8, "a_nums": 4,
                    "n_nums": 4, "patch_grid": (1, 2), "patch_heads": 2, "n_segments": 32},
    "ssrl": {"multi_patch_size": (12,), "ddp_world_size": 1},
    "vadclip": {**TEXT, "class_names": CLASSES, "n_segments": 32},
    "tpwng": {**TEXT, "class_names": CLASSES, "n_segments": 32, "tcsal_heads": 4},
    "gsmoe": {"class_names": CLASSES, "n_segments": 32},
    # a 1-block text tower takes one adapted block (official 3); 2 of the 8 prototype blocks
    "dsanet": {**TEXT, "text_adapt_until": 1, "class_names": CLASSES, "n_segments": 32,
               "decoder_depth": 2, "num_prototypes": 4},
}
# What lets 100 steps on a 64-d toy problem show learning (the official values target 1024-4096-d
# features and thousands of steps): Adagrad / Adam at the official 1e-4..2e-5 barely move in 100
# steps; dropout 0.7 (RTFM, S3R, CLIP-TSA, SSRL) drowns heads that scale with D (16, 4 units at D=64)
TOY = {
    "mil": {"lr": 1e-2},
    "rtfm": {"dropout": 0.2},
    "s3r": {"dropout": 0.2},
    "urdmu": {"lr": 1e-3},
    "bnwvad": {"lr": 1e-3},
    "cliptsa": {"lr": 1e-3, "weight_decay": 0.0, "dropout": 0.2},
    "vadclip": {"lr": 1e-3, "weight_decay": 0.0},
    "tpwng": {"lr": 1e-3, "weight_decay": 0.0},
    "gsmoe": {"lr": 1e-3, "weight_decay": 0.0},
    "ssrl": {"dropout": 0.2, "hidden1": 32, "hidden2": 16},
    "timesformer_mil": {"lr": 3e-2, "hidden1": 32, "dropout": 0.2},
    "urdmu_patch": {"lr": 3e-3},
    "dsanet": {"lr": 1e-3, "weight_decay": 0.0},
    # the official test-time smoothing (mean over the next 7 scores) spreads the toy's isolated
    # anomalous snippets over their neighbours: the contract reads the unsmoothed snippet scores
    "pel4vad": {"lr": 1e-3, "smooth": "none"},
}
ANOMALY = [5, 6, 7, 20]  # the anomalous snippets of an abnormal toy video
LONG_T = 3000  # > 2048: UR-DMU / BN-WVAD switch to the banded DSA kernel
LONG_VIDEO_MB = 256  # peak memory allowed above the input for scoring it (measured: <= 80 MB)


def make(name: str, **overrides):
    spec = get_method(name)
    atoms = np.random.default_rng(0).normal(size=(5, D)).astype(np.float32) if spec.needs_dictionary else None
    return create_method(name, D, dictionary=atoms, **{**SMALL.get(name, {}), **overrides})


def n_patches(hp) -> int:
    """Patch crops a method reads after its snippet crops (reads_patches methods)."""
    return sum(r * c for r, c in hp.patch_grids())


def toy(B: int, C: int, S: int, g: torch.Generator, abnormal: bool, classes=None) -> torch.Tensor:
    """Gaussian snippets; abnormal videos get +3 on snippets ANOMALY, on the 8 dims of their class
    (class 1 when the method is not class-aware), in every crop and patch."""
    x = torch.randn(B, C, S, D, generator=g)
    if abnormal:
        for i in range(B):
            c = 1 if classes is None else int(classes[i])
            x[i, :, ANOMALY, 8 * c:8 * c + 8] += 3.0
    return x


def class_kw(name: str, classes: torch.Tensor) -> dict:
    return {"abnormal_classes": classes} if get_method(name).needs_class_labels else {}


def peak_mb_above_now(fn):
    """(result of fn(), peak resident memory during it above the memory before it, MB), from
    /proc/self (Linux: writing 5 to clear_refs resets the peak)."""
    def status(key: str) -> float:
        return int(re.search(rf"{key}:\s+(\d+)", open("/proc/self/status").read()).group(1)) / 1024

    before = status("VmRSS")
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")
    out = fn()
    return out, status("VmHWM") - before


# -- the registry -------------------------------------------------------------------------------

def test_registry_lists_every_method_once():
    assert METHODS == sorted(set(METHODS)) and len(METHODS) >= 13
    with pytest.raises(KeyError, match="unknown method 'nope'"):
        get_method("nope")


@pytest.mark.parametrize("name", METHODS)
def test_spec(name):
    spec = get_method(name)
    assert spec.name == name and spec.paper
    assert spec.segment_policy in POLICIES
    assert spec.accepts and set(spec.accepts) <= {"i3d", "clip", "timesformer"}
    assert spec.official_code is None or spec.official_code.startswith("https://github.com/")
    hp = spec.hparams()
    for field in ("batch_size", "lr", "weight_decay", "optimizer", "max_steps", "n_segments", "seed", "eval_every",
                  "eval_min_step"):
        assert hasattr(hp, field), field
    assert bool(hp.patch_grids()) == spec.reads_patches
    if spec.needs_class_labels:
        assert hp.class_names[0] == "Normal" and len(set(hp.class_names)) == len(hp.class_names)


# -- cards ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", METHODS)
def test_card(name):
    """The card is what the DAG reads without torch: it says what the spec says, its defaults
    pass its own checks, every field has a type the checks support."""
    spec = get_method(name)
    card = spec.card()
    assert card == method_card(name)
    assert (card.name, card.paper, card.official_code, card.accepts, card.needs_dictionary, card.reads_patches) == \
        (spec.name, spec.paper, spec.official_code, tuple(spec.accepts), spec.needs_dictionary, spec.reads_patches)
    assert card.paper_only == (spec.official_code is None)
    assert isinstance(card.version, str) and card.version
    assert set(card.hparams) == set(hparam_specs(spec.hparams)) == {f for f in vars(spec.hparams())}
    for key, h in card.hparams.items():
        assert isinstance(h, HParam) and h.name == key
        assert h.type in ("int", "float", "bool", "str", "tuple"), (key, h.type)
        if h.type == "tuple":
            assert h.items in ("int", "float", "str", "any"), (key, h.items)
        assert h.nullable or h.default is not None, key
    defaults = {k: h.default for k, h in card.hparams.items()}
    assert check_hparams(card.hparams, defaults, f"methods.{name}").keys() == defaults.keys()
    # the defaults as resolved: the official values, within their own ranges
    resolved = resolve_hparams(name)
    assert {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(resolved).items()} == defaults


def test_cards_survive_the_torch_free_cache():
    """The DAG reads the cards as JSON (wsvad_core/cards.py); what it reads back is the registry's."""
    from wsvad_core import cards as cards_mod

    built = cards_mod.build_cards()
    data = {"methods": {n: cards_mod._card_json(c) for n, c in built.methods.items()},
            "backbones": {n: cards_mod._card_json(c) for n, c in built.backbones.items()}}
    import json

    assert cards_mod._from_json(json.loads(json.dumps(data))) == built


def test_cards_are_read_without_torch(tmp_path):
    """What `snakemake -n` does: a process without torch gets the cards from a cache it fills once."""
    import os
    import subprocess
    import sys

    code = ("import sys; from wsvad_core.cards import method_card, backbone_card; "
            "c = method_card('s3r'); b = backbone_card('i3res50'); "
            "assert 'torch' not in sys.modules; print(c.needs_dictionary, c.accepts, b.kind, b.dim, b.family)")
    env = {**os.environ, "WSVAD_CACHE_DIR": str(tmp_path)}
    for _ in range(2):  # the first fills the cache (a child process imports the registries), the second reads it
        res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
        assert res.returncode == 0, res.stderr[-2000:]
        assert res.stdout.split() == ["True", "('i3d',", "'clip')", "i3d", "2048", "rtfm_i3d_r50"]
    assert len(list(tmp_path.glob("cards-*.json"))) == 1


# -- hyper-parameters ------------------------------------------------------------------------------

def test_overrides_are_coerced_and_checked():
    model, hp = make("rtfm", lr="1e-2", max_steps=100.0, batch_size=4)
    assert (hp.lr, hp.max_steps, hp.batch_size) == (0.01, 100, 4)
    assert isinstance(hp.max_steps, int) and isinstance(model, WSVADModel)
    assert resolve_hparams("rtfm").lr == 1e-3  # defaults untouched
    assert resolve_hparams("bnwvad", ratios=[8, 16]).ratios == (8, 16)  # tuples come from YAML as lists
    with pytest.raises(ValueError, match=r"'bogus'.*valid: .*batch_size.*lr"):
        make("rtfm", bogus=1)
    with pytest.raises(ValueError, match="lr"):
        make("mil", lr="fast")
    with pytest.raises(ValueError, match="max_steps"):
        make("mil", max_steps=1.5)
    with pytest.raises(ValueError, match=r"method 'mil'\.max_steps: 0 is not valid; expected int >= 1"):
        make("mil", max_steps=0)
    with pytest.raises(ValueError, match=r"method 'rtfm'\.dropout: 1\.5 is not valid"):
        make("rtfm", dropout=1.5)
    with pytest.raises(ValueError, match="dictionary"):
        create_method("s3r", D)
    with pytest.raises(ValueError, match="dictionary"):
        create_method("s3r", D, dictionary=np.zeros((4, D + 1), np.float32))


def test_seeded_init_is_reproducible():
    a, _ = make("rtfm", seed=3)
    torch.manual_seed(123)  # the global RNG must not matter
    b, _ = make("rtfm", seed=3)
    c, _ = make("rtfm", seed=4)
    assert torch.equal(a.fc1.weight, b.fc1.weight)
    assert not torch.equal(a.fc1.weight, c.fc1.weight)


@pytest.mark.parametrize("name", METHODS)
def test_seed_sets_the_initial_weights(name):
    a, _ = make(name, seed=5)
    b, _ = make(name, seed=5)
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# -- scores and loss ----------------------------------------------------------------------------

@pytest.mark.parametrize("name", METHODS)
def test_score_and_loss(name):
    model, hp = make(name)
    C = 3 + n_patches(hp)  # three snippet crops (then the patches of patch methods)
    g = torch.Generator().manual_seed(0)
    cls = torch.tensor([1, 2])
    model.train()
    out = model.loss(toy(2, C, hp.n_segments, g, False), toy(2, C, hp.n_segments, g, True, cls), **class_kw(name, cls))
    assert "loss" in out and len(out) >= 2
    for key, value in out.items():
        assert value.ndim == 0 and torch.isfinite(value), key
    # the other terms are the weighted parts of the total (train_log.csv logs them)
    torch.testing.assert_close(sum(v for k, v in out.items() if k != "loss"), out["loss"])
    assert not {"smooth", "sparse"} & set(out)  # one spelling across methods: smoothness, sparsity
    out["loss"].backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(gr).all() for gr in grads)
    if not isinstance(model, StagedModel):  # staged methods train their later stages' modules later
        untrained = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
        assert not untrained, untrained

    x = toy(2, C, 45, g, True, cls)  # longer than n_segments, not a multiple of any window
    s = model.score(x)
    assert s.shape == (2, 45) and s.dtype == torch.float32
    assert torch.isfinite(s).all() and ((s >= 0) & (s <= 1)).all()
    assert model.training  # score restores the mode
    torch.testing.assert_close(model.score(x), s)  # eval mode: deterministic
    # float16 numpy input (the feature store's dtype) is accepted
    torch.testing.assert_close(model.score(x.numpy().astype(np.float16)), s, atol=5e-3, rtol=0)
    # videos are scored one at a time: a video's scores do not depend on the others
    torch.testing.assert_close(model.score(x[1:]), s[1:])
    assert model.score(x[:0]).shape == (0, 45)


@pytest.mark.parametrize("name", METHODS)
def test_bad_inputs(name):
    model, hp = make(name)
    C = 1 + n_patches(hp)
    with pytest.raises(ValueError, match="same shape"):
        model.loss(torch.zeros(2, C, 32, D), torch.zeros(3, C, 32, D))
    with pytest.raises(ValueError, match="feature dim"):
        model.score(torch.zeros(1, C, 8, D + 1))
    with pytest.raises(ValueError, match="4-d"):
        model.score(torch.zeros(1, 8, D))


# -- learning and long videos ------------------------------------------------------------------------

@pytest.mark.parametrize("name", METHODS)
def test_learns_a_separable_toy_problem(name):
    """100 steps with the method's optimizer (and its hooks, as the shared loop calls them): the
    loss falls, and the anomalous snippets of abnormal videos outscore normal videos."""
    torch.manual_seed(0)  # dropout masks, sampling noise
    model, hp = make(name, batch_size=4, **TOY.get(name, {}))
    C = 1 + n_patches(hp)
    opt = make_optimizer(model, hp)
    g = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(100):
        cls = torch.randint(1, 3, (4,), generator=g)
        model.train()
        out = model.loss(toy(4, C, hp.n_segments, g, False), toy(4, C, hp.n_segments, g, True, cls),
                         **class_kw(name, cls))
        opt.zero_grad(set_to_none=True)
        out["loss"].backward()
        model.before_step()
        opt.step()
        model.after_step()
        losses.append(out["loss"].item())
    assert np.mean(losses[-10:]) < 0.8 * np.mean(losses[:10]), losses[::10]
    s_nor = model.score(toy(6, C, 32, g, False))
    s_abn = model.score(toy(6, C, 32, g, True, torch.tensor([1, 2] * 3)))
    assert s_abn[:, ANOMALY].mean() > s_nor.mean() + 0.3, (float(s_abn[:, ANOMALY].mean()), float(s_nor.mean()))
    # and the video-level score (its highest snippet) tells the abnormal videos apart
    assert s_abn.max(1).values.mean() > s_nor.max(1).values.mean() + 0.1


@pytest.mark.parametrize("name", METHODS)
def test_scores_a_long_video(name):
    model, hp = make(name)
    x = torch.randn(1, 2 + n_patches(hp), LONG_T, D)
    s, peak = peak_mb_above_now(lambda: model.score(x))
    assert s.shape == (1, LONG_T) and torch.isfinite(s).all() and ((s >= 0) & (s <= 1)).all()
    assert peak < LONG_VIDEO_MB, f"{name}: scoring {LONG_T} snippets took {peak:.0f} MB above the input"
