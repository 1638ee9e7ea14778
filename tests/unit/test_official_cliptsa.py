"""CLIP-TSA: the official module's random weights, loaded through wsvad's name mapping, give the
official outputs (tests/fixtures/cliptsa/README.md says how the fixture was made)."""
import pytest
import torch

from official_fixtures import TOL, official_model, torch_fixture
from wsvad_core.methods import get_method

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def official():
    return torch_fixture("cliptsa", "official.pt")


@pytest.fixture(scope="module")
def model(official):
    return official_model("cliptsa", official["feat_dim"], official["state_dict"],
                          seed=official["seed"])


def test_scores_match_official(official, model):
    # test_10crop.py: one video, eval mode, the hard-attention noise from a seeded RNG
    for name in ("test1", "test3"):  # one crop (k capped) and three crops in one call
        got = model.score(official[f"x_{name}"])[0]
        torch.testing.assert_close(got, official[f"out_{name}"], **TOL)


def test_loss_matches_official(official, model):
    # train.py's cost (RTFM_loss + smooth + sparsity) on a 2 + 2 batch, eval mode (no dropout)
    B = official["batch_size"]
    model.eval()
    torch.manual_seed(official["seed"])
    out = model.loss(official["batch"][:B], official["batch"][B:])
    torch.testing.assert_close(out["loss"], official["loss"], **TOL)


def test_unused_vit_mlp_is_dropped(official):
    # model.py always builds MLP(input_dim=D); it only runs for inputs wider than 512
    sd = dict(official["state_dict"])
    sd.update({k: torch.zeros(shape) for k, shape in official["mlp_shapes"].items()})
    mapped = get_method("cliptsa").load_official_state_dict({"model_state_dict": sd})
    assert not any(k.startswith("mlp.") for k in mapped)
    assert "aggregate.conv_5.0.weight" in mapped and "hard_attention.scorer.fc1.weight" in mapped
    wide = {"mlp.fc1.weight": torch.zeros(1024, 2048), "mlp.fc2.weight": torch.zeros(512, 1024)}
    assert set(get_method("cliptsa").load_official_state_dict(wide)) == set(wide)
