"""Zhou, Yu, Yang, "Dual Memory Units with Uncertainty Regulation for Weakly Supervised Video
Anomaly Detection", AAAI 2023 (UR-DMU).

Official code: henrryzh1/UR-DMU (commit 40cfdf5), files cited as ``model`` = model.py,
``memory`` = memory.py, ``translayer`` = translayer.py, ``train`` = train.py, ``main`` =
ucf_main.py / xd_main.py, ``options`` = options.py, ``config`` = config.py, ``loader`` =
dataset_loader.py, ``test`` = ucf_test.py / xd_test.py.

* Embedding (model ``Temporal``): Conv1d(D, 512, 3, padding 1) + ReLU over time.
* Transformer (translayer): 2 pre-LayerNorm layers, 4 heads of 128, FFN 512 with GELU, dropout
  0.5. Each head has a global branch (softmax(q k^T / sqrt(128)) v, computed here with
  ``scaled_dot_product_attention``) and the distance branch "DSA" (``t`` mixed by the fixed kernel
  exp(-|i - j| / e)); the official normalisation ``attn2 / attn2.sum(-1)`` broadcasts over the
  *last* axis, i.e. divides column j by the sum of row j; kept as written. The two branches are
  concatenated per head (``b h n (2d)``) and projected 1024 -> 512.
* Dual memory units (memory): 60 learnable 512-d slots each for anomalies and normality;
  attention = sigmoid(x M^T / sqrt(512)), temporal score = mean of its top (60 // 16 + 1) slots,
  augmented feature = attention @ M.
* Training forward (model ``WSAD.forward`` flag "Train") and loss (train ``AD_Loss``): with
  k = T // 16 + 1 top snippets, BCE of the top-k mean of the snippet scores against the video
  labels + 0.1 x (BCE of the memory scores: abnormal videos on the anomaly memory -> 1 (top-k),
  abnormal videos on the normal memory -> "1 - score" top-k -> 1, normal videos on the normal
  memory -> 1 (every snippet), normal videos on the anomaly memory -> 0 (every snippet))
  + 0.1 x triplet (margin 1, L2-normalised features: anchor = normal snippets picked by the normal
  memory, positive = abnormal snippets picked by the normal memory, negative = abnormal snippets
  picked by the anomaly memory) + 0.001 x KL of the normal-memory "uncertainty" Gaussian (the
  official sum runs over *time*, dim 1, then the mean) + 0.0001 x mean relu(100 - |neg| + |anc|)
  on the encoded augmentations. The classifier (Linear 1024 -> 128, ReLU, Linear -> 1, sigmoid)
  sees [x, memory augmentation]: the re-parameterised normal augmentation for normal videos,
  mu(anomaly augmentation) for abnormal ones (each plus the other memory's mu-encoded output).
* main / options / config: batch 64 normal + 64 abnormal, Adam lr 1e-4 betas (0.9, 0.999) weight
  decay 5e-5, 3000 iterations (len of '[0.0001]*3000'), seed 2022, 200 segments per training
  video (mean-pool at floor(linspace(0, T, 201)), loader), test every 10 steps after step 10,
  best-on-test checkpoint kept.
* Crops: the official UCF-Crime/XD lists hold one file per crop and the loaders draw crops as
  independent samples; here a training step takes one random crop of each of the batch_size
  videos (``train_crops="random"``; ``"all"`` uses every crop as its own sample). The test
  scores every crop separately and averages the crop scores (test).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from wsvad_core.cards import hp

from .base import MethodSpec, TrainHParams, WSVADModel, rename_official
from .blocks import DSATransformer, TemporalEmbedding, crop_samples, score_crops
from .registry import register

__all__ = ["URDMUHParams", "URDMUModel", "load_official_state_dict"]



@dataclass
class URDMUHParams(TrainHParams):
    batch_size: int = 64  # main: DataLoader(batch_size=64) for each class
    lr: float = 1e-4  # options --lr '[0.0001]*3000' (constant)
    weight_decay: float = 5e-5  # main: Adam(..., weight_decay=0.00005)
    optimizer: str = "adam"  # main: Adam, betas (0.9, 0.999)
    max_steps: int = 3000  # config: num_iters = len(lr list) = 3000
    n_segments: int = 200  # main: UCF_crime/XDVideo(num_segments=200) for training
    seed: int = 2022  # options --seed 2022
    eval_every: int = 10  # main: test when step % 10 == 0 and step > 10
    eval_min_step: int = 10
    width: int = hp(512, ge=1)  # model: Temporal(input_size, 512), memories and transformer at 512
    depth: int = hp(2, ge=1)  # model: Transformer(512, 2, 4, 128, 512, dropout=0.5)
    heads: int = hp(4, ge=1)
    dim_head: int = hp(128, ge=1)
    mlp_dim: int = hp(512, ge=1)
    dropout: float = hp(0.5, ge=0, lt=1)
    cls_hidden: int = hp(128, ge=1)  # model ADCLS_head: Linear(1024, 128)
    a_nums: int = hp(60, ge=1)  # main: WSAD(..., a_nums=60, n_nums=60)
    n_nums: int = hp(60, ge=1)
    triplet_margin: float = hp(1.0, ge=0)  # model: nn.TripletMarginLoss(margin=1)
    distance_margin: float = hp(100.0, ge=0)  # model: relu(100 - |neg| + |anc|)
    lambda_memory: float = hp(0.1, ge=0)  # train AD_Loss: 0.1 * (A_loss + panomaly + N_loss + A_Nloss)
    lambda_triplet: float = hp(0.1, ge=0)  # 0.1 * triplet
    lambda_kl: float = hp(1e-3, ge=0)  # 0.001 * kl_loss
    lambda_distance: float = hp(1e-4, ge=0)  # 0.0001 * distance
    train_crops: str = hp("random", choices=("random", "all"))  # random | all (see module docstring)


class MemoryUnit(nn.Module):
    """memory ``Memory_Unit``: sigmoid slot attention, top-(nums // 16 + 1) temporal score."""

    def __init__(self, nums: int, dim: int):
        super().__init__()
        self.nums, self.dim = nums, dim
        bound = 1.0 / math.sqrt(dim)
        self.memory_block = nn.Parameter(torch.empty(nums, dim).uniform_(-bound, bound))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:  # (N, T, dim) -> (N, T), (N, T, dim)
        att = torch.sigmoid(x @ self.memory_block.T / self.dim ** 0.5)
        temporal = att.topk(min(self.nums // 16 + 1, self.nums), dim=-1).values.mean(-1)
        return temporal, att @ self.memory_block


def _topk_mean(x: Tensor, k: int) -> Tensor:
    return x.topk(min(k, x.shape[-1]), dim=-1).values.mean(-1)


def _gather_mean(x: Tensor, idx: Tensor) -> Tensor:
    """Mean of the snippets ``idx`` (N, k) of x (N, T, W) -> (N, W)."""
    return torch.gather(x, 1, idx[..., None].expand(-1, -1, x.shape[-1])).mean(1)


class URDMUModel(WSVADModel):
    # live: 3-tap conv embedding and a transformer (global and distance attention)
    # over the whole sequence
    causal = False

    def __init__(self, hparams: URDMUHParams, feat_dim: int):
        super().__init__(hparams, feat_dim)
        hp = hparams
        if hp.train_crops not in ("random", "all"):
            raise ValueError(f"urdmu: train_crops must be 'random' or 'all', got {hp.train_crops!r}")
        W = hp.width
        self.embedding = TemporalEmbedding(feat_dim, W)
        self.selfatt = DSATransformer(W, hp.depth, hp.heads, hp.dim_head, hp.mlp_dim, hp.dropout)
        self.cls_head = nn.Sequential(nn.Linear(2 * W, hp.cls_hidden), nn.ReLU(),
                                      nn.Linear(hp.cls_hidden, 1), nn.Sigmoid())
        self.abnormal_memory = MemoryUnit(hp.a_nums, W)
        self.normal_memory = MemoryUnit(hp.n_nums, W)
        self.encoder_mu = nn.Linear(W, W)
        self.encoder_var = nn.Linear(W, W)

    def encode(self, x: Tensor) -> Tensor:
        return self.selfatt(self.embedding(x))

    def train_forward(self, x: Tensor, n_normal: int) -> dict[str, Tensor]:
        """Official training forward on (2n, T, D) samples, normal first."""
        hp = self.hparams
        x = self.encode(x)
        T = x.shape[1]
        k = min(T // 16 + 1, T)
        nx, ax = x[:n_normal], x[n_normal:]
        a_att, a_aug = self.abnormal_memory(ax)  # abnormal videos on the anomaly memory
        n_a_att, n_a_aug = self.normal_memory(ax)  # abnormal videos on the normal memory
        a_n_att, a_n_aug = self.abnormal_memory(nx)  # normal videos on the anomaly memory
        n_att, n_aug = self.normal_memory(nx)  # normal videos on the normal memory

        a_idx = a_att.topk(k, dim=-1).indices
        n_idx = n_att.topk(k, dim=-1).indices
        p_idx = n_a_att.topk(k, dim=-1).indices
        negative = _gather_mean(ax, a_idx)
        anchor = _gather_mean(nx, n_idx)
        positive = _gather_mean(ax, p_idx)

        def unit(v: Tensor) -> Tensor:  # utils.norm: v / ||v|| (no eps)
            return v / v.norm(p=2, dim=-1, keepdim=True)

        triplet = F.triplet_margin_loss(unit(anchor), unit(positive), unit(negative),
                                        margin=hp.triplet_margin)
        mu, logvar = self.encoder_mu(n_aug), self.encoder_var(n_aug)
        std = torch.exp(logvar).sqrt()
        n_aug_new = mu + torch.randn_like(std) * std  # the only random draw (uncertainty)
        anchor_new = _gather_mean(n_aug_new, n_idx)
        a_aug_new = self.encoder_mu(a_aug)
        negative_new = _gather_mean(a_aug_new, a_idx)
        kl = torch.mean(-0.5 * torch.sum(1 + logvar - mu ** 2 - logvar.exp(), dim=1))
        distance = F.relu(hp.distance_margin - negative_new.norm(p=2, dim=-1)
                          + anchor_new.norm(p=2, dim=-1)).mean()
        aug = torch.cat([n_aug_new + self.encoder_mu(a_n_aug),
                         a_aug_new + self.encoder_mu(n_a_aug)], dim=0)
        frame = self.cls_head(torch.cat([x, aug], dim=-1)).squeeze(-1)
        return {"frame": frame, "triplet": triplet, "kl": kl, "distance": distance,
                "A_att": a_att, "N_att": n_att, "A_Natt": a_n_att, "N_Aatt": n_a_att}

    def loss_from_outputs(self, out: dict[str, Tensor], n_normal: int) -> dict[str, Tensor]:
        """train ``AD_Loss`` on the outputs of :meth:`train_forward`."""
        hp = self.hparams
        frame = out["frame"]
        T = frame.shape[1]
        k = T // 16 + 1
        n_abnormal = frame.shape[0] - n_normal
        labels = torch.cat([torch.zeros(n_normal), torch.ones(n_abnormal)]).to(frame)
        ones = torch.ones(n_abnormal, device=frame.device)
        video_bce = F.binary_cross_entropy(_topk_mean(frame, k), labels)
        panomaly = F.binary_cross_entropy(_topk_mean(1 - out["N_Aatt"], k), ones)
        a_loss = F.binary_cross_entropy(_topk_mean(out["A_att"], k), ones)
        n_loss = F.binary_cross_entropy(out["N_att"], torch.ones_like(out["N_att"]))
        a_n_loss = F.binary_cross_entropy(out["A_Natt"], torch.zeros_like(out["A_Natt"]))
        memory = hp.lambda_memory * (a_loss + panomaly + n_loss + a_n_loss)
        triplet = hp.lambda_triplet * out["triplet"]
        kl = hp.lambda_kl * out["kl"]
        distance = hp.lambda_distance * out["distance"]
        total = video_bce + memory + triplet + kl + distance
        return {"loss": total, "video_bce": video_bce, "memory": memory, "triplet": triplet,
                "kl": kl, "distance": distance}

    def _loss(self, normal: Tensor, abnormal: Tensor) -> dict[str, Tensor]:
        xn = crop_samples(normal, self.hparams.train_crops)
        xa = crop_samples(abnormal, self.hparams.train_crops)
        out = self.train_forward(torch.cat([xn, xa], 0), xn.shape[0])
        return self.loss_from_outputs(out, xn.shape[0])

    def test_forward(self, x: Tensor) -> Tensor:
        """Official test forward (flag "Test") on (N, T, D) -> (N, T) snippet scores."""
        x = self.encode(x)
        a_aug = self.encoder_mu(self.abnormal_memory(x)[1])
        n_aug = self.encoder_mu(self.normal_memory(x)[1])
        return self.cls_head(torch.cat([x, a_aug + n_aug], dim=-1)).squeeze(-1)

    def _score_video(self, x: Tensor) -> Tensor:
        return score_crops(x, lambda v: self.test_forward(v[None])[0])


_RENAMES = (("Amemory.", "abnormal_memory."), ("Nmemory.", "normal_memory."),
            ("encoder_mu.0.", "encoder_mu."), ("encoder_var.0.", "encoder_var."),
            ("cls_head.mlp.", "cls_head."))


def load_official_state_dict(state: Mapping[str, Any]) -> dict[str, Tensor]:
    """UR-DMU checkpoint (``WSAD.state_dict()``, e.g. models/ucf_trans_2022.pkl) to ours: the
    memories and the single-layer Sequentials are renamed; the transformer, embedding and
    classifier layers keep their official names."""
    return rename_official(state, _RENAMES)


SPEC = register(MethodSpec(
    name="urdmu",
    paper="Zhou, Yu, Yang. Dual Memory Units with Uncertainty Regulation for Weakly Supervised "
          "Video Anomaly Detection. AAAI 2023",
    official_code="https://github.com/henrryzh1/UR-DMU",
    hparams=URDMUHParams,
    build=URDMUModel,
    load_official_state_dict=load_official_state_dict,
))
