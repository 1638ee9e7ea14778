"""Wu, Yen, et al., "Self-Supervised Sparse Representation for Video Anomaly Detection", ECCV 2022
(S3R).

Official code: louisYen/S3R, files cited as ``detector`` = anomaly/models/detectors/detector.py,
``memory`` = anomaly/models/modules/memory_module.py, ``residual`` =
anomaly/models/modules/residual_attention.py, ``trainer`` = anomaly/engine/trainer.py, ``opts`` =
anomaly/apis/opts.py, ``main`` = tools/trainval_anomaly_detector.py, ``dataset`` =
anomaly/datasets/video_dataset.py, ``cfg`` = configs/{ucf_crime,shanghaitech}/*_dl.py.

Configuration used by the released configs (modality ``taskaware``):

* en-Normal (memory): every snippet of every crop attends to the task-specific dictionary
  (S atoms, see wsvad_core/dictionary.py): affinity = softmax_S(q(x) k(atoms)^T) with q, k linear
  D -> D/4, value linear D -> D; no hard shrinkage (enNormal builds its module with
  shrink_thres=0). The output (the snippet "normalcy" re-expressed with dictionary atoms) is the
  macro stream, same shape as the video stream.
* Both streams go through their own RTFM-style Aggregate (GroupNorm(8) version, inner D/4) and
  Dropout(0.7).
* de-Normal (residual): a channel gate sigmoid(MLP(avgpool_T(video) - avgpool_T(macro))), MLP
  D -> D/16 -> D; video *= gate, macro *= (1 - gate).
* Video classifier: Linear D -> D/4 -> D/16 -> 1 with ReLU + Dropout(0.7), sigmoid; crop-averaged.
  Macro classifier (GlobalStatistics): same MLP on the temporal average of the macro stream,
  sigmoid, averaged over crops: one score per video.
* Loss (trainer): RTFM's loss on the video stream (BCE on top-3-magnitude mean scores
  + 0.0001 * magnitude margin loss, margin 100) + smoothness 8e-4 + sparsity 8e-3 on the abnormal
  crop-averaged scores flattened over the batch (same forms as RTFM) + BCE of the macro scores
  of all 2B videos against 0 (the label the loader gives every macro sample: the dictionary
  reconstruction is always "normal"), weight 1.
* Optimisation (opts, main): batch 32 + 32, Adam lr 0.001 weight decay 0.005, 15000 steps,
  dropout 0.7, quantize_size 32 via cv2 linear resize (dataset), evaluation every step after step
  5000, best-on-test checkpoint kept; seeds 49 (UCF-Crime cfg) / 823 (ShanghaiTech cfg).
* Test (inference): whole video, eval mode, video scores averaged over crops.

``video_projection`` / ``macro_projection`` exist in the official module but are never used in its
forward; they are not built here and their checkpoint entries are dropped on load.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from wsvad_core.cards import hp

from .base import MethodSpec, TrainHParams, WSVADModel, rename_official
from .blocks import TemporalAggregate, mlp_head, rtfm_loss, score_crops, xavier_init
from .registry import register


@dataclass
class S3RHParams(TrainHParams):
    batch_size: int = 32  # opts batch_size 32 (per class)
    lr: float = 1e-3  # opts lr 0.001; cfg init_lr 0.001 (constant)
    weight_decay: float = 5e-3  # main optim.Adam(..., weight_decay=0.005)
    optimizer: str = "adam"  # main
    max_steps: int = 15000  # opts max_epoch 15000 (one batch per "epoch")
    n_segments: int = 32  # opts / configs/base.py quantize_size 32
    eval_every: int = 1  # opts evaluate_freq 1
    eval_min_step: int = 5000  # opts evaluate_min_step 5000
    dropout: float = hp(0.7, ge=0, lt=1)  # opts dropout 0.7
    topk: int | None = hp(None, ge=1)  # None: n_segments // 10 (detector k_anomaly = k_regular = quantize_size // 10)
    aggregate_reduction: int = hp(4, ge=1)  # detector Aggregate(dim, reduction=4): inner = D // 4
    gate_reduction: int = hp(16, ge=1)  # detector deNormal(dim, dim // 2, reduction=16)
    shrink_thres: float = hp(0.0, ge=0)  # memory: enNormal builds enNormalModule(dim, shrink_thres=0.)
    margin: float = hp(100.0, ge=0)  # trainer RTFM_loss(0.0001, 100)
    alpha: float = hp(1e-4, ge=0)  # trainer RTFM_loss(0.0001, 100)
    lambda_smooth: float = hp(8e-4, ge=0)  # trainer smooth_loss(abn_scores, 8e-4)
    lambda_sparse: float = hp(8e-3, ge=0)  # trainer sparsity_loss(abn_scores, batch_size, 8e-3)
    lambda_macro: float = hp(1.0, ge=0)  # trainer: cost = ... + loss_macro (unweighted)


def _hard_shrink_relu(x: Tensor, lambd: float, eps: float = 1e-12) -> Tensor:
    # memory_module.hard_shrink_relu (only used when shrink_thres > 0; the released configs use 0)
    return F.relu(x - lambd) * x / (torch.abs(x - lambd) + eps)


class EnNormal(nn.Module):
    """Snippets attend to the dictionary atoms (memory module) and are re-expressed with them."""

    def __init__(self, dim: int, shrink_thres: float = 0.0):
        super().__init__()
        self.shrink_thres = shrink_thres
        self.query_embedding = nn.Linear(dim, dim // 4)
        self.cache_embedding = nn.Linear(dim, dim // 4)
        self.value_embedding = nn.Linear(dim, dim)

    def forward(self, x: Tensor, atoms: Tensor, return_affinity: bool = False
                ) -> tuple[Tensor, Tensor | None]:
        """x (B, T, D), atoms (S, D) -> (B, T, D) reconstruction and, when asked, the (B, T, S)
        affinity (else None)."""
        q = self.query_embedding(x)
        k = self.cache_embedding(atoms)
        v = self.value_embedding(atoms)
        if self.shrink_thres > 0 or return_affinity:
            affinity = (q @ k.T).softmax(-1)
            if self.shrink_thres > 0:
                affinity = F.normalize(_hard_shrink_relu(affinity, self.shrink_thres), p=1, dim=-1)
            return affinity @ v, affinity
        # the same softmax(q k^T) v (official: no 1/sqrt(d) scaling, hence scale=1) through the
        # fused kernel, which never materialises the (T, S) affinity of a long test video
        B = x.shape[0]
        out = F.scaled_dot_product_attention(q, k.expand(B, -1, -1), v.expand(B, -1, -1), scale=1.0)
        return out, None


class DeNormal(nn.Module):
    """Channel gate from the difference of the temporally averaged video and macro streams."""

    def __init__(self, dim: int, reduction: int = 16):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(dim, dim // reduction), nn.ReLU(),
                                 nn.Linear(dim // reduction, dim))

    def forward(self, video: Tensor, macro: Tensor) -> tuple[Tensor, Tensor]:
        """video, macro (B, T, D) (T may differ) -> gated streams."""
        gate = torch.sigmoid(self.mlp(video.mean(1) - macro.mean(1)))[:, None, :]  # (B, 1, D)
        return video * gate, macro * (1.0 - gate)


class S3RModel(WSVADModel):
    # live: RTFM-style Aggregate on both streams, and the de-Normal gate pools the
    # whole sequence
    causal = False

    _not_in_official_checkpoint = ("dictionary",)

    def __init__(self, hparams: S3RHParams, feat_dim: int, dictionary: np.ndarray | Tensor):
        super().__init__(hparams, feat_dim)
        hp = hparams
        D = feat_dim
        atoms = torch.as_tensor(np.asarray(dictionary, dtype=np.float32))
        if atoms.ndim != 2 or atoms.shape[1] != D or atoms.shape[0] < 1:
            raise ValueError(f"S3R dictionary must be (n_atoms, {D}), got {tuple(atoms.shape)}")
        if D % (8 * hp.aggregate_reduction) or D // hp.gate_reduction < 1:
            raise ValueError(f"S3R needs feat_dim divisible by {8 * hp.aggregate_reduction} "
                             f"(GroupNorm(8) on D/{hp.aggregate_reduction}); got {D}")
        self.register_buffer("dictionary", atoms)  # saved with checkpoints: the test needs it
        inner = D // hp.aggregate_reduction
        self.en_normal = EnNormal(D, shrink_thres=hp.shrink_thres)
        self.video_embedding = TemporalAggregate(D, inner=inner, norm="gn")
        self.macro_embedding = TemporalAggregate(D, inner=inner, norm="gn")
        self.de_normal = DeNormal(D, reduction=hp.gate_reduction)
        # detector: Linear(D, D/4) ReLU Dropout Linear(D/4, D/16) ReLU Dropout Linear(D/16, 1)
        self.video_classifier = mlp_head([D, D // 4, D // 16, 1], hp.dropout, sigmoid=True)
        self.macro_classifier = mlp_head([D, D // 4, D // 16, 1], hp.dropout, sigmoid=False)
        self.drop_out = nn.Dropout(hp.dropout)
        self.apply(xavier_init)

    def forward(self, x: Tensor, return_affinity: bool = False) -> dict[str, Tensor]:
        """(B, C, T, D) -> video features (B*C, T, D), crop-averaged video scores (B, T), macro
        scores (B,), affinity (B*C, T, S) when ``return_affinity`` (else None: the loss and the
        scores do not need it, and computing it forgoes the fused attention kernel)."""
        B, C, T, D = x.shape
        video = x.reshape(B * C, T, D)
        macro, affinity = self.en_normal(video, self.dictionary, return_affinity)
        x_video = self.drop_out(self.video_embedding(video))
        x_macro = self.drop_out(self.macro_embedding(macro))
        x_video, x_macro = self.de_normal(x_video, x_macro)
        video_scores = self.video_classifier(x_video).view(B, C, T).mean(1)
        macro_scores = torch.sigmoid(self.macro_classifier(x_macro.mean(1))).view(B, C).mean(1)
        return {"features": x_video, "video_scores": video_scores, "macro_scores": macro_scores,
                "affinity": affinity}

    def _loss(self, normal: Tensor, abnormal: Tensor) -> dict[str, Tensor]:
        hp = self.hparams
        out = self.forward(torch.cat([normal, abnormal], 0))
        terms = rtfm_loss(out["features"], out["video_scores"], hp, self.training)
        macro_scores = out["macro_scores"]
        macro = hp.lambda_macro * F.binary_cross_entropy(macro_scores,
                                                         torch.zeros_like(macro_scores))
        return {**terms, "loss": terms["loss"] + macro, "macro": macro}

    def _score_video(self, x: Tensor) -> Tensor:
        # per-snippet attention, per-sequence gate and Aggregate: crops are independent
        return score_crops(x, lambda v: self.forward(v[None, None])["video_scores"][0])


_RENAMES = (
    # (official prefix/infix, ours)
    ("en_normal.en_normal_module.", "en_normal."),
    ("video_embedding.0.", "video_embedding."),
    ("macro_embedding.0.", "macro_embedding."),
    ("de_normal.channel_attention.channel_gate.mlp.1.", "de_normal.mlp.0."),
    ("de_normal.channel_attention.channel_gate.mlp.3.", "de_normal.mlp.2."),
    ("macro_classifier.mlp.", "macro_classifier."),
)
_NONLOCAL = {"value": "g", "query": "theta", "key": "phi", "alter": "W"}


def load_official_state_dict(state: Mapping[str, Any]) -> dict[str, Tensor]:
    """S3R checkpoint (``S3R.state_dict()``) to ours. The dictionary buffer is not in it (it comes
    from the dictionary .npy): load with :func:`wsvad_core.methods.base.load_official`."""
    # the projections are built but never used by the official forward
    renamed = rename_official(state, _RENAMES, drop=("video_projection.", "macro_projection."))
    out = {}
    for k, v in renamed.items():
        parts = k.split(".")
        if "non_local" in parts:
            i = parts.index("non_local") + 1
            parts[i] = _NONLOCAL.get(parts[i], parts[i])
            k = ".".join(parts)
        out[k] = v
    return out


SPEC = register(MethodSpec(
    name="s3r",
    paper="Wu, Yen, Chen, Yang, Chiu, Lin. Self-Supervised Sparse Representation for Video "
          "Anomaly Detection. ECCV 2022",
    official_code="https://github.com/louisYen/S3R",
    hparams=S3RHParams,
    segment_policy="resize",
    needs_dictionary=True,
    build=S3RModel,
    load_official_state_dict=load_official_state_dict,
    # 2: the top-k selection dropout masks drawn abnormal-first, as the official code (issue 13)
    version="2",
))
