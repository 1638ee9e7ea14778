"""MGFN's official data order through the shared loop: main.py:39-44 builds both training
loaders with ``shuffle=False, drop_last=True`` and train.py:81-82 iterates ``zip(nloader,
aloader)`` once per epoch, so every epoch pairs normal batch j with abnormal batch j in list
order; main.py:87 tests after every epoch. The reference below is that construction with torch's
own DataLoader."""
import torch
from torch import nn
from torch.utils.data import DataLoader

from wsvad_core.methods import get_method, resolve_hparams
from wsvad_core.runs import RunRecord
from wsvad_core.training.data import TrainingSet
from wsvad_core.training.loop import train

N_NORMAL, N_ABNORMAL, B = 7, 9, 2


class Toy(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(()))
        self.batches = []

    def loss(self, normal, abnormal, **kw):
        self.batches.append((normal[:, 0, 0, 0].long().tolist(), abnormal[:, 0, 0, 0].long().tolist()))
        return {"loss": (self.w - 1.0) ** 2}

    def before_step(self):
        pass

    def after_step(self):
        pass


def _official_batches(epochs: int) -> list:
    out = []
    for _ in range(epochs):  # main.py: the same two loaders every epoch
        nloader = DataLoader(list(range(N_NORMAL)), batch_size=B, shuffle=False, drop_last=True)
        aloader = DataLoader(list(range(N_ABNORMAL)), batch_size=B, shuffle=False, drop_last=True)
        out += [(n.tolist(), a.tolist()) for n, a in zip(nloader, aloader)]
    return out


def test_mgfn_pairs_in_list_order_every_epoch(tmp_path):
    hp = resolve_hparams("mgfn", batch_size=B, max_steps=3 * (N_NORMAL // B))
    assert hp.pairing == "in_order"
    data = TrainingSet(torch.arange(N_NORMAL).half()[:, None, None, None].expand(N_NORMAL, 1, 4, 3).clone(),
                       torch.arange(N_ABNORMAL).half()[:, None, None, None].expand(N_ABNORMAL, 1, 4, 3).clone(),
                       [f"n{i}" for i in range(N_NORMAL)], [f"a{i}" for i in range(N_ABNORMAL)])
    model = Toy()
    evaluated = []
    record = RunRecord(method="mgfn", feat_dim=3, overrides={}, seed=hp.seed, store_attrs={})
    rows = train(model, hp, data, tmp_path, device=torch.device("cpu"),
                 optimizer=torch.optim.SGD(model.parameters(), lr=0.1), record=record,
                 progress=False, eval_fn=lambda m: evaluated.append(1) or 0.5,
                 eval_every=hp.eval_every)
    assert model.batches == _official_batches(3)
    # main.py:87: a test after every epoch (3 iterations of 2 + 2 here)
    assert [r["step"] for r in rows if "test_score" in r] == [3, 6, 9]


def test_mgfn_docstring_says_so():
    doc = __import__(get_method("mgfn").build.__module__, fromlist=["_"]).__doc__
    assert "shuffle=False" in doc and "in_order" in doc
