"""The ``RunRecord`` that ``training.loop.train`` writes into its checkpoints, for tests that call
the loop directly (``training.run.run_training`` builds it from the store and the method)."""
from __future__ import annotations

import dataclasses

from wsvad_core.runs import RunRecord


def record_for(hparams, method: str = "toy", feat_dim: int = 0, **fields) -> RunRecord:
    """A record of ``hparams`` (any dataclass) for a run of ``method``."""
    hp = dataclasses.asdict(hparams)
    return RunRecord(method=method, feat_dim=feat_dim, overrides={}, seed=int(hp.get("seed", 0)), store_attrs={},
                     hparams=hp, **fields)
