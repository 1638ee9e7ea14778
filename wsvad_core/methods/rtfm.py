"""Tian et al., "Weakly-supervised Video Anomaly Detection with Robust Temporal Feature Magnitude
Learning", ICCV 2021 (RTFM).

Official code: tianyu0207/RTFM (model.py, train.py, main.py, option.py, dataset.py, utils.py,
test_10crop.py), reproduced as a configuration of the shared blocks:

* model.py: ``Aggregate`` (dilated convs 1/2/4 -> 512 each + 1x1 conv -> 512 -> non-local, fused
  by a 3-tap conv back to D, residual; conv -> ReLU -> BatchNorm), Dropout 0.7, fc 512 -> 128 -> 1
  with ReLU + Dropout 0.7 after fc1 and fc2, sigmoid; Xavier-uniform init, zero biases.
  The official code hard-codes 2048 inside Aggregate; here D is the feature dim.
* Crops: a (B, C, S, D) batch is run as B*C sequences; scores are averaged over crops, feature
  magnitudes are averaged over crops, and the top-k snippets (k = 32 // 10 = 3, chosen on the
  crop-averaged magnitudes times a dropout(0.7) mask) are gathered from every crop.
* train.py: BCE on the mean score of the top-k snippets (labels 0/1) + 0.0001 * mean over
  (crop, video) pairs of (|100 - ||mean_k f_abn||| + ||mean_k f_nor||)^2 + smoothness 8e-4 and
  sparsity 8e-3 on the abnormal videos' crop-averaged scores flattened over the batch
  (smoothness sums squared differences across the flattened sequence; "sparsity" is the L2
  norm of that sequence).
* main.py / option.py: batch 32 normal + 32 abnormal (one forward on their concatenation, which
  BatchNorm sees together), Adam lr 0.001 weight decay 0.005, 15000 steps, test every 5 steps
  after step 200, best-on-test checkpoint kept.
* test_10crop.py: whole video, eval mode, scores averaged over the 10 crops.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import torch
from torch import Tensor, nn

from wsvad_core.cards import hp

from .base import MethodSpec, TrainHParams, WSVADModel, rename_official
from .blocks import TemporalAggregate, rtfm_head, rtfm_loss, score_crops, xavier_init
from .registry import register


@dataclass
class RTFMHParams(TrainHParams):
    batch_size: int = 32  # option.py --batch-size 32 (per class; main.py two loaders)
    lr: float = 1e-3  # option.py --lr '[0.001]*15000' (constant)
    weight_decay: float = 5e-3  # main.py optim.Adam(..., weight_decay=0.005)
    optimizer: str = "adam"  # main.py
    max_steps: int = 15000  # option.py --max-epoch 15000 (one batch per "epoch")
    n_segments: int = 32  # dataset.py process_feat(feature, 32); model.py num_segments = 32
    eval_every: int = 5  # main.py: test when step % 5 == 0 and step > 200
    eval_min_step: int = 200
    dropout: float = hp(0.7, ge=0, lt=1)  # model.py nn.Dropout(0.7)
    topk: int | None = hp(None, ge=1)  # None: n_segments // 10 (model.py k_abn = k_nor = num_segments // 10 = 3)
    aggregate_inner: int = hp(512, ge=1)  # model.py Aggregate: 512 channels per branch
    hidden1: int = hp(512, ge=1)  # model.py fc1
    hidden2: int = hp(128, ge=1)  # model.py fc2
    margin: float = hp(100.0, ge=0)  # train.py RTFM_loss(0.0001, 100)
    alpha: float = hp(1e-4, ge=0)  # train.py RTFM_loss(0.0001, 100)
    lambda_smooth: float = hp(8e-4, ge=0)  # train.py smooth(abn_scores, 8e-4)
    lambda_sparse: float = hp(8e-3, ge=0)  # train.py sparsity(abn_scores, batch_size, 8e-3)


class RTFMModel(WSVADModel):
    # live: the MTN's dilated 3-tap convs read up to 4 snippets ahead, its non-local
    # block the whole sequence
    causal = False

    def __init__(self, hparams: RTFMHParams, feat_dim: int):
        super().__init__(hparams, feat_dim)
        hp = hparams
        self.aggregate = TemporalAggregate(feat_dim, inner=hp.aggregate_inner, norm="bn")
        self.fc1 = nn.Linear(feat_dim, hp.hidden1)
        self.fc2 = nn.Linear(hp.hidden1, hp.hidden2)
        self.fc3 = nn.Linear(hp.hidden2, 1)
        self.drop_out = nn.Dropout(hp.dropout)
        self.apply(xavier_init)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(B, C, T, D) -> features (B*C, T, D) after Aggregate + dropout, crop-averaged scores
        (B, T)."""
        B, C, T, D = x.shape
        return rtfm_head(self, x.reshape(B * C, T, D), B)

    def _loss(self, normal: Tensor, abnormal: Tensor) -> dict[str, Tensor]:
        feats, scores = self.forward(torch.cat([normal, abnormal], 0))
        return rtfm_loss(feats, scores, self.hparams, self.training)

    def _score_video(self, x: Tensor) -> Tensor:
        return score_crops(x, lambda v: self.forward(v[None, None])[1][0])


def load_official_state_dict(state: Mapping[str, Any]) -> dict[str, Tensor]:
    """RTFM checkpoint (``Model.state_dict()``) to ours: only ``Aggregate.`` -> ``aggregate.``
    (and a DataParallel ``module.`` prefix dropped); all other names are the official ones."""
    return rename_official(state, renames=(("Aggregate.", "aggregate."),))


SPEC = register(MethodSpec(
    name="rtfm",
    paper="Tian, Pang, Chen, Singh, Verjans, Carneiro. Weakly-supervised Video Anomaly Detection "
          "with Robust Temporal Feature Magnitude Learning. ICCV 2021",
    official_code="https://github.com/tianyu0207/RTFM",
    hparams=RTFMHParams,
    build=RTFMModel,
    load_official_state_dict=load_official_state_dict,
    # 2: the top-k selection dropout masks drawn abnormal-first, as the official code (issue 13)
    version="2",
))
