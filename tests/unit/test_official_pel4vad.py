"""PEL4VAD: the official XModel's seeded random weights (small widths; UCF-Crime's and
XD-Violence's settings, see tests/fixtures/pel4vad/README.md), loaded through wsvad's name
mapping, give the official test scores (crop mean + smoothing), training loss, gradients and the
parameters after one Adam step at lr 1e-5."""
import numpy as np
import pytest
import torch

from official_fixtures import TOL, official_model, torch_fixture
from wsvad_core.methods import create_method, get_method, load_official, make_optimizer
from wsvad_core.methods.pel4vad import fixed_smooth, pad_uniform, slide_smooth

pytestmark = pytest.mark.usefixtures("one_thread")
CASES = ("ucf", "xd")


@pytest.fixture(scope="module")
def official():
    return torch_fixture("pel4vad", "official.pt")


def build(case: dict, tmp_path, state=None, **extra):
    prompts = tmp_path / "prompts.npy"
    np.save(prompts, case["prompts"].numpy())
    cfg = dict(case["config"])
    model = official_model("pel4vad", case["feat_dim"], case["state_dict"] if state is None else state,
                           expect_missing=["prompt_features"], prompt_file=str(prompts),
                           **cfg, **extra)
    return model


def split(case):
    x, labels = case["train_x"], case["labels"]
    n = int((labels == 0).sum())
    return x[:n, None], x[n:, None], case["classes"][n:]


@pytest.mark.parametrize("name", CASES)
def test_scores_match_official(official, name, tmp_path):
    case = official[name]
    model = build(case, tmp_path)
    got = model.score(case["test_video"][None])[0]
    torch.testing.assert_close(got, case["scores"], **TOL)
    model.hparams.smooth = "none"  # the crop mean before infer.py's smoothing (= test.py's scores)
    torch.testing.assert_close(model.score(case["test_video"][None])[0], case["scores_raw"], **TOL)


@pytest.mark.parametrize("name", CASES)
def test_loss_gradients_and_one_step_match_official(official, name, tmp_path):
    case = official[name]
    model = build(case, tmp_path, lr=1e-5)
    normal, abnormal, cls = split(case)
    torch.manual_seed(123)  # the dropout masks, drawn in the official order
    model.train()
    out = model.loss(normal, abnormal, abnormal_classes=cls)
    torch.testing.assert_close(out["video_bce"], case["loss1"], **TOL)
    torch.testing.assert_close(out["prompt_kl"], case["lamda_loss2"] if "lamda_loss2" in case
                               else case["config"]["lamda"] * case["loss2"], **TOL)
    opt = make_optimizer(model, model.hparams)
    opt.zero_grad()
    out["loss"].backward()
    model.before_step()
    opt.step()
    model.after_step()
    for k, p in model.named_parameters():
        g = case["grads"][k]
        torch.testing.assert_close(p.grad, g, atol=1e-5 * max(1.0, float(g.abs().max())), rtol=0)
    after = model.state_dict()
    for k, v in case["state_after_step"].items():
        # Adam's first step moves a weight by lr g / (|g| + 1e-8), about lr = 1e-5: compare well
        # below that where the gradient is real. k.bias's gradient is zero in exact arithmetic
        # (a softmax ignores a per-row constant; ~1e-9 of rounding here), and Adam turns that
        # rounding into a step of up to lr either way: there the bound is 2 lr.
        real = case["grads"][k].abs() > 1e-6 if k in case["grads"] else torch.ones_like(v, dtype=bool)
        torch.testing.assert_close(after[k][real], v[real], atol=1e-7, rtol=0)
        torch.testing.assert_close(after[k][~real], v[~real], atol=2e-5, rtol=0)
    moved = max(float((after[k] - case["state_dict"][k]).abs().max()) for k in case["state_dict"])
    assert moved > 5e-6  # the step happened


def test_official_names_cover_every_parameter(official, tmp_path):
    case = official["ucf"]
    model = build(case, tmp_path)
    assert set(case["state_dict"]) == {k for k in model.state_dict() if k != "prompt_features"}
    # a DataParallel checkpoint loads too
    wrapped = {"module." + k: v for k, v in case["state_dict"].items()}
    fresh, _ = create_method("pel4vad", case["feat_dim"], **case["config"])
    load_official(get_method("pel4vad"), fresh, wrapped)
    torch.testing.assert_close(fresh.classifier.weight, case["state_dict"]["classifier.weight"])


def test_smoothing_as_official_utils():
    s = torch.arange(1.0, 11.0)
    # fixed: blocks of 4 -> means 2.5, 6.5 and (9 + 10 + 0 + 0) / 4
    torch.testing.assert_close(fixed_smooth(s, 4), torch.tensor([2.5] * 4 + [6.5] * 4 + [4.75] * 2))
    # slide: mean of the next 3, zeros after the end
    torch.testing.assert_close(slide_smooth(s, 3)[-3:], torch.tensor([9.0, 19 / 3, 10 / 3]))
    assert slide_smooth(s, 3).shape == s.shape


def test_pad_uniform_is_process_feat():
    x = np.arange(2 * 500 * 1, dtype=np.float32).reshape(2, 500, 1)
    out = pad_uniform(x, 200)
    idx = np.linspace(0, 499, 200, dtype=np.uint16)  # utils.uniform_extract
    np.testing.assert_array_equal(out, x[:, idx])
    short = pad_uniform(x[:, :7], 10)
    assert short.shape == (2, 10, 1) and not short[:, 7:].any()


def test_prompts_random_is_loud_and_file_is_used(caplog, tmp_path, official):
    with caplog.at_level("WARNING"):
        model, _ = create_method("pel4vad", 64, class_names=("Normal", "A", "B"))
    assert "RANDOM-INIT" in caplog.text and model.prompt_provenance == {"prompts": "random-init"}
    case = official["ucf"]
    m = build(case, tmp_path)
    torch.testing.assert_close(m.prompt_features, case["prompts"])
    assert m.prompt_provenance["prompts"].endswith("prompts.npy")
    bad = tmp_path / "bad.npy"
    np.save(bad, np.zeros((3, 31), np.float32))
    with pytest.raises(ValueError, match="expected"):
        create_method("pel4vad", 64, class_names=("Normal", "A", "B"), prompt_file=str(bad))
