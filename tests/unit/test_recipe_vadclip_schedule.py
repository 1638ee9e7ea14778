"""VadCLIP's official training schedule through the shared loop (what ``VadCLIPHParams``
declares; the loop runs it): official src/ucf_train.py, nwpu-zxr/VadCLIP.

* epochs: ``for e in range(max_epoch)``, each ``min(len(normal_loader), len(anomaly_loader))``
  iterations of two shuffled drop-last loaders over the per-crop lists (one row per crop), both
  restarted every epoch (ucf_train.py:62-71, 136-139);
* test after iteration i (0-based, inside the epoch) when ``i * 128 % 1280 == 0 and i != 0``
  (ucf_train.py:98-99; i % 10 == 0 at the official batch 64), best-on-test checkpoint saved;
* ``scheduler.step()`` of MultiStepLR([4, 8], 0.1) once per epoch (ucf_train.py:48, 113), then
  the best checkpoint's model state reloaded (ucf_train.py:116-117; the optimizer is not), and
  the final model is the best one (ucf_train.py:119-120).

The model is a toy with VadCLIP's hyper-parameters: the schedule is the loop's."""
import math

import pandas as pd
import pytest
import torch
from torch import nn

from wsvad_core.methods import resolve_hparams
from wsvad_core.runs import RunRecord
from wsvad_core.training.data import TrainingSet
from wsvad_core.training.loop import train

