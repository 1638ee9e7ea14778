"""CLIP-TSA's test-time noise: the official hard attention draws ``torch.normal`` from the global
RNG at every forward (utils/hard_attention.py ``PerturbedTopK``), so each test video gets fresh
noise (test_10crop.py scores the videos one after another). wsvad draws it from one generator
per scoring pass (``score_videos``: one test-set evaluation) seeded with the run's seed: every
video different, the pass reproducible, the first video's noise the seed's (the equivalence
fixture, tests/fixtures/cliptsa). Outside a pass a video is scored as if alone."""
import numpy as np
import pytest
import torch

from official_fixtures import TOL, official_model, torch_fixture
from wsvad_core.evaluation.evaluate import score_videos

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def official():
    return torch_fixture("cliptsa", "official.pt")


@pytest.fixture(scope="module")
def model(official):
    return official_model("cliptsa", official["feat_dim"], official["state_dict"],
                          seed=official["seed"])


def test_identical_videos_in_one_pass_get_different_noise(official, model):
    x = official["x_test1"].repeat(2, 1, 1, 1)  # the same video twice
    with model.scoring_pass():
        first = model.score(x)
    assert (first[0] - first[1]).abs().max() > 1e-4  # fresh noise for the second video
    with model.scoring_pass():
        torch.testing.assert_close(model.score(x), first, rtol=0, atol=0)  # reproducible
    # the first video's noise is the seed's: the official score after torch.manual_seed(seed)
    torch.testing.assert_close(first[0], official["out_test1"], **TOL)


def test_outside_a_pass_each_video_is_scored_as_if_alone(official, model):
    x = official["x_test1"].repeat(2, 1, 1, 1)
    alone = model.score(x)
    torch.testing.assert_close(alone[1], alone[0], rtol=0, atol=0)
    torch.testing.assert_close(alone[0], official["out_test1"], **TOL)


def test_a_scoring_pass_draws_fresh_noise_per_video(official, model):
    video = official["x_test1"][0].numpy()
    store = {"a": video, "b": video.copy()}  # score_videos reads store[video_id]
    dev = torch.device("cpu")
    once = score_videos(model, store, ["a", "b"], dev, progress=False)
    again = score_videos(model, store, ["a", "b"], dev, progress=False)
    assert np.abs(once["a"] - once["b"]).max() > 1e-4
    for vid in once:
        np.testing.assert_array_equal(once[vid], again[vid])
    # one stream over the pass's videos in order: the same as one call holding both in a pass
    with model.scoring_pass():
        both = model.score(official["x_test1"].repeat(2, 1, 1, 1)).numpy()
    np.testing.assert_allclose(np.stack([once["a"], once["b"]]), both, rtol=0, atol=1e-6)
