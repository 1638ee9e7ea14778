"""CLIP-TSA, VadCLIP, TPWNG, GS-MoE beyond the method contract (test_method_contract.py): specs,
official defaults, their loss terms and test-crop handling, their building blocks on hand-made
arrays, the CLIP text side, the class-label plumbing (manifest -> training set -> loop -> loss)
and one tiny run through run_training/run_evaluation."""

import dataclasses
import logging

import numpy as np
import pandas as pd
import pytest
import torch

from tiny_dag import TINY_PROTOCOL
from train_record import record_for
from wsvad_core.methods import create_method, get_method, make_optimizer, resolve_hparams
from wsvad_core.methods.blocks import lengths_from_padding, topk_mean
from wsvad_core.methods.cliptsa import _PerturbedTopKMembership
from wsvad_core.methods.gsmoe import splat_peaks
from wsvad_core.methods.text import ClipTextEncoder, class_names_from_manifest, prepare_text_overrides
from wsvad_core.methods.tpwng import AdaptiveSpanAttention, minmax
from wsvad_core.methods.vadclip import window_mask

pytestmark = pytest.mark.usefixtures("one_thread")

D = 64
NAMES = ["Normal", "Explosion", "Fighting"]
# small CLIP text towers keep these tests fast; the architecture code is the ViT-B-16 one
TEXT = dict(text_width=32, text_heads=2, text_layers=1, class_names=NAMES)
CFG = {
    "cliptsa": {},
    "vadclip": dict(TEXT, n_segments=32),
    "tpwng": dict(TEXT, n_segments=32, tcsal_heads=4),
    "gsmoe": dict(class_names=NAMES, n_segments=32),
}
KEYS = {
    "cliptsa": {"loss", "bce", "magnitude", "smoothness", "sparsity"},
    "vadclip": {"loss", "clas2", "clasm", "text_sep"},
    "tpwng": {"loss", "cls", "rank_normal", "rank_abnormal", "dil", "smoothness", "sparsity"},
    "gsmoe": {"loss", "task", "experts", "mixture"},
}
ANOMALY = [5, 6, 7, 8, 20]


def make(name, **kw):
    return create_method(name, D, **{**CFG[name], **kw})


def toy(B, C, S, g, abnormal, classes=None):
    """Gaussian snippets; abnormal videos get a class-specific +3 shift at ANOMALY."""
    x = torch.randn(B, C, S, D, generator=g)
    if abnormal:
        for i in range(B):
            c = 1 if classes is None else int(classes[i])
            x[i, :, ANOMALY, 8 * c:8 * c + 8] += 3.0
    return x


def classes_kw(name, cls):
    return {} if name == "cliptsa" else {"abnormal_classes": cls}


# -- registry and official hyper-parameters ----------------------------------------------------

def test_specs():
    for name, kinds in (("cliptsa", {"clip", "i3d"}), ("vadclip", {"clip"}),
                        ("tpwng", {"clip"}), ("gsmoe", {"clip", "i3d"})):
        spec = get_method(name)
        assert set(spec.accepts) == kinds == set(spec.card().accepts)
        assert not spec.needs_dictionary
        assert spec.needs_class_labels == (name != "cliptsa")
    assert get_method("tpwng").official_code is get_method("gsmoe").official_code is None
    assert get_method("tpwng").card().paper_only and not get_method("vadclip").card().paper_only
    assert "joos2010kj/CLIP-TSA" in get_method("cliptsa").official_code
    assert "nwpu-zxr/VadCLIP" in get_method("vadclip").official_code
    assert get_method("cliptsa").segment_policy == "meanpool"
    assert get_method("vadclip").segment_policy == get_method("tpwng").segment_policy == "pad_pool"
    assert get_method("cliptsa").load_official_state_dict is not None
    assert get_method("vadclip").load_official_state_dict is not None


