"""DSANet: the official DSANet module's seeded random weights (small widths, see
tests/fixtures/dsanet/README.md), loaded through wsvad's name mapping, give the official text
features, the four logits, the normality branch, the loss terms, the test scores, and the
parameters after each of four optimiser steps at lr 1e-5 (AdamW for the model, the normality
branch's own StableAdamW with its warm-up + cosine lr)."""
import json

import pytest
import torch

from official_fixtures import TOL, torch_fixture
from wsvad_core.methods import create_method, get_method, load_official, make_optimizer
from wsvad_core.methods.dsanet import warm_cosine_lr

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def official():
    return torch_fixture("dsanet", "official.pt")


def official_state(official) -> dict:
    sd = dict(official["state_dict"])
    tok = torch.zeros(official["vocab_size"], official["token_values"].shape[1])
    tok[official["token_rows"]] = official["token_values"]  # only these rows are ever read
    sd["clipmodel.token_embedding.weight"] = tok
    # the official module registers the CLIP model twice (DSANet.clipmodel and
    # CLIP_Adapter.clipmodel): its state dict holds the tower under both names
    sd.update({"clip_adapter." + k: v for k, v in list(sd.items()) if k.startswith("clipmodel.")})
    return sd


@pytest.fixture
def build(official, tmp_path):
    descr = tmp_path / "descriptions.json"
    descr.write_text(json.dumps(official["descriptions"]))

    def make(**extra):
        cfg = dict(official["config"])
        model, hp = create_method("dsanet", official["feat_dim"], descriptions_file=str(descr),
                                  **{**cfg, **extra})
        sd = official_state(official)
        assert any(k.startswith("clipmodel.visual.") for k in sd) and "disAdj.sigma" in sd
        missing, unexpected = load_official(get_method("dsanet"), model, sd)
        assert missing == ["refiner_step"] and unexpected == []
        return model
    return make


def test_tokens_and_descriptions(official, build):
    model = build()
    torch.testing.assert_close(model.tokens, official["tokens"].long())
    assert model.token_class.tolist() == [0, 1, 1, 2]  # "explosion" has two texts, averaged


def test_forward_matches_official(official, build):
    model = build().train()
    with torch.no_grad():
        out = model(official["visual"], official["lengths"])
    ref = official["forward"]
    torch.testing.assert_close(out["text"], ref["text_features"], **TOL)
    torch.testing.assert_close(out["logits1"], ref["logits1"], **TOL)
    for k in ("logits2", "logits3", "logits4"):  # cosines / 0.07: compare at that scale
        torch.testing.assert_close(out[k] * 0.07, ref[k] * 0.07, **TOL)
    torch.testing.assert_close(out["reconstructed"], ref["reconstructed"], **TOL)
    torch.testing.assert_close(out["gather"], ref["g_loss"], **TOL)


def test_loss_terms_match_official(official, build):
    model = build()
    names = official["config"]["class_names"]
    cls = torch.tensor([names.index(n) for n in official["names"][2:]])
    out = model.loss(official["visual"][:2, None], official["visual"][2:, None], abnormal_classes=cls)
    for key, value in official["terms"].items():
        torch.testing.assert_close(out[key], value, **TOL)


def test_test_scores_match_official(official, build):
    # ucf_test.py: 70 snippets in windows of 32 (the last one padded), sigmoid of the coarse logits
    got = build().score(official["long_video"][None, None])[0]
    torch.testing.assert_close(got, official["scores"], **TOL)


def test_optimiser_steps_match_official(official, build):
    """Four steps as the shared loop takes them (zero_grad, backward, before_step, step,
    after_step): AdamW on the model, StableAdamW at the warm-cosine lr on the normality branch
    (warm-up 2, total 6 in the fixture: lrs 0, lr, lr, then the cosine)."""
    model = build(lr=official["lr"], refiner_warmup=2, refiner_total_iters=6)
    names = official["config"]["class_names"]
    cls = torch.tensor([names.index(n) for n in official["names"][2:]])
    opt = make_optimizer(model, model.hparams)
    grads0 = official["grads0"]
    # Adam-type steps move a weight by about lr g / (|g| + eps) ~ lr: compare well below lr
    # where the gradient is real. Some gradients are zero in exact arithmetic (attention key
    # biases: a softmax ignores a per-row constant; ~1e-9 of rounding here) and Adam turns that
    # rounding into steps of up to lr each way: there the bound is 2 x (steps so far) x lr.
    real = {k: g.abs() > 1e-6 for k, g in grads0.items()}
    lrs = []
    for n, ref in enumerate(official["steps"], start=1):
        lrs.append(model.refiner_lr(int(model.refiner_step)))
        out = model.loss(official["visual"][:2, None], official["visual"][2:, None], abnormal_classes=cls)
        opt.zero_grad(set_to_none=True)
        out["loss"].backward()
        params = dict(model.named_parameters())
        if n == 1:
            for k, g in grads0.items():
                torch.testing.assert_close(params[k].grad, g, atol=1e-5 * max(1.0, float(g.abs().max())),
                                           rtol=0, msg=k)
        model.before_step()
        opt.step()
        model.after_step()
        for k, v in ref.items():
            if k == "disAdj.sigma":  # official: a parameter no loss reaches, never moved
                assert torch.equal(v, official["state_dict"][k])
                continue
            got = params[k].detach()
            torch.testing.assert_close(got[real[k]], v[real[k]], atol=1e-7, rtol=0, msg=k)
            torch.testing.assert_close(got[~real[k]], v[~real[k]], atol=2 * n * official["lr"], rtol=0, msg=k)
    assert lrs == pytest.approx(official["refiner_lrs"], rel=1e-9, abs=0)
    assert lrs[0] == 0.0 and lrs[1] == official["lr"]  # the official warm-up starts at 0
    moved = params["video_anomaly_refiner.video_prototypes"].detach() - official_state(official)[
        "video_anomaly_refiner.video_prototypes"]
    assert moved.abs().max() > 1e-6  # the normality branch did move (from step 2 on)


def test_warm_cosine_schedule():
    lr = [warm_cosine_lr(i, 1.0, 0.1, total=10, warmup=3) for i in range(12)]
    assert lr[:3] == [0.0, 0.5, 1.0] and lr[3] == 1.0
    assert lr[3] > lr[5] > lr[9] > 0.1 and lr[10] == lr[11] == 0.1


def test_official_names_cover_every_parameter(official, build):
    model = build()
    mapped = get_method("dsanet").load_official_state_dict(official_state(official))
    own = set(model.state_dict()) | {f"text.{k}" for k, _ in model.text.named_parameters()}
    assert set(mapped) == own - {"refiner_step"}
    assert not any(k.startswith(("clip_adapter.clipmodel.", "text.visual.")) for k in mapped)
