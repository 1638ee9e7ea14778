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
import torch.nn.functional as F
from torch import Tensor, nn

from .base import MethodSpec, TrainHParams, WSVADModel, rename_official
from .blocks import TemporalAggregate, rtfm_loss, xavier_init
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
    dropout: float = 0.7  # model.py nn.Dropout(0.7)
    topk: int = 0  # 0: n_segments // 10 (model.py k_abn = k_nor = num_segments // 10 = 3)
    aggregate_inner: int = 512  # model.py Aggregate: 512 channels per branch
    hidden1: int = 512  # model.py fc1
    hidden2: int = 128  # model.py fc2
    margin: float = 100.0  # train.py RTFM_loss(0.0001, 100)
    alpha: float = 1e-4  # train.py RTFM_loss(0.0001, 100)
    lambda_smooth: float = 8e-4  # train.py smooth(abn_scores, 8e-4)
    lambda_sparse: float = 8e-3  # train.py sparsity(abn_scores, batch_size, 8e-3)


def rtfm_head(model: nn.Module, seqs: Tensor, n_videos: int) -> tuple[Tensor, Tensor]:
    """model.py after its input: Aggregate + dropout give the features; fc1 -> ReLU -> dropout
    -> fc2 -> ReLU -> dropout -> fc3 -> sigmoid the snippet scores, averaged over the crops.
    ``model`` holds RTFM's ``aggregate``, ``fc1``..``fc3``, ``drop_out`` (CLIP-TSA keeps them);
    seqs (n_videos * C, T, W) video-major -> features (n_videos * C, T, W), scores (n_videos, T)."""
    feats = model.drop_out(model.aggregate(seqs))
    h = model.drop_out(F.relu(model.fc1(feats)))
    h = model.drop_out(F.relu(model.fc2(h)))
    scores = torch.sigmoid(model.fc3(h)).view(n_videos, -1, seqs.shape[1]).mean(1)
    return feats, scores


class RTFMModel(WSVADModel):
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

    def loss(self, normal: Tensor, abnormal: Tensor) -> dict[str, Tensor]:
        normal, abnormal = self._check_pair(normal, abnormal)
        feats, scores = self.forward(torch.cat([normal, abnormal], 0))
        return rtfm_loss(feats, scores, self.hparams, self.training)

    def _score_video(self, x: Tensor) -> Tensor:
        # crops are independent in eval mode (BatchNorm uses running statistics): one at a time
        # keeps memory flat for long videos
        per_crop = [self.forward(x[c:c + 1][None])[1][0] for c in range(x.shape[0])]
        return torch.stack(per_crop, 0).mean(0)


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
))
