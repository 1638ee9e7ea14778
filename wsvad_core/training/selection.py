""""Best on test": the official repositories score the test set every few steps and keep the
best checkpoint. Here that metric is a function of the model, which the training loop calls."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import torch

from wsvad_core.data.ground_truth import load_ground_truth
from wsvad_core.evaluation.evaluate import evaluate_scores, score_videos, test_crop_indices


def make_eval_fn(store, ground_truth: str | Path, manifest: pd.DataFrame, protocol: dict,
                 device: torch.device):
    """The test set's ``protocol["primary_metric"]`` (frame AUC; AP on XD-Violence) of a model,
    scored with the protocol's test crops and snippet length."""
    gt = load_ground_truth(ground_truth)
    labels = dict(zip(manifest["video_id"], manifest["label"].astype(int)))
    metric = protocol.get("primary_metric", "auc")
    clip_len = int(protocol.get("clip_len", 16))

    def eval_fn(model) -> float:
        snippet = score_videos(model, store, list(gt), device, progress=False,
                               crops=test_crop_indices(store, protocol))
        metrics, _ = evaluate_scores(snippet, gt, labels, clip_len)
        return float(metrics[metric])

    return eval_fn
