"""MIL, RTFM and S3R beyond the method contract (test_method_contract.py): official defaults and
optimizers, their loss terms, how each combines test crops as its official test code does, and
official state-dict names."""

import dataclasses

import numpy as np
import pytest
import torch

from wsvad_core.methods import create_method, get_method, load_official, make_optimizer, resolve_hparams

pytestmark = pytest.mark.usefixtures("one_thread")

D = 64  # small feature dim (S3R needs D divisible by 32)
METHODS = ["mil", "rtfm", "s3r"]
EXPECTED_KEYS = {
    "mil": {"loss", "ranking", "smoothness", "sparsity", "l2_reg"},
    "rtfm": {"loss", "bce", "magnitude", "smoothness", "sparsity"},
    "s3r": {"loss", "bce", "magnitude", "smoothness", "sparsity", "macro"},
}
ANOMALY_POS = [5, 6, 7, 20]


@pytest.fixture(scope="module")
def dictionary():
    return np.random.default_rng(0).normal(size=(5, D)).astype(np.float32)


def make(name, dictionary, **overrides):
    return create_method(name, D, dictionary=dictionary if name == "s3r" else None, **overrides)


def toy(B, C, S, abnormal, g, shift=3.0):
    """Gaussian snippets; abnormal videos get +shift on 8 dims at ANOMALY_POS (all crops)."""
    x = torch.randn(B, C, S, D, generator=g)
    if abnormal:
        x[:, :, ANOMALY_POS, :8] += shift
    return x


def test_official_defaults():
    mil, rtfm, s3r = (resolve_hparams(n) for n in METHODS)
    assert (mil.optimizer, mil.lr, mil.batch_size, mil.max_steps, mil.dropout) == \
        ("adagrad", 1e-3, 30, 20000, 0.6)
    assert (mil.lambda_smooth, mil.lambda_sparse, mil.n_segments) == (8e-5, 8e-5, 32)
    assert (rtfm.optimizer, rtfm.lr, rtfm.weight_decay, rtfm.batch_size, rtfm.max_steps) == \
        ("adam", 1e-3, 5e-3, 32, 15000)
    assert (rtfm.margin, rtfm.alpha, rtfm.lambda_smooth, rtfm.lambda_sparse, rtfm.dropout) == \
        (100.0, 1e-4, 8e-4, 8e-3, 0.7)
    assert rtfm.n_segments // 10 == 3 and rtfm.topk is None  # None: k = num_segments // 10
    assert (s3r.optimizer, s3r.lr, s3r.weight_decay, s3r.batch_size, s3r.max_steps) == \
        ("adam", 1e-3, 5e-3, 32, 15000)
    assert get_method("rtfm").segment_policy == "meanpool"
    assert get_method("s3r").segment_policy == "resize"
    assert get_method("s3r").needs_dictionary and not get_method("rtfm").needs_dictionary


def test_make_optimizer(dictionary):
    model, hp = make("mil", dictionary)
    opt = make_optimizer(model, hp)
    assert isinstance(opt, torch.optim.Adagrad) and opt.defaults["lr"] == 1e-3
    model, hp = make("rtfm", dictionary)
    opt = make_optimizer(model, hp)
    assert isinstance(opt, torch.optim.Adam) and opt.defaults["weight_decay"] == 5e-3
    with pytest.raises(ValueError, match="unknown optimizer"):
        make_optimizer(model, dataclasses.replace(hp, optimizer="lbfgs"))


def test_topk_none_is_a_tenth_of_the_segments(dictionary):
    """RTFM's k = num_segments // 10 unless topk is set: the same loss as topk = 3 at 32 segments."""
    g = torch.Generator().manual_seed(0)
    nor, abn = toy(2, 1, 32, False, g), toy(2, 1, 32, True, g)
    a, _ = make("rtfm", dictionary, dropout=0.0)
    b, _ = make("rtfm", dictionary, dropout=0.0, topk=3)
    c, _ = make("rtfm", dictionary, dropout=0.0, topk=5)
    torch.testing.assert_close(a.loss(nor, abn)["loss"], b.loss(nor, abn)["loss"])
    assert not torch.allclose(a.loss(nor, abn)["loss"], c.loss(nor, abn)["loss"])


