"""The shared loop: paired sampling, determinism, crash + resume equivalence, the log."""
from dataclasses import dataclass

import pandas as pd
import pytest
import torch
from torch import nn

from train_record import record_for
from wsvad_core.training.data import PairedSampler, TrainingSet
from wsvad_core.training.loop import train


@dataclass
class HP:
    batch_size: int = 4
    lr: float = 0.05
    max_steps: int = 60
    seed: int = 3
    eval_min_step: int = 0


class Toy(nn.Module):
    """A linear snippet scorer with a MIL hinge: enough to exercise the loop."""

    def __init__(self, dim=8, crash_at=None):
        super().__init__()
        self.fc = nn.Linear(dim, 1)
        self.crash_at, self.calls = crash_at, 0

    def loss(self, normal, abnormal):
        self.calls += 1
        if self.crash_at is not None and self.calls == self.crash_at:
            raise KeyboardInterrupt("simulated kill")
        sn = torch.sigmoid(self.fc(normal)).mean(1).amax(1)
        sa = torch.sigmoid(self.fc(abnormal)).mean(1).amax(1)
        hinge = torch.relu(1 - sa + sn).mean()
        return {"loss": hinge, "hinge": hinge}

    def before_step(self):  # the loop's hooks (methods.base.WSVADModel)
        pass

    def after_step(self):
        pass


def toy_data(n=12, dim=8):
    g = torch.Generator().manual_seed(0)
    normal = torch.randn(n, 1, 6, dim, generator=g)
    abnormal = torch.randn(n, 1, 6, dim, generator=g)
    abnormal[:, :, 2, 0] += 4.0  # one anomalous segment per abnormal video
    return TrainingSet(normal.half(), abnormal.half(), [f"n{i}" for i in range(n)], [f"a{i}" for i in range(n)])


def run(tmp, model, data, **kw):
    torch.manual_seed(123)  # model init is outside the loop's seeding
    opt = torch.optim.SGD(model.parameters(), lr=HP.lr)
    return train(model, HP(), data, tmp, device=torch.device("cpu"), optimizer=opt, ckpt_every=25,
                 progress=False, record=record_for(HP()), **kw)


def test_paired_sampler_covers_each_class_per_epoch():
    s = PairedSampler(8, 5, 4, seed=0)
    seen_n = torch.cat([s.next()[0] for _ in range(2)])
    assert sorted(seen_n.tolist()) == list(range(8))
    a = PairedSampler(8, 5, 4, seed=0)
    b = PairedSampler(8, 5, 4, seed=0)
    assert all(torch.equal(x, y) for _ in range(5) for x, y in zip(a.next(), b.next()))


def test_loss_falls_and_log_written(tmp_path):
    torch.manual_seed(123)
    model = Toy()
    run(tmp_path, model, toy_data())
    log = pd.read_csv(tmp_path / "train_log.csv")
    assert len(log) == HP.max_steps and list(log["step"]) == list(range(1, HP.max_steps + 1))
    assert {"loss", "hinge", "lr", "time_s", "peak_mem_mb"} <= set(log.columns)
    assert log["loss"].tail(10).mean() < log["loss"].head(10).mean()
    ckpt = torch.load(tmp_path / "checkpoint.pt", weights_only=False)
    # the run's record, with the last step and the peak memory filled in by the loop
    assert ckpt["step"] == HP.max_steps and ckpt["hparams"]["seed"] == 3 and ckpt["method"] == "toy"
    assert ckpt["peak_memory"]["peak_rss_mb"] > 0 and ckpt["best"] is None
    assert not (tmp_path / "resume.pt").exists()


def test_crash_then_resume_equals_uninterrupted(tmp_path):
    data = toy_data()
    torch.manual_seed(123)
    ref = Toy()
    run(tmp_path / "ref", ref, data)

    torch.manual_seed(123)
    crashing = Toy(crash_at=40)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "crash", crashing, data)
    assert (tmp_path / "crash" / "resume.pt").exists()
    assert not (tmp_path / "crash" / "checkpoint.pt").exists()
    torch.manual_seed(999)  # a fresh process would initialise differently; the resume state wins
    resumed = Toy()
    run(tmp_path / "crash", resumed, data)
    for a, b in zip(ref.parameters(), resumed.parameters()):
        assert torch.equal(a, b)
    ref_log = pd.read_csv(tmp_path / "ref" / "train_log.csv")
    res_log = pd.read_csv(tmp_path / "crash" / "train_log.csv")
    pd.testing.assert_frame_equal(ref_log.drop(columns=["time_s", "peak_mem_mb"]),
                                  res_log.drop(columns=["time_s", "peak_mem_mb"]))


