"""Frame metrics against hand-computed values, and snippet-to-frame expansion."""
import math
import time

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from wsvad_core.evaluation.metrics import frame_metrics, snippet_to_frame


def _tiny():
    # 6 frames: 4 of an abnormal video, 2 of a normal one
    labels = {"abn": np.array([0, 1, 1, 0], np.uint8), "nor": np.array([0, 0], np.uint8)}
    scores = {"abn": np.array([0.1, 0.35, 0.9, 0.4]), "nor": np.array([0.2, 0.6])}
    return scores, labels, {"abn": 1, "nor": 0}


def test_frame_metrics_hand_computed():
    m = frame_metrics(*_tiny())
    # positives {0.35, 0.9} vs negatives {0.1, 0.4, 0.2, 0.6}: 2 + 4 of 8 pairs ranked right
    assert m["auc"] == pytest.approx(6 / 8)
    # ranking P N N P N N: precision 1 at recall 1/2, 2/4 at recall 1
    assert m["ap_step"] == pytest.approx(0.5 * 1 + 0.5 * 0.5)
    # PR points (r, p): (1, 1/2) (1/2, 1/3) (1/2, 1/2) (1/2, 1) (0, 1); trapezoids:
    # 1/2 * (1/2 + 1/3) / 2 + 1/2 * (1 + 1) / 2 = 5/24 + 1/2
    assert m["ap_trapz"] == pytest.approx(17 / 24)
    # abnormal video only: positives {0.35, 0.9} vs {0.1, 0.4}: 3 of 4 pairs
    assert m["auc_abnormal"] == pytest.approx(3 / 4)
    assert m["far_normal"] == pytest.approx(0.5)  # 0.6 >= 0.5, 0.2 is not
    assert m["n_frames"] == 6 and m["n_videos"] == 2
    assert frame_metrics(*_tiny(), far_threshold=0.61)["far_normal"] == 0.0


def test_frame_metrics_errors_and_degenerate():
    scores, labels, vl = _tiny()
    with pytest.raises(ValueError, match="'abn': 3 frame scores for 4 GT frames"):
        frame_metrics({**scores, "abn": scores["abn"][:3]}, labels, vl)
    with pytest.raises(KeyError, match="no frame scores for test video 'nor'"):
        frame_metrics({"abn": scores["abn"]}, labels, vl)
    m = frame_metrics({"nor": scores["nor"]}, {"nor": labels["nor"]}, {"nor": 0})
    assert math.isnan(m["auc"]) and math.isnan(m["ap_step"]) and math.isnan(m["auc_abnormal"])


def test_snippet_to_frame_lengths():
    s = np.array([0.1, 0.2, 0.3])
    f = snippet_to_frame(s, 4, 12)
    assert f.dtype == np.float32 and len(f) == 12
    assert np.allclose(f, np.repeat(s, 4))
    assert np.allclose(snippet_to_frame(s, 4, 10), np.repeat(s, 4)[:10])  # truncate
    assert np.allclose(snippet_to_frame(s, 4, 14)[12:], 0.3)  # pad with the last score
    with pytest.raises(ValueError):
        snippet_to_frame([], 16, 16)


def test_full_size_is_fast_and_matches_sklearn():
    rng = np.random.default_rng(0)
    n_snip = rng.integers(4, 400, size=290)
    n_snip[-1] += 1_114_144 // 16 - n_snip.sum()  # UCF-Crime test size
    labels, snippets, vl = {}, {}, {}
    for i, t in enumerate(n_snip):
        vid = f"v{i}"
        vl[vid] = int(i < 140)
        lab = np.zeros(t * 16, np.uint8)
        if vl[vid]:
            lab[t * 4: t * 10] = 1
        labels[vid] = lab
        snippets[vid] = rng.random(t) * 0.6 + lab[::16] * 0.3
    t0 = time.perf_counter()
    frames = {v: snippet_to_frame(snippets[v], 16, len(labels[v])) for v in labels}
    expand_s = time.perf_counter() - t0
    assert sum(len(f) for f in frames.values()) == 1_114_144
    assert expand_s < 0.5
    t0 = time.perf_counter()
    m = frame_metrics(frames, labels, vl)
    metrics_s = time.perf_counter() - t0
    assert metrics_s < 3.0  # ~0.3 s here; generous for slow CI runners
    y = np.concatenate(list(labels.values()))
    s = np.concatenate(list(frames.values()))
    assert m["auc"] == pytest.approx(roc_auc_score(y, s))
    assert m["n_frames"] == 1_114_144
