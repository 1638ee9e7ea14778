"""``activation_checkpointing`` (blocks.recomputed): the methods whose official batch needs it to
fit a 6 GB card give the same loss and gradients with it on, while keeping less for the backward
(the bytes of the tensors autograd saves, counted with saved_tensors_hooks)."""
from __future__ import annotations

import pytest
import torch

from wsvad_core.methods import create_method, resolve_hparams

pytestmark = pytest.mark.usefixtures("one_thread")

D = 64
TEXT = dict(text_width=32, text_heads=2, text_layers=1, class_names=("Normal", "Explosion", "Fighting"))
SMALL = {
    "vadclip": dict(TEXT, n_segments=32),
    "dsanet": dict(TEXT, text_adapt_until=1, n_segments=32, decoder_depth=2, num_prototypes=4),
}


def step(name: str, on: bool):
    torch.manual_seed(0)
    model, _ = create_method(name, D, activation_checkpointing=on, **SMALL[name])
    model.train()
    g = torch.Generator().manual_seed(1)
    normal, abnormal = torch.randn(3, 2, 32, D, generator=g), torch.randn(3, 2, 32, D, generator=g) + 0.5
    saved = []

    def pack(t):
        saved.append(t.numel() * t.element_size())
        return t

    torch.manual_seed(2)  # the crops drawn and any dropout
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = model.loss(normal, abnormal, abnormal_classes=torch.tensor([1, 2, 1]))
    out["loss"].backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return out, grads, sum(saved)


@pytest.mark.parametrize("name", sorted(SMALL))
def test_same_loss_and_gradients_for_less_saved_memory(name):
    off, grads_off, saved_off = step(name, False)
    on, grads_on, saved_on = step(name, True)
    assert set(off) == set(on)
    for k in off:
        torch.testing.assert_close(on[k], off[k], rtol=0, atol=1e-6, msg=k)
    assert grads_on.keys() == grads_off.keys() and grads_off
    for n in grads_off:
        torch.testing.assert_close(grads_on[n], grads_off[n], rtol=1e-5, atol=1e-7, msg=n)
    assert saved_on < 0.75 * saved_off, (saved_on, saved_off)


def test_dsanet_recomputes_by_default_and_vadclip_does_not():
    # DSANet's official batch needs it on a 6 GB card (benchmarks/README.md, full_size.py)
    assert resolve_hparams("dsanet").activation_checkpointing is True
    assert resolve_hparams("vadclip").activation_checkpointing is False


def test_scoring_is_unaffected():
    model, _ = create_method("dsanet", D, **SMALL["dsanet"])
    x = torch.randn(1, 1, 40, D, generator=torch.Generator().manual_seed(3))
    a = model.score(x)
    model.video_anomaly_refiner.recompute = False
    torch.testing.assert_close(model.score(x), a, rtol=0, atol=0)