def test_best_checkpoint_tracks_eval(tmp_path):
    scores = iter([0.5, 0.9, 0.7])
    torch.manual_seed(123)
    rows = run(tmp_path, Toy(), toy_data(), eval_fn=lambda m: next(scores), eval_every=20)
    best = torch.load(tmp_path / "checkpoint_best.pt", weights_only=False)
    assert best["step"] == 40
    last = torch.load(tmp_path / "checkpoint.pt", weights_only=False)
    assert last["best"] == {"step": 40, "score": 0.9}
    assert [r.get("test_score") for r in rows if "test_score" in r] == [0.5, 0.9, 0.7]


@pytest.mark.parametrize("min_step, evaluated, best_step",
                         [(0, [20, 40, 60], 20), (30, [40, 60], 60), (60, [60], 60), (500, [60], 60)])
def test_best_only_after_eval_min_step(tmp_path, caplog, min_step, evaluated, best_step):
    """As the official loops (`step % N == 0 and step > min_step`): the best checkpoint is
    chosen among evaluations after eval_min_step only; when max_steps does not pass it, the
    last step is scored so that a best checkpoint exists, and a log line says so."""
    @dataclass
    class MinHP(HP):
        eval_min_step: int = min_step

    score_at = {20: 0.9, 40: 0.5, 60: 0.7}  # the highest score comes early
    torch.manual_seed(123)
    model = Toy()  # model.calls == steps done
    caplog.set_level("INFO", logger="wsvad_core.training.loop")
    rows = train(model, MinHP(), toy_data(), tmp_path, device=torch.device("cpu"),
                 optimizer=torch.optim.SGD(model.parameters(), lr=HP.lr), ckpt_every=25, progress=False,
                 eval_fn=lambda m: score_at[m.calls], eval_every=20, record=record_for(MinHP()))
    assert [r["step"] for r in rows if "test_score" in r] == evaluated
    assert torch.load(tmp_path / "checkpoint_best.pt", weights_only=False)["step"] == best_step
    assert ("last step only" in caplog.text) == (min_step >= HP.max_steps)

def test_nan_loss_is_reported(tmp_path):
    class NaNToy(Toy):
        def loss(self, normal, abnormal):
            out = super().loss(normal, abnormal)
            return {"loss": out["loss"] * float("nan")}

    with pytest.raises(FloatingPointError, match="lower lr"):
        run(tmp_path, NaNToy(), toy_data())


def test_resume_state_from_other_hparams_is_ignored(tmp_path):
    data = toy_data()
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path, Toy(crash_at=40), data)
    assert (tmp_path / "resume.pt").exists()

    @dataclass
    class Longer(HP):
        max_steps: int = 70

    torch.manual_seed(123)
    opt_model = Toy()
    rows = train(opt_model, Longer(), data, tmp_path, device=torch.device("cpu"),
                 optimizer=torch.optim.SGD(opt_model.parameters(), lr=HP.lr), progress=False,
                 record=record_for(Longer()))
    assert [r["step"] for r in rows] == list(range(1, 71))  # started from zero, not step 25


@pytest.mark.parametrize("name", ["adam", "adamw"])
def test_fused_optimizer_steps_as_the_per_tensor_reference(name):
    """make_optimizer picks torch's fused Adam / AdamW kernel for speed; its updates must be the
    ones of the per-tensor implementation the official code runs (float64: any other update
    rule differs far above 1e-12)."""
    from types import SimpleNamespace

    from wsvad_core.methods import make_optimizer

    hp = SimpleNamespace(optimizer=name, lr=1e-3, weight_decay=5e-3, eps=1e-8)
    torch.manual_seed(0)
    fused_model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 1)).double()
    ref_model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 1)).double()
    ref_model.load_state_dict(fused_model.state_dict())
    fused = make_optimizer(fused_model, hp)
    assert fused.defaults["fused"] is True
    ref_cls = torch.optim.Adam if name == "adam" else torch.optim.AdamW
    ref = ref_cls(ref_model.parameters(), lr=hp.lr, weight_decay=hp.weight_decay, eps=hp.eps, foreach=False)
    x = torch.randn(64, 16, dtype=torch.float64)
    for _ in range(5):
        for model, opt in ((fused_model, fused), (ref_model, ref)):
            opt.zero_grad()
            model(x).square().mean().backward()
            opt.step()
    for a, b in zip(fused_model.parameters(), ref_model.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)