N_NORMAL, N_ABNORMAL, CROPS, B = 13, 14, 2, 2
EPOCH = min(N_NORMAL * CROPS // B, N_ABNORMAL * CROPS // B)  # 13 iterations (rows // batch)
EPOCHS = 10


class Toy(nn.Module):
    """Records what the loop feeds it: the rows of each batch and its weight at each call."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(()))
        self.batches, self.weights = [], []

    def loss(self, normal, abnormal, **kw):
        self.batches.append((normal[:, :, 0, 0].tolist(), abnormal[:, :, 0, 0].tolist()))
        self.weights.append(float(self.w.detach()))
        loss = (self.w - 1.0) ** 2 + 0 * normal.sum()
        return {"loss": loss}

    def before_step(self):
        pass

    def after_step(self):
        pass


def _data() -> TrainingSet:
    # feature [v, c, :, :] = 10 * v + c (+ 1000 for abnormal videos; exact in float16): a row names itself
    def feats(n, off):
        ids = (torch.arange(n)[:, None] * 10 + torch.arange(CROPS)[None, :] + off).float()
        return ids[:, :, None, None].expand(n, CROPS, 4, 3).clone().half()

    return TrainingSet(feats(N_NORMAL, 0), feats(N_ABNORMAL, 1000),
                       [f"n{i}" for i in range(N_NORMAL)], [f"a{i}" for i in range(N_ABNORMAL)])


def _official_eval_steps(epoch_len: int, epochs: int, every: int) -> list[int]:
    """Steps (1-based, counted over the whole run) after which ucf_train.py tests."""
    return [e * epoch_len + i + 1 for e in range(epochs) for i in range(epoch_len)
            if i % every == 0 and i != 0]


def _score(w: float) -> float:
    """A test-set score that depends on the weights only (so a resumed run scores alike)."""
    return math.sin(3e4 * w)


def _run(tmp_path, model=None, crash_at=None):
    hp = resolve_hparams("vadclip", batch_size=B, max_steps=EPOCH * EPOCHS)
    model = model or Toy()
    opt = torch.optim.SGD(model.parameters(), lr=hp.lr)
    evals = []

    def eval_fn(m):
        evals.append(float(m.w.detach()))
        if crash_at is not None and len(evals) == crash_at:
            raise KeyboardInterrupt("simulated kill")
        return _score(float(m.w.detach()))

    record = RunRecord(method="vadclip", feat_dim=3, overrides={}, seed=hp.seed, store_attrs={})
    rows = train(model, hp, _data(), tmp_path, device=torch.device("cpu"), optimizer=opt,
                 record=record, ckpt_every=7, progress=False, eval_fn=eval_fn,
                 eval_every=hp.eval_every)
    return hp, model, rows, evals


def test_vadclip_declares_the_official_schedule():
    hp = resolve_hparams("vadclip")
    assert (hp.lr, hp.lr_milestones, hp.lr_gamma) == (2e-5, (4, 8), 0.1)
    assert hp.reload_best_each_epoch and hp.eval_schedule == "in_epoch" and hp.eval_every == 10
    assert (hp.pairing, hp.sample_unit) == ("zipped", "crop")


def test_test_points_lr_and_best_reload_follow_ucf_train(tmp_path):
    expected_evals = _official_eval_steps(EPOCH, EPOCHS, 10)
    hp, model, rows, evals = _run(tmp_path)
    scores = [_score(w) for w in evals]
    log = pd.DataFrame(rows)
    assert len(log) == EPOCH * EPOCHS
    # test points: i * 128 % 1280 == 0 and i != 0 inside each epoch (not every 10 global steps)
    assert log.loc[log["test_score"].notna(), "step"].tolist() == expected_evals
    # MultiStepLR([4, 8], 0.1) stepped per epoch: epochs 1-4 at 2e-5, 5-8 at 2e-6, 9-10 at 2e-7
    epoch_of_step = (log["step"] - 1) // EPOCH
    want_lr = [2e-5 * 0.1 ** sum(e >= m for m in (4, 8)) for e in epoch_of_step]
    assert log["lr"].tolist() == pytest.approx(want_lr, rel=1e-12)
    # after every epoch the weights are the best-on-test ones so far (ucf_train.py:116-117)
    best_w, best_score, k = None, -1.0, 0
    for step in range(1, EPOCH * EPOCHS + 1):
        if step in expected_evals:
            if scores[k] > best_score:
                best_score, best_w = scores[k], evals[k]
            k += 1
        if step % EPOCH == 0 and step < EPOCH * EPOCHS:
            assert model.weights[step] == best_w, f"epoch ending at step {step}"
    # the final model is the best one (ucf_train.py:119-120)
    last = torch.load(tmp_path / "checkpoint.pt", weights_only=False)
    best = torch.load(tmp_path / "checkpoint_best.pt", weights_only=False)
    assert float(last["model"]["w"]) == float(best["model"]["w"]) == best_w


def test_batches_are_official_rows_one_epoch_at_a_time(tmp_path):
    hp, model, rows, evals = _run(tmp_path)
    normal_rows = [r for n, _ in model.batches for r in n]
    abnormal_rows = [r for _, a in model.batches for r in a]
    assert all(len(r) == 1 for r in normal_rows + abnormal_rows)  # one crop per sample
    all_normal = {10 * v + c for v in range(N_NORMAL) for c in range(CROPS)}
    for e in range(EPOCHS):
        ep_n = [r[0] for r in normal_rows[e * EPOCH * B:(e + 1) * EPOCH * B]]
        ep_a = [r[0] for r in abnormal_rows[e * EPOCH * B:(e + 1) * EPOCH * B]]
        # a shuffled drop-last pass: every row at most once per epoch, both loaders restarted
        assert len(set(ep_n)) == len(ep_n) == EPOCH * B and set(ep_n) <= all_normal
        assert len(set(ep_a)) == len(ep_a) == EPOCH * B
    assert normal_rows[:EPOCH * B] != normal_rows[EPOCH * B:2 * EPOCH * B]  # reshuffled


def test_crash_and_resume_keep_the_schedule(tmp_path):
    _, ref, ref_rows, _ = _run(tmp_path / "ref")
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path / "crash", crash_at=4)  # mid-run, after a few epochs and reloads
    assert (tmp_path / "crash" / "resume.pt").exists()
    _, resumed, res_rows, _ = _run(tmp_path / "crash")
    assert float(resumed.w.detach()) == float(ref.w.detach())
    drop = ["time_s", "peak_mem_mb"]
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "ref" / "train_log.csv").drop(columns=drop),
                                  pd.read_csv(tmp_path / "crash" / "train_log.csv").drop(columns=drop))