def test_official_defaults():
    tsa = resolve_hparams("cliptsa")
    assert (tsa.optimizer, tsa.lr, tsa.weight_decay, tsa.batch_size, tsa.max_steps, tsa.seed) == \
        ("adam", 1e-3, 5e-3, 16, 4000, 2)
    assert (tsa.k_ratio, tsa.num_samples, tsa.sigma, tsa.n_segments, tsa.dropout) == \
        (0.95, 100, 0.05, 32, 0.7)
    vad = resolve_hparams("vadclip")
    assert (vad.optimizer, vad.lr, vad.weight_decay, vad.batch_size, vad.n_segments, vad.seed) == \
        ("adamw", 2e-5, 1e-2, 64, 256, 234)
    assert (vad.attn_window, vad.visual_layers, vad.prompt_prefix, vad.prompt_postfix) == (8, 2, 10, 10)
    assert vad.lambda_text_sep == 0.1 and len(vad.class_names) == 14 and vad.class_names[0] == "Normal"
    tp = resolve_hparams("tpwng")
    assert (tp.prompt_len, tp.alpha, tp.theta, tp.span_softness, tp.lambda1, tp.lambda2) == \
        (8, 0.2, 0.55, 256.0, 0.1, 0.01)
    gs = resolve_hparams("gsmoe")
    assert (gs.lr, gs.batch_size, gs.max_steps, gs.n_segments) == (1e-4, 64, 3000, 200)
    model, hp = make("vadclip")
    opt = make_optimizer(model, hp)
    assert isinstance(opt, torch.optim.AdamW)
    # the frozen CLIP text tower is not optimised; the prompt vectors are
    trained = {id(p) for group in opt.param_groups for p in group["params"]}
    assert id(model.text_prompt_embeddings.weight) in trained
    assert not any(id(p) in trained for p in model.text.parameters())


# -- shapes, loss dicts, scoring --------------------------------------------------------------

@pytest.mark.parametrize("name", list(CFG))
@pytest.mark.parametrize("crops", [1, 3])
def test_loss_terms_and_crops_as_the_official_test(name, crops):
    model, _ = make(name)
    g = torch.Generator().manual_seed(0)
    cls = torch.tensor([1, 2])
    model.train()
    out = model.loss(toy(2, crops, 32, g, False), toy(2, crops, 32, g, True, cls),
                     **classes_kw(name, cls))
    assert set(out) == KEYS[name]
    x = toy(2, crops, 45, g, False)  # longer than n_segments: windows / whole-video scoring
    s = model.score(x)
    torch.testing.assert_close(model.score(x), s)  # deterministic (CLIP-TSA: seeded noise)
    if name != "cliptsa":  # per-crop models: the crop scores are averaged (test_crop None)
        per_crop = torch.stack([model.score(x[:, c:c + 1]) for c in range(crops)], 0).mean(0)
        torch.testing.assert_close(per_crop, s)
    if name in ("vadclip", "tpwng") and crops == 3:  # test_crop: one crop of the video, as VadCLIP tests
        one, _ = make(name, test_crop=1)
        one.load_state_dict(model.state_dict())
        torch.testing.assert_close(one.score(x), model.score(x[:, 1:2]))


# -- building blocks on hand-made arrays ------------------------------------------------------

def test_perturbed_topk_membership_and_gradient():
    """Forward: the fraction of noisy samples keeping each position in the top k. Backward: the
    perturbed-optimiser estimator over the (sample, slot) one-hot indicators, summed over slots."""
    x = torch.tensor([[0.9, 0.1, 0.5, 0.52, 0.0]], requires_grad=True)
    noise = torch.tensor([[[0.0, 0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 2.0, -2.0, 0.0],
                           [0.0, 30.0, 0.0, 0.0, 0.0]]])  # 3 samples, sigma 0.05
    freq = _PerturbedTopKMembership.apply(x, 2, 0.05, noise)
    # sample 1: {0, 3}; sample 2: {0, 2} (0.6 > 0.42); sample 3: {1, 0} (0.1 + 1.5)
    torch.testing.assert_close(freq, torch.tensor([[1.0, 1 / 3, 1 / 3, 1 / 3, 0.0]]))
    g = torch.tensor([[1.0, -2.0, 0.5, 3.0, 1.0]])
    freq.backward(g)
    members = [[0, 3], [0, 2], [1, 0]]
    ref = torch.zeros(5)
    for n, mem in enumerate(members):  # sum over samples and the k slots of one-hot(d) <noise, g>
        for d in mem:
            ref[d] += float(noise[0, n] @ g[0])
    torch.testing.assert_close(x.grad[0], ref / (3 * 0.05))