@pytest.mark.parametrize("name", METHODS)
@pytest.mark.parametrize("crops", [1, 10])
def test_loss_terms_and_crops_as_the_official_test(name, crops, dictionary):
    model, _ = make(name, dictionary)
    g = torch.Generator().manual_seed(0)
    model.train()
    out = model.loss(toy(2, crops, 32, False, g), toy(2, crops, 32, True, g))
    assert set(out) == EXPECTED_KEYS[name]
    x = toy(3, crops, 37, False, g)
    s = model.score(x)
    if name == "mil":  # features averaged over crops
        torch.testing.assert_close(model.score(x.mean(1, keepdim=True)), s)
    else:  # crop scores averaged
        per_crop = torch.stack([model.score(x[:, c:c + 1]) for c in range(crops)]).mean(0)
        torch.testing.assert_close(per_crop, s)


# -- official checkpoints ----------------------------------------------------------------------

def _perturbed_state(model):
    g = torch.Generator().manual_seed(1)
    return {k: (v + torch.rand(v.shape, generator=g) if v.is_floating_point() else v.clone())
            for k, v in model.state_dict().items()}


def test_rtfm_official_names(dictionary):
    model, _ = make("rtfm", dictionary)
    theirs = {"module." + k.replace("aggregate.", "Aggregate.", 1): v
              for k, v in _perturbed_state(model).items()}
    # names in RTFM's model.py Model.state_dict()
    for key in ["Aggregate.conv_1.0.weight", "Aggregate.conv_1.2.running_mean",
                "Aggregate.conv_3.0.bias", "Aggregate.conv_4.0.weight", "Aggregate.conv_5.0.weight",
                "Aggregate.conv_5.2.weight", "Aggregate.non_local.g.weight",
                "Aggregate.non_local.theta.bias", "Aggregate.non_local.phi.weight",
                "Aggregate.non_local.W.0.weight", "Aggregate.non_local.W.1.running_var",
                "fc1.weight", "fc2.bias", "fc3.weight"]:
        assert "module." + key in theirs, key
    load_official(get_method("rtfm"), model, theirs)
    torch.testing.assert_close(model.fc3.weight, theirs["module.fc3.weight"])


def test_s3r_official_names(dictionary):
    model, _ = make("s3r", dictionary)
    renames = [("en_normal.", "en_normal.en_normal_module."),
               ("video_embedding.", "video_embedding.0."),
               ("macro_embedding.", "macro_embedding.0."),
               ("de_normal.mlp.0.", "de_normal.channel_attention.channel_gate.mlp.1."),
               ("de_normal.mlp.2.", "de_normal.channel_attention.channel_gate.mlp.3."),
               ("macro_classifier.", "macro_classifier.mlp.")]
    nonlocal_names = {"g": "value", "theta": "query", "phi": "key", "W": "alter"}
    theirs = {}
    for k, v in _perturbed_state(model).items():
        if k == "dictionary":
            continue  # not in S3R checkpoints (loaded from its .npy)
        for ours, official in renames:
            if k.startswith(ours):
                k = official + k[len(ours):]
                break
        parts = k.split(".")
        if "non_local" in parts:
            i = parts.index("non_local") + 1
            parts[i] = nonlocal_names[parts[i]]
        theirs[".".join(parts)] = v
    # names in S3R's detector.py S3R.state_dict()
    for key in ["en_normal.en_normal_module.query_embedding.weight",
                "en_normal.en_normal_module.value_embedding.bias",
                "video_embedding.0.conv_1.1.weight", "macro_embedding.0.conv_5.1.bias",
                "video_embedding.0.non_local.value.weight",
                "video_embedding.0.non_local.alter.1.running_var",
                "de_normal.channel_attention.channel_gate.mlp.1.weight",
                "video_classifier.6.weight", "macro_classifier.mlp.3.bias"]:
        assert key in theirs, key
    theirs["video_projection.0.weight"] = torch.zeros(D, D, 3)  # unused upstream: dropped
    atoms = model.dictionary.clone()
    load_official(get_method("s3r"), model, theirs)
    torch.testing.assert_close(model.video_classifier[6].weight, theirs["video_classifier.6.weight"])
    torch.testing.assert_close(model.dictionary, atoms)


def test_mil_official_keras_weights(dictionary):
    model, _ = make("mil", dictionary)
    rng = np.random.default_rng(0)
    # conv_dict(loadmat('weights_L1L2.mat')): Dense layers 0, 2, 4 with W (in, out); dropout empty
    keras = {"0": [rng.normal(size=(D, 512)), rng.normal(size=512)], "1": [],
             "2": [rng.normal(size=(512, 32)), rng.normal(size=32)], "3": [],
             "4": [rng.normal(size=(32, 1)), rng.normal(size=1)]}
    load_official(get_method("mil"), model, keras)
    np.testing.assert_allclose(model.fc1.weight.detach().numpy(), keras["0"][0].T, rtol=1e-6)
    np.testing.assert_allclose(model.fc3.bias.detach().numpy(), keras["4"][1], rtol=1e-6)
