"""One training run (method × feature set × seed) from files to files: what the `train` rule does."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from wsvad_core.data.manifest import read_manifest
from wsvad_core.device import select_device
from wsvad_core.features.store import open_store
from wsvad_core.methods import create_method, get_method, hparams_to_dict, make_optimizer
from wsvad_core.runs import RunRecord, open_features
from wsvad_core.training.data import load_training_set
from wsvad_core.training.loop import train

log = logging.getLogger(__name__)


def run_training(*, method: str, manifest: str | Path, store: str | Path, run_dir: str | Path,
                 seed: int, overrides: dict, dictionary: str | Path | None = None,
                 vram_mb: float = 6144, progress: bool = True, patch_stores=(),
                 eval_gt: str | Path | None = None, protocol: dict | None = None) -> list[dict]:
    """``patch_stores``: the patch feature stores available to the run (the method picks those
    of its grids; ignored by snippet-only methods). ``eval_gt``: a ground-truth file; with it
    the test set is scored on the method's schedule (``hparams.eval_every`` /
    ``eval_schedule``, training/loop.py ``eval_due``) under ``protocol`` (test crops,
    primary metric, clip_len) and the best step is kept as ``checkpoint_best.pt`` (the official
    repositories' "best on test" selection)."""
    spec = get_method(method)
    snippet = open_store(store)
    recipe = snippet.attrs.get("recipe", {})
    kind, family = recipe.get("kind"), recipe.get("family")
    if kind and kind not in spec.accepts:
        raise ValueError(f"method {method} accepts feature kinds {spec.accepts}, "
                         f"but the store {store} holds {kind!r} features")
    manifest_df = read_manifest(manifest)
    if spec.prepare_overrides is not None:  # data-dependent values (class names, CLIP weights)
        overrides = spec.prepare_overrides(dict(overrides), snippet.attrs, manifest_df)
    if spec.needs_dictionary and dictionary is None:
        raise ValueError(f"method {method} needs the S3R dictionary; none was given")
    model, hparams = create_method(method, snippet.dim, dictionary=None if dictionary is None else np.load(dictionary),
                                   **{**overrides, "seed": seed})
    feats = open_features(store, patch_stores, hparams.patch_grids(), kind, family)
    data = load_training_set(feats, manifest_df, spec.segment_policy, hparams.n_segments,
                             progress=progress,
                             class_names=hparams.class_names if spec.needs_class_labels else None)
    log.info("training %s on %s: %d normal + %d abnormal videos, segments %s, %.1f MB in RAM, "
             "hparams %s", method, store, len(data.normal), len(data.abnormal),
             tuple(data.normal.shape[1:]), data.nbytes / 2**20, hparams)
    device = select_device(vram_mb)
    record = RunRecord(method=method, feat_dim=snippet.dim, overrides=overrides, seed=seed,
                       store_attrs=dict(snippet.attrs),
                       patch_stores=[str(s.path) for s in getattr(feats, "stores", [])[1:]],
                       hparams=hparams_to_dict(hparams), version=spec.version)
    eval_fn = None
    if eval_gt is not None:
        from wsvad_core.training.selection import make_eval_fn

        eval_fn = make_eval_fn(feats, eval_gt, manifest_df, protocol or {}, device)
    return train(model, hparams, data, run_dir, device=device, optimizer=make_optimizer(model, hparams),
                 progress=progress, record=record, vram_mb=vram_mb, eval_fn=eval_fn,
                 eval_every=(hparams.eval_every or hparams.max_steps) if eval_fn else 0)