def test_window_mask_topk_mean_lengths():
    m = window_mask(8, 4)
    assert m[:4, :4].all() and m[4:, 4:].all() and not m[:4, 4:].any() and not m[4:, :4].any()
    with pytest.raises(ValueError, match="multiple of attn_window"):
        window_mask(10, 4)
    x = torch.tensor([[5.0, 1.0, 4.0, 9.0, 0.0], [1.0, 2.0, 3.0, 4.0, 5.0]])
    # len 4 -> k = int(4/16 + 1) = 1 (max of the first 4); len 5 with denom 2 -> k = 3
    torch.testing.assert_close(topk_mean(x[:1], torch.tensor([4])), torch.tensor([9.0]))
    torch.testing.assert_close(topk_mean(x[1:], torch.tensor([5]), denom=2), torch.tensor([4.0]))
    torch.testing.assert_close(topk_mean(x[1:], torch.tensor([3]), denom=2), torch.tensor([2.5]))
    pad = torch.zeros(2, 6, 3)
    pad[0, :4] = 1.0
    pad[1, 2] = -1.0
    assert lengths_from_padding(pad).tolist() == [4, 3]
    assert lengths_from_padding(torch.zeros(1, 5, 3)).tolist() == [1]


def test_adaptive_span_attention_is_causal_and_soft():
    torch.manual_seed(0)
    att = AdaptiveSpanAttention(16, 2, softness=4.0)
    x = torch.randn(1, 10, 16)
    y = att(x)
    x2 = x.clone()
    x2[:, 6:] += 5.0  # the future must not change the past
    torch.testing.assert_close(att(x2)[:, :6], y[:, :6])
    # a span of ~0 with softness R keeps weights (R - h)/R: distance >= R is masked out
    with torch.no_grad():
        att.span.weight.zero_()
        att.span.bias.fill_(-30.0)
        att.qkv.weight.zero_()
        att.qkv.bias.zero_()
        att.qkv.bias[32:] = 1.0  # v = 1 everywhere, q = k = 0: the output is the weight sum
        att.out.weight.copy_(torch.eye(16))
        att.out.bias.zero_()
        v_rows = att(torch.randn(1, 10, 16))
    torch.testing.assert_close(v_rows, torch.ones(1, 10, 16))  # softmax weights sum to 1
    valid = torch.tensor([[True, True, True, False]])
    torch.testing.assert_close(minmax(torch.tensor([[2.0, 4.0, 3.0, 100.0]]), valid),
                               torch.tensor([[0.0, 1.0, 0.5, 0.0]]))


def test_splat_peaks_hand_made_curve():
    s = np.array([0.1, 0.1, 0.9, 0.1, 0.1, 0.12, 0.1, 0.1, 0.5, 0.5, 0.5, 0.1, 0.1])
    out = splat_peaks(s, prominence=0.1)
    # kernels at 2 (0.9, width 1 -> sigma 1) and at the plateau start 8 (0.5, width 3 ->
    # sigma 1.27); the 0.02 bump at 5 is below the prominence
    assert out[2] == pytest.approx(0.9) and out[8] == pytest.approx(0.5)
    assert out[3] == pytest.approx(0.9 * np.exp(-0.5)) and out[0] == pytest.approx(0.9 * np.exp(-2))
    assert out[10] == pytest.approx(0.5 * np.exp(-4 / (2 * (3 / 2.355) ** 2)), rel=1e-5)
    sig = 3 / 2.355  # the bump at 5 only gets the 0.5 plateau kernel's tail
    assert out[5] == pytest.approx(0.5 * np.exp(-9 / (2 * sig ** 2)), rel=1e-5)
    flat = splat_peaks(np.full(5, 0.3), prominence=0.1)  # no peak: the maximum's kernel
    assert flat[0] == pytest.approx(0.3) and flat[4] < flat[0]


