"""Zhou, Qu, Xu, Shen, Song, Shen, "BatchNorm-based Weakly Supervised Video Anomaly
Detection", arXiv 2311.15367 (BN-WVAD).

Official code: cool-xuan/BN-WVAD (commit 4fa3a5d; XD-Violence only), files cited as ``model`` =
models/model.py, ``head`` = models/normal_head.py, ``translayer`` = models/translayer.py (the
UR-DMU transformer, dropout 0), ``mpp`` = losses/mpp_loss.py, ``nloss`` = losses/normal_loss.py,
``lc`` = losses/loss_computer.py, ``train`` = train.py, ``main`` = main.py, ``options`` =
options.py, ``loader`` = dataset_loader.py, ``test`` = test.py / infer.py.

* Backbone: UR-DMU's Conv1d(D, 512, 3) + ReLU embedding and its 2-layer DSA transformer
  (4 heads of 128, FFN 512), dropout 0 (model).
* Normal head (head): Conv1d 512 -> 32 (ratio 16), BN, ReLU, Conv1d 32 -> 16 (ratio 32), BN, ReLU,
  Conv1d 16 -> 1, sigmoid (kernel sizes 1, 1, 1). The two conv outputs *before* their BatchNorm are
  the features whose Divergence from the BN running mean (Mahalanobis with the running variance:
  DFM) measures abnormality.
* Selection (model ``pos_neg_select``), per BN layer: on abnormal videos, the union of each video's
  top 20 % snippets by DFM (``ratio_sample``) and the batch's top 40 % of all abnormal snippets
  (``ratio_batch``); as many normal snippets, taken in rank order from each normal video's top
  ``num_selected // n_normal + 1`` by DFM.
* Loss (lc): ||normal-video scores||_2 averaged over normal videos (nloss) + MPP (mpp): per BN
  layer, triplet margin 1 with the Mahalanobis distance (running variance), anchor = running mean,
  positive = selected normal snippets, negative = selected abnormal snippets, weights 5 and 20.
* main / options / train: batch 64 + 64, Adam lr 1e-4 betas (0.9, 0.999) weight decay 5e-5, 1000
  iterations, seed 2022, gradient-norm clipping at 1.0 (train), 200 segments per training video
  (mean-pool at floor(linspace(0, T, 201)), loader), test every 5 steps, best-on-test kept.
* Test (model, test): score = (DFM of layer 1 + DFM of layer 2) x normal-head score per snippet,
  each crop separately, averaged over crops (XD: 5 crops). That product lies in [0, inf); the
  pipeline wants [0, 1], so :meth:`score` reports s / (1 + s), a strictly increasing map: frame
  AUC and AP equal the official ones; :meth:`raw_score` gives the official value.
* Crops: trained on per-crop samples as the official per-crop lists (see ``blocks.crop_samples``).

Gradient clipping: :meth:`BNWVADModel.before_step` clips the gradient norm to 1.0; the shared
training loop calls it between ``backward()`` and ``optimizer.step()``, where train.py clips.
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
from .blocks import DSATransformer, TemporalEmbedding, crop_samples, score_crops
from .registry import register


@dataclass
class BNWVADHParams(TrainHParams):
    batch_size: int = 64  # options --batch_size 64 (per class)
    lr: float = 1e-4  # options --lr '[0.0001]*1000' (constant)
    weight_decay: float = 5e-5  # options --weight_decay 0.00005
    optimizer: str = "adam"  # main: Adam, betas (0.9, 0.999)
    max_steps: int = 1000  # options: num_iters = len(lr list) = 1000
    n_segments: int = 200  # options --num_segments 200
    seed: int = 2022  # options --seed 2022
    eval_every: int = 5  # options --plot_freq 5 (main tests every plot_freq steps)
    width: int = hp(512, ge=1)  # model: Temporal(input_size, 512), Transformer(512, 2, 4, 128, 512)
    depth: int = hp(2, ge=1)
    heads: int = hp(4, ge=1)
    dim_head: int = hp(128, ge=1)
    mlp_dim: int = hp(512, ge=1)
    dropout: float = hp(0.0, ge=0, lt=1)  # model: Transformer(..., dropout=0)
    ratios: tuple[int, int] = hp((16, 32), ge=1)  # options --ratios 16 32
    kernel_sizes: tuple[int, int, int] = hp((1, 1, 1), ge=1)  # options --kernel_sizes 1 1 1
    ratio_sample: float = hp(0.2, gt=0, le=1)  # options --ratio_sample 0.2
    ratio_batch: float = hp(0.4, gt=0, le=1)  # options --ratio_batch 0.4
    w_triplet: tuple[float, float] = hp((5.0, 20.0), ge=0)  # mpp: self.w_triplet = [5, 20]
    triplet_margin: float = hp(1.0, ge=0)  # mpp: TripletMarginWithDistanceLoss(margin=1)
    w_normal: float = hp(1.0, ge=0)  # lc: LossComputer(w_normal=1., w_mpp=1.)
    w_mpp: float = hp(1.0, ge=0)
    grad_clip_norm: float = hp(1.0, ge=0)  # train: clip_grad_norm_(net.parameters(), 1.); 0: no clipping
    train_crops: str = hp("random", choices=("random", "all"))  # random | all (blocks.crop_samples)


class NormalHead(nn.Module):
    """head ``NormalHead``: conv-BN-ReLU x 2 then conv + sigmoid, on (N, C, T)."""

    def __init__(self, in_channel: int, ratios: tuple[int, int], kernel_sizes: tuple[int, ...]):
        super().__init__()
        c1, c2 = in_channel // ratios[0], in_channel // ratios[1]
        if c1 < 1 or c2 < 1:
            raise ValueError(f"bnwvad: width {in_channel} too small for ratios {tuple(ratios)}")
        k = kernel_sizes
        self.conv1 = nn.Conv1d(in_channel, c1, k[0], 1, k[0] // 2)
        self.bn1 = nn.BatchNorm1d(c1)
        self.conv2 = nn.Conv1d(c1, c2, k[1], 1, k[1] // 2)
        self.bn2 = nn.BatchNorm1d(c2)
        self.conv3 = nn.Conv1d(c2, 1, k[2], 1, k[2] // 2)

    @property
    def bns(self) -> tuple[nn.BatchNorm1d, nn.BatchNorm1d]:
        return self.bn1, self.bn2

    def forward(self, x: Tensor) -> tuple[list[Tensor], Tensor]:
        """-> (the two pre-BN features, (N, T) scores)."""
        f1 = self.conv1(x)
        f2 = self.conv2(F.relu(self.bn1(f1)))
        s = torch.sigmoid(self.conv3(F.relu(self.bn2(f2))))
        return [f1, f2], s[:, 0]


def mahalanobis_to_bn(feats: Tensor, bn: nn.BatchNorm1d) -> Tensor:
    """DFM: distance of (N, C, T) features to the BN running mean, scaled by the running
    variance -> (N, T) (model ``get_mahalanobis_distance``)."""
    mean, var = bn.running_mean, bn.running_var
    return torch.sqrt(torch.sum((feats - mean[None, :, None]) ** 2 / var[None, :, None], dim=1))


def select_snippets(feats: Tensor, distance: Tensor, n_normal: int, ratio_sample: float,
                    ratio_batch: float) -> tuple[Tensor, Tensor]:
    """Sample- and batch-level selection (model ``pos_neg_select``) on (2n, C, T) features and
    (2n, T) DFM, normal first -> (selected normal (M, C), selected abnormal (M, C))."""
    N, C, T = feats.shape
    n_abn = N - n_normal
    per_sample = int(T * ratio_sample)
    per_batch = int(n_normal * T * ratio_batch)  # official: bs // 2 * t * ratio
    nor_d, abn_d = distance[:n_normal], distance[n_normal:]
    nor_f = feats[:n_normal].transpose(1, 2)  # (n, T, C)
    abn_f = feats[n_normal:].transpose(1, 2)
    mask_sample = torch.zeros_like(abn_d, dtype=torch.bool)
    if per_sample > 0:
        mask_sample.scatter_(1, abn_d.topk(per_sample, dim=-1).indices, True)
    flat_d = abn_d.reshape(-1)
    mask_batch = torch.zeros_like(flat_d, dtype=torch.bool)
    if per_batch > 0:
        mask_batch.scatter_(0, flat_d.topk(min(per_batch, flat_d.numel())).indices, True)
    mask = mask_batch | mask_sample.reshape(-1)
    sel_abn = abn_f.reshape(n_abn * T, C)[mask]
    num = int(mask.sum())
    # the official k = num // n + 1 can exceed T only when every snippet is selected
    k_nor = min(int(num / n_normal) + 1, T)
    idx = nor_d.topk(k_nor, dim=-1).indices
    sel_nor = torch.gather(nor_f, 1, idx[..., None].expand(-1, -1, C))  # (n, k, C)
    sel_nor = sel_nor.transpose(0, 1).reshape(-1, C)[:num]  # rank-major, as official
    return sel_nor, sel_abn


class BNWVADModel(WSVADModel):
    # live: UR-DMU's 3-tap conv embedding and transformer mix the whole sequence
    causal = False

    def __init__(self, hparams: BNWVADHParams, feat_dim: int):
        super().__init__(hparams, feat_dim)
        hp = hparams
        if hp.train_crops not in ("random", "all"):
            raise ValueError(f"bnwvad: train_crops must be 'random' or 'all', got {hp.train_crops!r}")
        if len(hp.ratios) != 2 or len(hp.kernel_sizes) != 3 or len(hp.w_triplet) != 2:
            raise ValueError("bnwvad: ratios needs 2 values, kernel_sizes 3, w_triplet 2 "
                             f"(got {hp.ratios}, {hp.kernel_sizes}, {hp.w_triplet})")
        W = hp.width
        self.embedding = TemporalEmbedding(feat_dim, W)
        self.selfatt = DSATransformer(W, hp.depth, hp.heads, hp.dim_head, hp.mlp_dim, hp.dropout)
        self.normal_head = NormalHead(W, hp.ratios, hp.kernel_sizes)

    def _head(self, x: Tensor) -> tuple[list[Tensor], Tensor, list[Tensor]]:
        """(N, T, D) -> pre-BN features, normal scores (N, T), DFM per BN layer (N, T)."""
        h = self.selfatt(self.embedding(x)).transpose(1, 2)
        feats, scores = self.normal_head(h)
        # after the head's forward: in training the running statistics already include this
        # batch, as in the official code
        dists = [mahalanobis_to_bn(f, bn) for f, bn in zip(feats, self.normal_head.bns)]
        return feats, scores, dists

    def loss_terms(self, x: Tensor, n_normal: int) -> dict[str, Tensor]:
        """Official training forward + LossComputer on (2n, T, D) samples, normal first."""
        hp = self.hparams
        feats, scores, dists = self._head(x)
        normal = hp.w_normal * scores[:n_normal].norm(p=2, dim=1).mean()
        mpp = scores.new_zeros(())
        for f, d, bn, w in zip(feats, dists, self.normal_head.bns, hp.w_triplet):
            pos, neg = select_snippets(f, d, n_normal, hp.ratio_sample, hp.ratio_batch)
            mean, var = bn.running_mean, bn.running_var

            def dist(a: Tensor, b: Tensor, var: Tensor = var) -> Tensor:
                return torch.sqrt(torch.sum((b - a) ** 2 / var, dim=-1))

            anchor = mean[None].expand_as(pos)
            mpp = mpp + w * F.triplet_margin_with_distance_loss(
                anchor, pos, neg, distance_function=dist, margin=hp.triplet_margin)
        mpp = hp.w_mpp * mpp
        return {"loss": normal + mpp, "normal": normal, "mpp": mpp}

    def _loss(self, normal: Tensor, abnormal: Tensor) -> dict[str, Tensor]:
        xn = crop_samples(normal, self.hparams.train_crops)
        xa = crop_samples(abnormal, self.hparams.train_crops)
        return self.loss_terms(torch.cat([xn, xa], 0), xn.shape[0])

    def before_step(self) -> None:
        """train.py clips the gradient norm between backward() and optimizer.step()."""
        if self.hparams.grad_clip_norm > 0:
            torch.nn.utils.clip_grad_norm_(self.parameters(), self.hparams.grad_clip_norm)

    def raw_forward(self, x: Tensor) -> Tensor:
        """Official test output on (N, T, D): (sum of DFMs) x normal score, (N, T), >= 0."""
        _, scores, dists = self._head(x)
        return sum(dists) * scores

    @torch.no_grad()
    def _raw_video(self, x: Tensor) -> Tensor:
        """(C, T, D) -> (T,) the official score (DFM x score), crop-averaged."""
        return score_crops(x, lambda v: self.raw_forward(v[None])[0])

    def raw_score(self, x: Tensor | np.ndarray) -> Tensor:
        """(N, C, T, D) -> (N, T) official scores, before the map onto [0, 1)."""
        return self._score_each(x, self._raw_video)

    def _score_video(self, x: Tensor) -> Tensor:
        raw = self._raw_video(x)
        return raw / (1.0 + raw)  # strictly increasing map of [0, inf) onto [0, 1)


def load_official_state_dict(state: Mapping[str, Any]) -> dict[str, Tensor]:
    """BN-WVAD checkpoint (``WSAD.state_dict()``, e.g. ckpts/xd_best.pkl) to ours: the official
    names are kept (a DataParallel ``module.`` prefix is dropped)."""
    return rename_official(state)


SPEC = register(MethodSpec(
    name="bnwvad",
    paper="Zhou, Qu, Xu, Shen, Song, Shen. BatchNorm-based Weakly Supervised Video Anomaly Detection. "
          "arXiv 2311.15367 (2023)",
    official_code="https://github.com/cool-xuan/BN-WVAD",
    hparams=BNWVADHParams,
    build=BNWVADModel,
    load_official_state_dict=load_official_state_dict,
))
