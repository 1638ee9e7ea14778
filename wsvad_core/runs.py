"""A trained run: what its checkpoint holds and how to bring the run back.

A run folder (``results/<dataset>/runs/<method>/<feature set>/seed<n>/``) holds
``checkpoint.pt`` (the last step) and, where "best on test" selection was asked for,
``checkpoint_best.pt``. Each is ``{"model": state_dict, **RunRecord}``: the record says how to
rebuild the model (method, feature dim, resolved overrides, seed) and which features it was
trained on (the snippet store's attributes, the patch stores). Training writes checkpoints with
:func:`save_checkpoint`; evaluation, the best-on-test selection and the ``wsvad`` command read
them with :func:`load_checkpoint`, :func:`build_model` and :func:`open_run_features`.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from wsvad_core.features.patches import StackedStore, select_patch_stores
from wsvad_core.features.store import open_store
from wsvad_core.io import atomic_path
from wsvad_core.methods import create_method, get_method

__all__ = ["RunRecord", "RunError", "CHECKPOINTS", "checkpoint_path", "save_checkpoint", "load_checkpoint",
           "build_model", "open_features", "open_run_features"]

# selection -> checkpoint file in the run folder
CHECKPOINTS = {"last": "checkpoint.pt", "best": "checkpoint_best.pt"}


class RunError(ValueError):
    """A folder or file that is not a usable training run."""


@dataclass
class RunRecord:
    """Everything a checkpoint holds besides the weights."""

    method: str
    feat_dim: int
    overrides: dict                  # as trained with (after the method's prepare_overrides)
    seed: int
    store_attrs: dict                # root attributes of the snippet store: recipe, provenance, ...
    patch_stores: list = field(default_factory=list)  # patch stores read beside it (their folders)
    hparams: dict = field(default_factory=dict)       # the resolved hyper-parameters (a record)
    version: str = "1"               # the method's code version when trained
    step: int = 0
    best: dict | None = None         # {"step", "score"} of the best-on-test selection
    peak_memory: dict | None = None  # device.record_peak_memory at the end of training

    @property
    def recipe(self) -> dict:
        return dict(self.store_attrs.get("recipe") or {})

    @property
    def provenance(self) -> dict:
        return dict(self.store_attrs.get("provenance") or {})


def checkpoint_path(run_dir: str | os.PathLike, selection: str = "last") -> Path:
    if selection not in CHECKPOINTS:
        raise ValueError(f"checkpoint selection {selection!r}: expected one of {sorted(CHECKPOINTS)}")
    return Path(run_dir) / CHECKPOINTS[selection]


def save_checkpoint(path: str | os.PathLike, model: torch.nn.Module, record: RunRecord) -> None:
    with atomic_path(path) as tmp:
        torch.save({"model": model.state_dict(), **dataclasses.asdict(record)}, tmp)


def load_checkpoint(path: str | os.PathLike) -> tuple[RunRecord, dict]:
    """(record, state dict) of a checkpoint file; a file that is not a wsvad checkpoint raises
    :class:`RunError` naming it and what it lacks."""
    path = Path(path)
    if not path.is_file():
        raise RunError(f"{path}: no such checkpoint; expected a finished training run "
                       "(results/<dataset>/runs/<method>/<features>/seed<n>/)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:
        raise RunError(f"{path}: cannot be read as a wsvad checkpoint ({type(err).__name__}: {err})") from err
    names = {f.name for f in dataclasses.fields(RunRecord)}
    required = {f.name for f in dataclasses.fields(RunRecord)
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING}
    missing = sorted((required | {"model"}) - set(state if isinstance(state, dict) else ()))
    if missing:
        raise RunError(f"{path}: not a wsvad training checkpoint (no {', '.join(missing)})")
    record = RunRecord(**{k: v for k, v in state.items() if k in names})
    return record, state["model"]


def build_model(record: RunRecord, state_dict: dict | None = None, dictionary: np.ndarray | None = None):
    """The run's model (``create_method`` with the run's overrides and seed), with its weights
    when ``state_dict`` is given. S3R's dictionary is a buffer of its state dict: without an
    explicit ``dictionary`` it comes from there."""
    if dictionary is None and get_method(record.method).needs_dictionary and state_dict is not None:
        keys = [k for k in state_dict if k.split(".")[-1] == "dictionary"]
        if not keys:
            raise RunError(f"method {record.method} needs its dictionary, which the checkpoint does not hold")
        dictionary = state_dict[keys[0]].float().numpy()
    model, hparams = create_method(record.method, record.feat_dim, dictionary=dictionary,
                                   **{**record.overrides, "seed": record.seed})
    if state_dict is not None:
        model.load_state_dict(state_dict)
    return model, hparams


def open_features(store: str | os.PathLike, patch_stores=(), grids=(), kind: str | None = None,
                  family: str | None = None):
    """The snippet store, or for a method with patch ``grids`` a ``StackedStore`` of the snippet
    store and the patch stores of those grids, in that order (``features/patches.py``), which
    must hold patches of the same ``kind`` and ``family`` of features."""
    feats = open_store(store)
    if not grids:
        return feats
    patches = select_patch_stores([open_store(p) for p in patch_stores], grids, kind, family)
    return StackedStore([feats, *patches])


def open_run_features(record: RunRecord, hparams, store: str | os.PathLike):
    """The features a trained run reads: ``store`` plus the patch stores it trained with."""
    recipe = record.recipe
    return open_features(store, record.patch_stores, hparams.patch_grids(), recipe.get("kind"),
                         recipe.get("family"))
