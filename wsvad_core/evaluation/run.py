"""Evaluate one trained run: what the `evaluate` rule does."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from wsvad_core.data.ground_truth import load_ground_truth
from wsvad_core.data.manifest import read_manifest
from wsvad_core.device import select_device
from wsvad_core.evaluation.evaluate import evaluate_scores, save_scores, score_videos, test_crop_indices
from wsvad_core.evaluation.metrics import per_class_auc, video_metrics
from wsvad_core.io import write_json
from wsvad_core.runs import CHECKPOINTS, RunError, build_model, checkpoint_path, load_checkpoint, open_run_features

log = logging.getLogger(__name__)


def _selections(selection) -> list[str]:
    sel = [selection] if isinstance(selection, str) else list(selection)
    bad = [x for x in sel if x not in CHECKPOINTS]
    if not sel or bad:
        raise ValueError(f"evaluation.selection: {selection!r}; use 'last', 'best' or a list of them")
    return sel


def run_evaluation(*, checkpoint: str | Path, manifest: str | Path, store: str | Path,
                   ground_truth: str | Path, scores_out: str | Path, metrics_out: str | Path,
                   protocol: dict, dictionary: str | Path | None = None,
                   selection: str | list[str] = "last", far_threshold: float = 0.5,
                   video_threshold: float = 0.5, vram_mb: float = 6144,
                   progress: bool = True) -> dict:
    """Score the test set with each checkpoint of ``selection`` ("last", "best" or both; the
    first is the run's headline and its scores are saved) under ``protocol`` (test crops,
    primary metric, clip_len). ``metrics.json`` holds the headline metrics at top level and
    every selection's under ``selections``, each with per-class AUC and video-level metrics."""
    sels = _selections(selection)
    gt = load_ground_truth(ground_truth)
    df = read_manifest(manifest)
    labels = dict(zip(df["video_id"], df["label"].astype(int)))
    classes = dict(zip(df["video_id"], df["class"].astype(str)))
    clip_len = int(protocol["clip_len"])
    device = select_device(vram_mb)
    atoms = np.load(dictionary) if dictionary else None
    by_sel, headline = {}, None
    for sel in sels:
        path = checkpoint_path(Path(checkpoint).parent, sel)
        if not path.exists() and sel == "best":
            raise RunError(f"{path}: no checkpoint for selection 'best'; it exists only when training "
                           "scored the test set (the train rule gets the GT file when 'best' is in "
                           "evaluation.selection)")
        record, state_dict = load_checkpoint(path)
        model, hparams = build_model(record, state_dict, atoms)
        model.to(device)
        feats = open_run_features(record, hparams, store)
        snippet = score_videos(model, feats, list(gt), device, progress=progress,
                               crops=test_crop_indices(feats, protocol))
        metrics, frame = evaluate_scores(snippet, gt, labels, clip_len, far_threshold=far_threshold)
        metrics["per_class_auc"] = per_class_auc(frame, gt, {v: classes[v] for v in gt})
        metrics.update(video_metrics(frame, {v: labels[v] for v in gt}, video_threshold))
        metrics.update({"step": record.step, "selection": sel})
        by_sel[sel] = metrics
        if headline is None:
            headline = record
            save_scores(scores_out, snippet, frame)
    provenance = headline.provenance
    out = dict(by_sel[sels[0]])
    out.update({
        "method": headline.method, "seed": headline.seed, "feature_set": headline.recipe.get("name"),
        "family": headline.store_attrs.get("family"),
        "weights": provenance.get("weights", "unknown"), "provenance": provenance,
        "n_test_videos": len(gt), "test_views": protocol.get("test_views"),
        "primary_metric": protocol.get("primary_metric", "auc"), "selections": by_sel,
    })
    if headline.best is not None:
        out["best_on_test"] = headline.best
    write_json(metrics_out, out)
    log.info("metrics: %s", {k: v for k, v in out.items() if k not in ("provenance", "selections")})
    return out
