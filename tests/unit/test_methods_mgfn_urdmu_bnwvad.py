"""MGFN, UR-DMU and BN-WVAD beyond the method contract (test_method_contract.py): specs, official
defaults, settings they reject, their loss terms and test-crop handling, their building blocks on
hand-made inputs, BN-WVAD's gradient clipping. Equivalence with the official modules:
test_official_equivalence.py."""

import dataclasses
import math

import numpy as np
import pytest
import torch

from train_record import record_for
from wsvad_core.methods import create_method, get_method, resolve_hparams
from wsvad_core.methods.blocks import crop_samples, dsa_mix
from wsvad_core.methods.bnwvad import select_snippets
from wsvad_core.methods.mgfn import ChannelLayerNorm, contrastive
from wsvad_core.training.data import TrainingSet
from wsvad_core.training.loop import train

pytestmark = pytest.mark.usefixtures("one_thread")

D = 64
NAMES = ["mgfn", "urdmu", "bnwvad"]
# small widths so the tests run in seconds on 2 shared cores (official: 64/128/1024-wide MGFN
# stages, 512-wide UR-DMU/BN-WVAD transformers)
SMALL = {
    "mgfn": {"dims": (16, 32, 32), "dim_head": 16, "head_width": 16},
    "urdmu": {"width": 32, "dim_head": 8, "mlp_dim": 32, "n_segments": 32},
    "bnwvad": {"width": 64, "dim_head": 16, "mlp_dim": 64, "n_segments": 32},
}
KEYS = {
    "mgfn": {"loss", "bce", "contrastive", "smoothness", "sparsity"},
    "urdmu": {"loss", "video_bce", "memory", "triplet", "kl", "distance"},
    "bnwvad": {"loss", "normal", "mpp"},
}
ANOMALY_POS = [5, 6, 7, 20]


def make(name, **overrides):
    return create_method(name, D, **{**SMALL[name], **overrides})


def toy(B, C, S, abnormal, g, shift=3.0):
    x = torch.randn(B, C, S, D, generator=g)
    if abnormal:
        x[:, :, ANOMALY_POS, :8] += shift
    return x


# -- registry and official hyper-parameters ----------------------------------------------------

def test_specs():
    for name in NAMES:
        spec = get_method(name)
        assert spec.segment_policy == "meanpool"
        card = spec.card()
        assert (card.accepts, card.needs_dictionary, card.reads_patches) == (("i3d", "clip"), False, False)
        assert spec.official_code.startswith("https://github.com/") and not card.paper_only