@pytest.mark.parametrize("train_crops, rows", [("random", 2 * 3), ("all", 2 * 3 * 4)])
def test_gsmoe_trains_on_per_crop_samples_as_urdmu(train_crops, rows):
    """UR-DMU's lists hold one file per crop: a step sees one random crop of each video (or
    every crop as its own sample), not all ten crops of every video."""
    g = torch.Generator().manual_seed(0)
    model, _ = make("gsmoe", train_crops=train_crops)
    seen = []
    model.encoder.register_forward_hook(lambda m, args, out: seen.append(tuple(args[0].shape)))
    normal, abnormal = toy(3, 4, 32, g, False), toy(3, 4, 32, g, True, classes=[1, 2, 1])
    out = model.loss(normal, abnormal, abnormal_classes=torch.tensor([1, 2, 1]))
    assert seen == [(rows, 32, D)]
    assert torch.isfinite(out["loss"]) and out["experts"] > 0


# -- the CLIP text side -----------------------------------------------------------------------

def test_text_encoder_checkpoint_and_weights_file(tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        enc = ClipTextEncoder(embed_dim=D, width=32, heads=2, layers=1)
    assert "RANDOM-INIT" in caplog.text
    assert enc.state_dict() == {}  # frozen: rebuilt from the same file or seed, not saved
    enc.load_state_dict({})  # strict load still works
    # a CLIP-style state dict with an image tower and the text keys loads the text keys
    sd = {k: torch.randn_like(v) for k, v in enc.named_parameters()}
    torch.save({**sd, "visual.proj": torch.zeros(3)}, tmp_path / "clip.pt")
    loaded = ClipTextEncoder(weights=str(tmp_path / "clip.pt"), embed_dim=D, width=32, heads=2,
                             layers=1, train_projection=True)
    torch.testing.assert_close(loaded.token_embedding.weight, sd["token_embedding.weight"])
    assert set(loaded.state_dict()) == {"text_projection"}  # the trainable part is saved
    torch.save({"visual.proj": torch.zeros(3)}, tmp_path / "image_only.pt")
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        ClipTextEncoder(weights=str(tmp_path / "image_only.pt"), embed_dim=D, width=32, heads=2,
                        layers=1)
    assert "holds no text tower" in caplog.text
    with pytest.raises(ValueError, match="does not fit"):
        ClipTextEncoder(weights=str(tmp_path / "clip.pt"), embed_dim=D, width=32, heads=2, layers=2)


def test_text_overrides_from_manifest_and_store():
    df = pd.DataFrame({"video_id": ["a", "b", "c"], "class": ["Normal", "Fighting", "Explosion"]})
    assert class_names_from_manifest(df) == ("Normal", "Explosion", "Fighting")
    out = prepare_text_overrides({"lr": 1.0}, {"provenance": {"weights": "/m/clip.pt"}}, df)
    assert out == {"lr": 1.0, "class_names": ["Normal", "Explosion", "Fighting"],
                   "text_weights": "/m/clip.pt"}
    out = prepare_text_overrides({"text_weights": "x"}, {"provenance": {"weights": "random-init"}}, df)
    assert out["text_weights"] == "x"
    # no CLIP weights file: None, the text tower's random init (flagged RANDOM-INIT)
    assert prepare_text_overrides({}, {"provenance": {"weights": "random-init"}}, df)["text_weights"] is None
    with pytest.raises(ValueError, match="only 'Normal'"):
        class_names_from_manifest(pd.DataFrame({"class": ["Normal"]}))


# -- class labels: manifest -> training set -> loop -> loss -----------------------------------

def test_class_labels_reach_the_loss(tmp_path):
    from wsvad_core.training.data import TrainingSet, abnormal_class_indices
    from wsvad_core.training.loop import train

    df = pd.DataFrame({"video_id": ["a1", "a2", "a3"], "class": ["Fighting", "Explosion", "Fighting"]})
    idx = abnormal_class_indices(df, ["a1", "a2", "a3"], NAMES)
    assert idx.tolist() == [2, 1, 2]
    with pytest.raises(ValueError, match="Shooting"):
        abnormal_class_indices(pd.DataFrame({"video_id": ["x"], "class": ["Shooting"]}), ["x"], NAMES)

    class Recorder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))
            self.seen = []

        def loss(self, normal, abnormal, abnormal_classes=None):
            self.seen.append((abnormal[:, 0, 0, 0].tolist(), abnormal_classes.tolist()))
            return {"loss": (self.w ** 2).sum() + 1.0}

        def before_step(self):  # the loop's hooks (methods.base.WSVADModel)
            pass

        def after_step(self):
            pass

    @dataclasses.dataclass
    class HP:
        batch_size: int = 2
        max_steps: int = 4
        seed: int = 0
        lr: float = 0.1
        eval_min_step: int = 0

    abn = torch.arange(3, dtype=torch.float16).reshape(3, 1, 1, 1).expand(3, 1, 2, 2).contiguous()
    data = TrainingSet(torch.zeros(3, 1, 2, 2).half(), abn, ["n"] * 3, ["a1", "a2", "a3"], idx)
    model = Recorder()
    train(model, HP(), data, tmp_path, device=torch.device("cpu"),
          optimizer=torch.optim.SGD(model.parameters(), lr=0.1), progress=False, record=record_for(HP()))
    assert len(model.seen) == 4
    for video_rows, classes in model.seen:  # each abnormal video arrives with its own class
        assert classes == [idx[int(v)].item() for v in video_rows]


