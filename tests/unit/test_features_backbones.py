"""Backbone registry: output dims, seeded random init, strict weights loading."""
from __future__ import annotations

import hashlib
import logging

import pytest
import torch

from wsvad_core.errors import WeightsMismatchError
from wsvad_core.features.backbones import backbone_class, create_backbone, list_backbones

SMALL = {"crop_size": 32}  # tiny inputs: the architecture is the real one, only the crop shrinks
LOGGER = "wsvad_core.features.backbones"


def clips(name: str, n: int = 2, seed: int = 0) -> torch.Tensor:
    frames = 4 if name == "pytorchvideo_i3d_r50" else 2
    return torch.randn(n, 3, frames, 32, 32, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def i3d():
    return create_backbone("pytorchvideo_i3d_r50", SMALL)


@pytest.fixture(scope="module")
def clip():
    return create_backbone("openclip_vitb16", SMALL)


def embed(model, x):
    with torch.inference_mode():
        return model.embed(x)


# every registered backbone: (kind, dim, family), the published feature family it reproduces
CARDS = {
    "i3d_inception_i3dpt": ("i3d", 1024, "kinetics_i3d"),
    "i3d_inception_piergiaj": ("i3d", 1024, "kinetics_i3d"),
    "i3res50": ("i3d", 2048, "rtfm_i3d_r50"),
    "openai_clip_vitb16": ("clip", 512, "vadclip_vitb16"),
    "openclip_vitb16": ("clip", 512, "openclip_vitb16"),
    "pytorchvideo_i3d_r50": ("i3d", 2048, "pytorchvideo_i3d_r50"),
    "timesformer": ("timesformer", 768, "timesformer"),
}


def test_registry_lists_every_backbone_with_its_card():
    assert list_backbones() == sorted(CARDS)
    for name, (kind, dim, family) in CARDS.items():
        card = backbone_class(name).card()
        assert (card.name, card.kind, card.dim, card.family) == (name, kind, dim, family), name
    with pytest.raises(KeyError, match="unknown backbone 'nope'.*pytorchvideo_i3d_r50"):
        create_backbone("nope", {})


@pytest.mark.parametrize("name", sorted(CARDS))
def test_every_backbone_embeds_small_clips_at_its_dim(name, monkeypatch):
    """The real architectures at 32 px (8-frame snippets; TimeSformer 2 frames at depth 1): frozen,
    in eval mode, one finite (N, dim) vector per clip."""
    from wsvad_core.features.backbones.timesformer import TimeSformer
    from wsvad_core.recipes import normalize_recipe

    monkeypatch.setattr(TimeSformer, "ARCH", {**TimeSformer.ARCH, "num_hidden_layers": 1})
    frames = 2 if name == "timesformer" else 8
    r = normalize_recipe({"backbone": name, "crop_size": 32, "resize": 32, "clip_len": 8, "stride": 8,
                          "frames_per_snippet": frames})
    model = create_backbone(name, r)
    kind, dim, family = CARDS[name]
    assert (model.kind, model.dim, model.family, r["kind"], r["family"]) == (kind, dim, family, kind, family)
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    x = torch.randn(2, 3, frames, 32, 32, generator=torch.Generator().manual_seed(1))
    out = embed(model, x)
    assert out.shape == (2, dim) and torch.isfinite(out).all()
    assert not torch.allclose(out[0], out[1])  # the input matters


def test_i3d_dims_and_kind(i3d):
    assert (i3d.dim, i3d.kind, i3d.name) == (2048, "i3d", "pytorchvideo_i3d_r50")
    card = i3d.card()
    assert (card.name, card.kind, card.dim, card.family) == ("pytorchvideo_i3d_r50", "i3d", 2048,
                                                             "pytorchvideo_i3d_r50")
    assert not i3d.training and not any(p.requires_grad for p in i3d.parameters())
    out = embed(i3d, clips("pytorchvideo_i3d_r50"))
    assert out.shape == (2, 2048) and torch.isfinite(out).all()
    assert (out >= 0).all()  # pooled after the last ReLU, before the projection
    with pytest.raises(ValueError, match=r"\(N, 3, F, S, S\)"):
        i3d.embed(torch.zeros(2, 8, 3, 32, 32))


def test_i3d_feature_is_the_heads_pooled_vector(i3d):
    """Our feature = pytorchvideo I3D-R50's trunk (same seed, same weights) averaged over T, H,
    W: exactly the head's pooled pre-projection vector when the head's fixed 4x7x7 pool covers
    the whole trunk output (8x224x224 input); a global mean works at any clip and crop size."""
    from pytorchvideo.models.hub.resnet import i3d_r50

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = i3d_r50(pretrained=False).eval()
    head = net.blocks[-1]
    assert tuple(head.pool.kernel_size) == (4, 7, 7) and head.proj.in_features == 2048
    trunk_out = torch.rand(1, 2048, 4, 7, 7)
    assert torch.allclose(head.pool(trunk_out).flatten(1), trunk_out.mean(dim=(2, 3, 4)), atol=1e-6)
    x = clips("pytorchvideo_i3d_r50", n=1)
    with torch.inference_mode():
        h = x
        for block in net.blocks[:-1]:
            h = block(h)
        assert torch.allclose(i3d.embed(x), h.mean(dim=(2, 3, 4)), rtol=1e-4, atol=1e-6)


def test_clip_dims_and_frame_average(clip):
    assert (clip.dim, clip.kind) == (512, "clip") and clip.card().dim == 512
    x = clips("openclip_vitb16")
    out = embed(clip, x)
    assert out.shape == (2, 512)
    with torch.inference_mode():
        per_frame = torch.stack([clip.visual(x[:, :, f]) for f in range(x.shape[2])], 1)
    assert torch.allclose(out, per_frame.mean(1), atol=1e-5)


def test_random_init_is_seeded_and_loud(i3d, caplog):
    torch.manual_seed(123)
    expect_next = torch.rand(3)
    torch.manual_seed(123)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        again = create_backbone("pytorchvideo_i3d_r50", {**SMALL, "init_seed": 0})
    # the caller's RNG stream is untouched by building the network
    assert torch.equal(torch.rand(3), expect_next)
    assert any("RANDOM-INIT" in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records)
    assert again.provenance == {"weights": "random-init", "init_seed": 0}
    assert same_weights(again, i3d)
    other = create_backbone("pytorchvideo_i3d_r50", {**SMALL, "init_seed": 1})
    assert other.provenance["init_seed"] == 1
    assert not same_weights(other, i3d)


def test_clip_random_init_is_seeded(clip):
    assert same_weights(create_backbone("openclip_vitb16", {**SMALL, "init_seed": 0}), clip)


def same_weights(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_i3d_weights_round_trip(i3d, tmp_path, caplog):
    # a pytorchvideo-style training checkpoint: nested, DataParallel prefix, with the head
    from pytorchvideo.models.hub.resnet import i3d_r50

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(7)
        net = i3d_r50(pretrained=False)
    path = tmp_path / "i3d_ckpt.pyth"
    torch.save({"epoch": 3, "model_state": {f"module.{k}": v for k, v in net.state_dict().items()}}, path)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        loaded = create_backbone("pytorchvideo_i3d_r50", {**SMALL, "weights": str(path)})
    assert not any("RANDOM-INIT" in r.getMessage() for r in caplog.records)
    assert loaded.provenance == {"weights": str(path), "sha256": sha(path)}
    assert torch.equal(loaded.blocks[0].conv.weight, net.blocks[0].conv.weight)

    # our own state dict (trunk only, no head) under "state_dict" loads back to the same network
    own = tmp_path / "own.pt"
    torch.save({"state_dict": i3d.state_dict()}, own)
    back = create_backbone("pytorchvideo_i3d_r50", {**SMALL, "weights": str(own), "init_seed": 5})
    assert same_weights(back, i3d)
    assert back.provenance["sha256"] == sha(own)


def test_i3d_wrong_weights_raise(i3d, tmp_path):
    sd = dict(i3d.state_dict())
    sd["blocks.0.conv.weight"] = torch.zeros(3, 3)
    del sd["blocks.5.res_blocks.2.branch2.norm_c.bias"]
    sd["fc.weight"] = torch.zeros(2, 2)
    path = tmp_path / "wrong.pt"
    torch.save(sd, path)
    with pytest.raises(WeightsMismatchError) as info:
        create_backbone("pytorchvideo_i3d_r50", {**SMALL, "weights": str(path)})
    msg = str(info.value)
    assert str(path) in msg
    assert "missing keys: blocks.5.res_blocks.2.branch2.norm_c.bias" in msg
    assert "unexpected keys: fc.weight" in msg
    assert "blocks.0.conv.weight (file (3, 3), model (64, 3, 5, 7, 7))" in msg


def test_clip_weights_round_trip_and_mismatch(clip, i3d, tmp_path):
    path = tmp_path / "clip_visual.pt"
    torch.save({"model": clip.state_dict()}, path)  # keys "visual.*"
    loaded = create_backbone("openclip_vitb16", {**SMALL, "weights": str(path), "init_seed": 9})
    assert same_weights(loaded, clip)
    assert loaded.provenance == {"weights": str(path), "sha256": sha(path)}

    # an I3D file is not a CLIP file; the error names the file and the keys
    wrong = tmp_path / "i3d.pt"
    torch.save({k: v for k, v in list(i3d.state_dict().items())[:5]}, wrong)
    with pytest.raises(WeightsMismatchError, match=r"i3d\.pt: does not fit backbone openclip_vitb16.*"
                                                   r"missing keys: .*unexpected keys: blocks\.0\.conv\.weight"):
        create_backbone("openclip_vitb16", {**SMALL, "weights": str(wrong)})


def test_clip_weights_at_another_size_explain_themselves(clip, tmp_path):
    sd = {k[len("visual."):]: v for k, v in clip.state_dict().items()}  # plain visual.state_dict()
    path = tmp_path / "visual.pt"
    torch.save(sd, path)
    with pytest.raises(WeightsMismatchError, match="another crop_size.*positional_embedding"):
        create_backbone("openclip_vitb16", {"crop_size": 48, "weights": str(path)})


def test_unreadable_weights(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothere.pt"):
        create_backbone("pytorchvideo_i3d_r50", {"weights": str(tmp_path / "nothere.pt")})
    junk = tmp_path / "junk.pt"
    torch.save([1, 2, 3], junk)
    with pytest.raises(WeightsMismatchError, match=r"junk\.pt: holds no state dict"):
        create_backbone("pytorchvideo_i3d_r50", {"weights": str(junk)})
    text = tmp_path / "text.pt"
    text.write_text("not a checkpoint")
    with pytest.raises(WeightsMismatchError, match=r"text\.pt: is not a PyTorch weights file"):
        create_backbone("pytorchvideo_i3d_r50", {"weights": str(text)})
