"""VadCLIP: the official CLIPVAD's random weights (small dimensions, see
tests/fixtures/vadclip/README.md), loaded through wsvad's name mapping, give the official text
features, coarse/fine logits, loss terms and test scores."""
import pytest
import torch

from official_fixtures import TOL, official_model, torch_fixture
from wsvad_core.methods.text import tokenize

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def official():
    return torch_fixture("vadclip", "official.pt")


@pytest.fixture(scope="module")
def model(official):
    cfg = dict(official["config"])
    feat_dim = cfg.pop("feat_dim")
    sd = dict(official["state_dict"])
    # the fixture keeps only the token-embedding rows the prompts use (the rest is never read)
    tok = torch.zeros(official["vocab_size"], official["token_values"].shape[1])
    tok[official["token_rows"]] = official["token_values"]
    sd["clipmodel.token_embedding.weight"] = tok
    assert any(k.startswith("clipmodel.visual.") for k in sd)  # dropped by the mapping
    m = official_model("vadclip", feat_dim, sd, class_names=official["class_names"], **cfg)
    return m.eval()


def test_tokens_match_clip_tokenize(official):
    torch.testing.assert_close(tokenize(official["prompt_text"]), official["tokens"])


def test_forward_matches_official(official, model):
    with torch.no_grad():
        text, logits1, logits2 = model(official["visual"], official["lengths"])
    torch.testing.assert_close(text, official["text_features"], **TOL)
    torch.testing.assert_close(logits1, official["logits1"], **TOL)
    # fine logits are cosines / 0.07: compare at that scale
    torch.testing.assert_close(logits2 * 0.07, official["logits2"] * 0.07, **TOL)


def test_loss_terms_match_official(official, model):
    # ucf_train.py CLAS2, CLASM and the text-separation term (/(K-1) * 0.1; 13 = K-1 on UCF)
    names = official["class_names"]
    cls = torch.tensor([names.index(n) for n in official["names"][2:]])
    with torch.no_grad():
        out = model.loss(official["visual"][:2, None], official["visual"][2:, None],
                         abnormal_classes=cls)
    for key in ("clas2", "clasm", "text_sep"):
        torch.testing.assert_close(out[key], official[key], **TOL)


def test_test_scores_match_official(official, model):
    # ucf_test.py: 70 snippets in windows of 32 (last one padded), sigmoid of the coarse logits
    got = model.score(official["long_video"][None, None])[0]
    torch.testing.assert_close(got, official["scores"], **TOL)