def test_official_defaults():
    mg = resolve_hparams("mgfn")
    assert (mg.optimizer, mg.lr, mg.weight_decay, mg.batch_size, mg.n_segments) == \
        ("adam", 1e-3, 5e-4, 16, 32)
    assert (mg.dims, mg.depths, mg.block_types, mg.dim_head, mg.head_width) == \
        ((64, 128, 1024), (3, 3, 2), ("gb", "fb", "fb"), 64, 64)
    assert (mg.mag_ratio, mg.dropout, mg.topk, mg.margin) == (0.1, 0.7, 3, 200.0)
    assert (mg.lambda_contrast, mg.lambda_separate, mg.lambda_smooth, mg.lambda_sparse) == \
        (1e-3, 1e-3, 8e-4, 8e-3)
    assert mg.max_steps == 1000 * (800 // 16)  # 1000 epochs of 50 UCF-Crime iterations

    ur = resolve_hparams("urdmu")
    assert (ur.optimizer, ur.lr, ur.weight_decay, ur.batch_size, ur.max_steps, ur.seed) == \
        ("adam", 1e-4, 5e-5, 64, 3000, 2022)
    assert (ur.n_segments, ur.width, ur.depth, ur.heads, ur.dim_head, ur.mlp_dim, ur.dropout) == \
        (200, 512, 2, 4, 128, 512, 0.5)
    assert (ur.a_nums, ur.n_nums, ur.lambda_memory, ur.lambda_triplet, ur.lambda_kl,
            ur.lambda_distance, ur.distance_margin) == (60, 60, 0.1, 0.1, 1e-3, 1e-4, 100.0)

    bn = resolve_hparams("bnwvad")
    assert (bn.optimizer, bn.lr, bn.weight_decay, bn.batch_size, bn.max_steps, bn.seed) == \
        ("adam", 1e-4, 5e-5, 64, 1000, 2022)
    assert (bn.n_segments, bn.ratios, bn.ratio_sample, bn.ratio_batch, bn.w_triplet,
            bn.grad_clip_norm, bn.dropout) == (200, (16, 32), 0.2, 0.4, (5.0, 20.0), 1.0, 0.0)
    # tuples come from YAML as lists
    assert resolve_hparams("bnwvad", ratios=[8, 16]).ratios == (8, 16)


def test_bad_settings():
    with pytest.raises(ValueError, match="train_crops"):
        make("urdmu", train_crops="first")
    with pytest.raises(ValueError, match=r"block_types: .* one of 'gb', 'fb'"):
        make("mgfn", block_types=("gb", "xx", "fb"))
    with pytest.raises(ValueError, match="stage width"):
        make("mgfn", dims=(8, 32, 32))
    with pytest.raises(ValueError, match="ratios"):
        make("bnwvad", width=16)


# -- shapes, loss terms, scores -----------------------------------------------------------------

@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("crops", [1, 3])
def test_loss_terms_and_crops_as_the_official_test(name, crops):
    model, hp = make(name)
    g = torch.Generator().manual_seed(0)
    model.train()
    out = model.loss(toy(2, crops, hp.n_segments, False, g), toy(2, crops, hp.n_segments, True, g))
    assert set(out) == KEYS[name]
    x = toy(2, crops, 37, True, g)
    s = model.score(x)
    # crops are scored separately and averaged, as every official test does
    per_crop = torch.stack([model.score(x[:, c:c + 1]) for c in range(crops)]).mean(0)
    if name == "bnwvad":  # the average is taken on the official scale, then mapped
        raw = torch.stack([model.raw_score(x[:, c:c + 1]) for c in range(crops)]).mean(0)
        per_crop = raw / (1 + raw)
    torch.testing.assert_close(per_crop, s)


# -- blocks on hand-made inputs -----------------------------------------------------------------

def test_dsa_kernel_official_normalisation():
    # n = 3: K = exp(-|i - j| / e); column j is divided by the sum of row j (official broadcast)
    e = math.exp(1.0)
    K = np.exp(-np.abs(np.subtract.outer(np.arange(3), np.arange(3))) / e)
    expected = K / K.sum(1)[None, :]
    t = torch.eye(3)
    np.testing.assert_allclose(dsa_mix(t).numpy(), expected, rtol=1e-6)
    assert not np.allclose(expected.sum(1), 1)  # not the row-stochastic matrix one might expect


def test_dsa_banded_equals_dense():
    t = torch.randn(2, 3, 700, 5)
    torch.testing.assert_close(dsa_mix(t, dense_max=0), dsa_mix(t), atol=1e-5, rtol=1e-5)


def test_crop_samples():
    x = torch.arange(2 * 3 * 1 * 1, dtype=torch.float32).view(2, 3, 1, 1)  # video v crop c = 3v+c
    assert crop_samples(x, "all").flatten().tolist() == [0, 1, 2, 3, 4, 5]
    torch.manual_seed(0)
    picked = crop_samples(x, "random").flatten()
    assert picked.shape == (2,) and 0 <= picked[0] <= 2 and 3 <= picked[1] <= 5
    assert crop_samples(x[:, :1], "random").flatten().tolist() == [0, 3]


def test_bnwvad_selection_by_hand():
    # 1 normal + 1 abnormal video, T = 5, C = 1 (feature = its index); DFM given by hand
    feats = torch.tensor([[[10., 11, 12, 13, 14]], [[20., 21, 22, 23, 24]]])
    dist = torch.tensor([[0.1, 0.9, 0.3, 0.8, 0.2], [0.5, 0.1, 0.9, 0.2, 0.7]])
    # per video top int(5 * 0.2) = 1 -> {t2}; batch top int(1 * 5 * 0.4) = 2 -> {t2, t4}
    nor, abn = select_snippets(feats, dist, 1, 0.2, 0.4)
    assert abn.flatten().tolist() == [22, 24]  # flattened order
    # k = 2 // 1 + 1 = 3 normal snippets by DFM: t1, t3, t2; the first 2 are kept
    assert nor.flatten().tolist() == [11, 13]


def test_mgfn_channel_layernorm_and_contrastive_by_hand():
    x = torch.tensor([[[1.0], [3.0]]])  # (1, C=2, T=1): mean 2, std 1
    np.testing.assert_allclose(ChannelLayerNorm(2)(x).detach().flatten().numpy(),
                               [-1 / (1 + 1e-5), 1 / (1 + 1e-5)], rtol=1e-6)
    a, b = torch.tensor([[3.0, 0.0]]), torch.tensor([[0.0, 4.0]])  # distance ~5
    assert contrastive(a, b, True, 200.0).item() == pytest.approx(25.0, rel=1e-5)
    assert contrastive(a, b, False, 200.0).item() == pytest.approx(195.0 ** 2, rel=1e-5)
    assert contrastive(a, b, False, 4.0).item() == 0.0


def _update_norm(model, before) -> float:
    return math.sqrt(sum(float(((p.detach() - b) ** 2).sum())
                         for p, b in zip(model.parameters(), before)))


def _one_loop_step(model, hp, tmp_path, scale: float) -> float:
    """One step of the shared training loop (plain SGD, lr 0.5) with the loss scaled by
    ``scale``; returns the norm of the parameter update (= lr x the gradient norm used)."""
    hp = dataclasses.replace(hp, batch_size=2, max_steps=1, lr=0.5)
    g = torch.Generator().manual_seed(0)
    data = TrainingSet(toy(2, 1, 32, False, g).half(), toy(2, 1, 32, True, g).half(),
                       ["n0", "n1"], ["a0", "a1"])
    loss = model.loss
    model.loss = lambda n, a: {k: v * scale for k, v in loss(n, a).items()}
    before = [p.detach().clone() for p in model.parameters()]
    train(model, hp, data, tmp_path, device=torch.device("cpu"),
          optimizer=torch.optim.SGD(model.parameters(), lr=hp.lr), progress=False, record=record_for(hp, "bnwvad", D))
    return _update_norm(model, before)


def test_bnwvad_before_step_clips_the_gradient_norm():
    model, hp = make("bnwvad")
    assert hp.grad_clip_norm == 1.0  # train.py clip_grad_norm_(..., max_norm=1.0)
    for p in model.parameters():
        p.grad = torch.full_like(p, 10.0)
    model.before_step()
    total = torch.sqrt(sum((p.grad ** 2).sum() for p in model.parameters()))
    assert total.item() == pytest.approx(1.0, rel=1e-4)


def test_bnwvad_training_loop_clips_between_backward_and_step(tmp_path):
    # a huge gradient (loss x 1e4): the loop's before_step() clips it to norm 1, so the SGD
    # update has norm lr x 1; without clipping the same step is thousands of times larger
    model, hp = make("bnwvad")
    assert _one_loop_step(model, hp, tmp_path / "clip", 1e4) == pytest.approx(0.5, rel=1e-4)
    # the same model without clipping; grad_clip_norm 0 (before_step: "if grad_clip_norm > 0")
    # is outside the card's range (> 0), so it is set on the built model
    model, hp = make("bnwvad")
    model.hparams = hp = dataclasses.replace(hp, grad_clip_norm=0.0)
    assert _one_loop_step(model, hp, tmp_path / "noclip", 1e4) > 100.0


def test_bnwvad_clipping_touches_no_other_optimizer():
    model, _ = make("bnwvad")
    model.train()  # a live BN-WVAD model in training mode: no process-wide hook may act on it
    # its own optimizer outside the loop: a plain step applies the raw gradient
    before = [p.detach().clone() for p in model.parameters()]
    for p in model.parameters():
        p.grad = torch.full_like(p, 10.0)
    torch.optim.SGD(model.parameters(), lr=0.5).step()
    n = sum(p.numel() for p in model.parameters())
    assert _update_norm(model, before) == pytest.approx(0.5 * 10.0 * math.sqrt(n), rel=1e-4)
    # another model's optimizer
    other = torch.nn.Linear(3, 1)
    other.weight.grad = torch.full_like(other.weight, 10.0)
    other.bias.grad = torch.full_like(other.bias, 10.0)
    w = other.weight.detach().clone()
    torch.optim.SGD(other.parameters(), lr=1.0).step()
    torch.testing.assert_close(other.weight.detach(), w - 10.0)