@pytest.mark.slow
def test_vadclip_run_training_and_evaluation(tmp_path):
    """run_training fills class names from the manifest and the text weights from the store,
    feeds the classes to the loss; run_evaluation rebuilds the model from the checkpoint."""
    import json

    from wsvad_core.evaluation.run import run_evaluation
    from wsvad_core.features.store import finalize_store, write_video_array
    from wsvad_core.training.run import run_training

    rng = np.random.default_rng(0)
    rows, gt = [], {}
    specs = [("n0", 0, "Normal", "train"), ("n1", 0, "Normal", "train"),
             ("e0", 1, "Explosion", "train"), ("f0", 1, "Fighting", "train"),
             ("t0", 0, "Normal", "test"), ("t1", 1, "Fighting", "test")]
    for vid, label, cls, split in specs:
        x = rng.normal(size=(1, 12, D))
        if label:
            x[:, 4:8, :8] += 3.0
        write_video_array(tmp_path / "f.zarr", vid, x, {"n_frames": 192, "fps": 25.0,
                                                         "label": label, "split": split})
        rows.append({"video_id": vid, "path": f"/videos/{vid}.mp4", "split": split, "label": label, "class": cls,
                     "n_frames": 192, "fps": 25.0})
        if split == "test":
            gt[vid] = np.repeat((np.arange(12) >= 4) & (np.arange(12) < 8) & bool(label), 16)
    finalize_store(tmp_path / "f.zarr", {"recipe": {"family": "clip", "name": "toy"},
                                         "provenance": {"weights": "random-init"}})
    pd.DataFrame(rows).to_csv(tmp_path / "manifest.csv", index=False)
    np.savez(tmp_path / "gt.npz", __order__=np.array(list(gt)),
             **{k: v.astype(np.uint8) for k, v in gt.items()})
    over = dict(TEXT, n_segments=32, max_steps=3, batch_size=2)
    over.pop("class_names")
    run_training(method="vadclip", manifest=tmp_path / "manifest.csv", store=tmp_path / "f.zarr",
                 run_dir=tmp_path / "run", seed=0, overrides=over, progress=False)
    ckpt = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)
    assert ckpt["overrides"]["class_names"] == NAMES and ckpt["overrides"]["text_weights"] is None
    assert not any(k.startswith("text.") for k in ckpt["model"])  # frozen CLIP not saved
    metrics = run_evaluation(checkpoint=tmp_path / "run" / "checkpoint.pt",
                             manifest=tmp_path / "manifest.csv", store=tmp_path / "f.zarr",
                             ground_truth=tmp_path / "gt.npz", scores_out=tmp_path / "s.npz",
                             metrics_out=tmp_path / "m.json", protocol={**TINY_PROTOCOL, "clip_len": 16},
                             progress=False)
    assert json.loads((tmp_path / "m.json").read_text())["method"] == "vadclip"
    assert 0.0 <= metrics["auc"] <= 1.0
