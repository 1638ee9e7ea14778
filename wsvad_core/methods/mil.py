"""Sultani, Chen, Shah, "Real-world Anomaly Detection in Surveillance Videos", CVPR 2018 (MIL).

Official code: WaqasSultani/AnomalyDetectionCVPR2018 (Keras 1 / Theano), files cited below as
``Train`` = TrainingAnomalyDetector_public.py, ``Seg`` = Save_C3DFeatures_32Segments.m.

* Model (Train / model.json): Dense 512 ReLU, Dropout 0.6, Dense 32 *linear*, Dropout 0.6,
  Dense 1 sigmoid; glorot_normal weights, zero biases; an L2 weight regulariser 0.001 on each of
  the three kernels (Keras adds 0.001 * sum(W^2) to the loss).
* Input (Seg): the C3D fc6 features (4096-d) of a video are averaged into 32 segments and each
  segment feature is divided by its L2 norm. Here the segment policy does the averaging and the
  model normalises each (crop-averaged) segment/snippet feature, so train and test see unit
  vectors as in the official pipeline. feat_dim is whatever the feature set gives. (Seg's own
  segment borders are MATLAB's round(linspace(1, n, 33)); the shared policy uses RTFM's
  floor(linspace(0, T, 33)).)
* Loss (Train ``custom_objective``): for each normal video i, sum over the abnormal videos j of
  max(0, 1 - max_t s_j + max_t s_i), averaged over the normal videos; + 8e-5 * sum over abnormal
  videos of the squared differences of consecutive scores + 8e-5 * sum over abnormal videos of
  their scores (sparsity).
* Optimisation (Train): batches of 60 videos = 30 abnormal + 30 normal, 20000 iterations,
  Adagrad epsilon 1e-8. The paper (Sec. 4.1) gives lr 0.001; the released script uses 0.01.
* Crops: the official features have one view; with several crops the features are averaged over
  crops, at train and at test.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from wsvad_core.cards import hp

from .base import MethodSpec, TrainHParams, WSVADModel
from .blocks import mil_ranking_hinge, score_sparsity, temporal_smoothness
from .registry import register


@dataclass
class MILHParams(TrainHParams):
    batch_size: int = 30  # Train: batchsize=60 videos, n_exp = 30 per class
    lr: float = 1e-3  # paper Sec. 4.1 "learning rate 0.001" (Train's Adagrad uses lr=0.01)
    weight_decay: float = 0.0  # the L2 term is in the loss (l2_weight_reg), as Keras does
    optimizer: str = "adagrad"  # Train: Adagrad(lr, epsilon=1e-08)
    eps: float = 1e-8  # Train: Adagrad epsilon
    max_steps: int = 20000  # Train: num_iters = 20000
    n_segments: int = 32  # Seg: 32 segments per video
    eval_every: int = 1000  # Train: weights saved every 1000 iterations (no evaluation in training)
    dropout: float = hp(0.6, ge=0, lt=1)  # Train: Dropout(0.6) after both hidden layers
    hidden1: int = hp(512, ge=1)  # Train: Dense(512)
    hidden2: int = hp(32, ge=1)  # Train: Dense(32)
    margin: float = hp(1.0, ge=0)  # Train: max(1 - Sub_Abn + Sub_Nor, 0)
    lambda_smooth: float = hp(8e-5, ge=0)  # Train: 0.00008 * sum(sub_l2)
    lambda_sparse: float = hp(8e-5, ge=0)  # Train: 0.00008 * sum(sub_sum_l1)
    l2_weight_reg: float = hp(1e-3, ge=0)  # Train: W_regularizer=l2(0.001) on each Dense kernel
    l2_normalize_input: bool = True  # Seg: temp_vect = temp_vect / norm(temp_vect)


class MILModel(WSVADModel):
    # each snippet is scored by the MLP alone: evaluation may concatenate many test videos
    # along time and score them in one forward (evaluation/evaluate.py)
    snippet_independent = True
    # live: for the same reason a stream is scored snippet by snippet, with no window
    causal = True

    def __init__(self, hparams: MILHParams, feat_dim: int):
        super().__init__(hparams, feat_dim)
        hp = hparams
        self.fc1 = nn.Linear(feat_dim, hp.hidden1)
        self.fc2 = nn.Linear(hp.hidden1, hp.hidden2)
        self.fc3 = nn.Linear(hp.hidden2, 1)
        self.dropout = nn.Dropout(hp.dropout)
        for fc in (self.fc1, self.fc2, self.fc3):  # Keras init='glorot_normal', zero bias
            nn.init.xavier_normal_(fc.weight)
            nn.init.zeros_(fc.bias)

    def _prepare(self, x: Tensor) -> Tensor:
        x = x.mean(dim=-3)  # average crops: (..., C, T, D) -> (..., T, D)
        if self.hparams.l2_normalize_input:
            x = F.normalize(x, p=2, dim=-1, eps=1e-12)
        return x

    def forward(self, x: Tensor) -> Tensor:
        """(B, C, T, D) -> (B, T) snippet scores (dropout active in train mode)."""
        h = self.dropout(F.relu(self.fc1(self._prepare(x))))
        h = self.dropout(self.fc2(h))  # linear activation, as the official Dense(32)
        return torch.sigmoid(self.fc3(h)).squeeze(-1)

    def _loss(self, normal: Tensor, abnormal: Tensor) -> dict[str, Tensor]:
        hp = self.hparams
        B = normal.shape[0]
        scores = self.forward(torch.cat([abnormal, normal], 0))  # one batch, as train_on_batch
        s_abn, s_nor = scores[:B], scores[B:]
        hinge = mil_ranking_hinge(s_abn.max(1).values, s_nor.max(1).values, hp.margin)
        ranking = hinge.sum(1).mean()  # sum over abnormal bags, mean over normal bags
        smooth = hp.lambda_smooth * temporal_smoothness(s_abn, flatten=False)
        sparse = hp.lambda_sparse * score_sparsity(s_abn, "l1")
        l2 = hp.l2_weight_reg * sum((fc.weight ** 2).sum() for fc in (self.fc1, self.fc2, self.fc3))
        total = ranking + smooth + sparse + l2
        return {"loss": total, "ranking": ranking, "smoothness": smooth, "sparsity": sparse,
                "l2_reg": l2}

    def _score_video(self, x: Tensor) -> Tensor:
        return self.forward(x[None])[0]


def load_official_state_dict(state: Mapping[Any, Any]) -> dict[str, Tensor]:
    """Official weights to ours.

    Accepts (a) the Keras weights as ``conv_dict(loadmat('weights_L1L2.mat'))`` of the official
    scripts returns them: layer index -> [W (in, out), b (out,)] for the Dense layers 0, 2, 4
    (1 and 3 are the weightless Dropout layers); or (b) a PyTorch state dict with fc1/fc2/fc3
    (the names ekosman/AnomalyDetectionCVPR2018-Pytorch uses), optionally prefixed ``module.``.
    """
    keys = {str(k) for k in state}
    if {"0", "2", "4"} <= keys:
        out = {}
        for layer, name in (("0", "fc1"), ("2", "fc2"), ("4", "fc3")):
            entry = state[layer] if layer in state else state[int(layer)]
            W, b = entry[0], entry[1]
            out[f"{name}.weight"] = torch.as_tensor(np.asarray(W, dtype=np.float32)).T.contiguous()
            out[f"{name}.bias"] = torch.as_tensor(np.asarray(b, dtype=np.float32)).reshape(-1)
        return out
    return {str(k).removeprefix("module."): torch.as_tensor(v) for k, v in state.items()}


SPEC = register(MethodSpec(
    name="mil",
    paper="Sultani, Chen, Shah. Real-world Anomaly Detection in Surveillance Videos. CVPR 2018",
    official_code="https://github.com/WaqasSultani/AnomalyDetectionCVPR2018",
    hparams=MILHParams,
    build=MILModel,
    load_official_state_dict=load_official_state_dict,
))
