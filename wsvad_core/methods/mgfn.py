"""Chen, Liu, Zhang, Fok, Qi, Wu, "MGFN: Magnitude-Contrastive Glance-and-Focus Network for
Weakly-Supervised Video Anomaly Detection", AAAI 2023 (MGFN).

Official code: carolchenyx/MGFN (commit 98e9389), files cited as ``model`` = models/mgfn.py,
``blocks`` = utils/utils.py, ``train`` = train.py, ``main`` = main.py, ``option`` = option.py,
``dataset`` = datasets/dataset.py, ``test`` = test.py.

* Input (dataset): each (pooled) snippet feature plus its L2 norm as one extra channel; here the
  norm is computed inside the model from the same tensor (training segments after the 32-segment
  mean-pool, raw snippets at test, exactly where the official loader computes it).
* Model (model ``mgfn``): feature tokens Conv1d(D, 64, 3) + 0.1 x Conv1d(1, 64, 3) of the
  magnitude (``mag_ratio``); three stages of widths 64 / 128 / 1024, depths 3 / 3 / 2, block
  types glance / focus / focus, each block x += conv3(x); x += attention(x); x += FFN(x) (channel
  LayerNorm, 1x1 conv x4, GELU, 1x1 conv); between stages channel LayerNorm + 1x1 conv; then
  LayerNorm and Linear -> 1 + sigmoid per snippet, averaged over crops.
  Glance (blocks ``GLANCE``): channel LayerNorm, multi-head self-attention over time with 64-d
  heads (computed with ``scaled_dot_product_attention``); ``mgfn(dim_head)`` only sets the head
  count (width // 64), every head is 64 wide (``Backbone`` never passes ``dim_headnumber``).
  Focus (blocks ``FOCUS``): BatchNorm,
  1x1 value conv, per-head 5-tap temporal conv (channel c*heads + h uses head h's kernel, as the
  official ``rearrange('b (c h) ...')``), 1x1 out conv. The channel LayerNorm divides by
  (std + 1e-5), not sqrt(var + eps), as the official one.
* MSNSD (model): RTFM's top-k selection by crop-averaged feature magnitude of the final
  (LayerNorm-ed) features, k = 3, magnitudes times a dropout(0.7) mask in training.
* Loss (train ``mgfn_loss`` + ``train``): BCE of the top-k mean scores + 0.001 x (0.001 x
  contrastive(|abn|_1, |nor|_1, separate, margin 200) + contrastive(abnormal halves, together)
  + contrastive(normal halves, together)) on the L1 norms of the selected snippet features
  (``F.pairwise_distance`` over the k selected snippets; "halves" = the first and second half of
  the crop-major selection list) + smoothness 8e-4 (squared differences within each of the 2B
  videos' crop-averaged scores) + sparsity 8e-3 (L2 norm of the *normal* videos' scores, as
  ``scores[:batch_size]`` in train.py selects).
* main / option: batch 16 + 16, Adam lr 0.001 weight decay 0.0005, ``--max-epoch 1000`` epochs
  of ``zip(nloader, aloader)``: on UCF-Crime 800 normal // 16 = 50 iterations each, hence
  50,000 steps here; test after every epoch (main:87; ``eval_schedule: epoch_end``), best-on-test
  kept. MSNSD's split of the batch uses the real batch (the official ``features[:batch_size *
  10]`` assumes 10 crops).
* Data order: the official loaders do not shuffle (main:39-44, ``shuffle=False``,
  ``drop_last=True``) and train:81-82 zips them, so every epoch pairs normal batch j with
  abnormal batch j in list order (the longer list's tail is never used). That is this method's
  default, ``pairing: in_order`` (the shared loop's fixed in-order pairing; manifest order = list
  order); ``pairing: independent`` gives the RTFM family's reshuffled loaders instead.
* Test (test): whole video, eval mode, crop-averaged scores.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from wsvad_core.cards import hp

from .base import MethodSpec, TrainHParams, WSVADModel, rename_official
from .blocks import score_crops, score_sparsity, temporal_smoothness, topk_magnitude_bce
from .registry import register


@dataclass
class MGFNHParams(TrainHParams):
    batch_size: int = 16  # option --batch_size 16 (per class)
    lr: float = 1e-3  # option --lr '[0.001]*15000' (constant)
    weight_decay: float = 5e-4  # main: Adam(..., weight_decay=0.0005)
    optimizer: str = "adam"  # main
    max_steps: int = 50000  # option --max-epoch 1000 x 50 iterations per epoch (UCF-Crime)
    n_segments: int = 32  # option --seg_length 32 (dataset process_feat)
    pairing: str = "in_order"  # main: both loaders shuffle=False, drop_last; train: zip(nloader, aloader) every epoch
    eval_schedule: str = "epoch_end"  # main: test after every epoch (step % 1 == 0; 50 iterations on UCF-Crime)
    eval_every: int = 1  # ... every epoch
    dims: tuple[int, int, int] = hp((64, 128, 1024), ge=1)  # model mgfn(dims=(64, 128, 1024))
    depths: tuple[int, int, int] = hp((3, 3, 2), ge=1)  # option --depths1/2/3
    block_types: tuple[str, str, str] = hp(("gb", "fb", "fb"), choices=("gb", "fb"))  # option --mgfn_type1/2/3
    dim_head: int = hp(64, ge=1)  # model mgfn(dim_head=64): only sets heads = stage width // dim_head
    head_width: int = hp(64, ge=1)  # model Backbone(dim_headnumber=64): each head's width (never passed)
    ff_repe: int = hp(4, ge=1)  # model: ff_repe = 4
    local_kernel: int = hp(5, ge=1)  # model: lokernel = 5 (focus block)
    ff_dropout: float = hp(0.0, ge=0, lt=1)  # model: dropout = 0.
    mag_ratio: float = hp(0.1, ge=0)  # option --mag_ratio 0.1
    dropout: float = hp(0.7, ge=0, lt=1)  # option --dropout_rate 0.7 (MSNSD selection mask only)
    topk: int = hp(3, ge=0)  # model forward: k = 3
    margin: float = hp(200.0, ge=0)  # train ContrastiveLoss(margin=200.0)
    lambda_contrast: float = hp(1e-3, ge=0)  # train: 0.001 * (0.001 * loss_con + loss_con_a + loss_con_n)
    lambda_separate: float = hp(1e-3, ge=0)  # ... the inner 0.001 on loss_con
    lambda_smooth: float = hp(8e-4, ge=0)  # train: smooth(scores, 8e-4)
    lambda_sparse: float = hp(8e-3, ge=0)  # train: sparsity(scores[:batch_size], ..., 8e-3)


class ChannelLayerNorm(nn.Module):
    """blocks ``LayerNorm`` on (N, C, T): normalise over channels, divide by (std + eps)."""

    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.g = nn.Parameter(torch.ones(1, dim, 1))
        self.b = nn.Parameter(torch.zeros(1, dim, 1))

    def forward(self, x: Tensor) -> Tensor:
        mean = x.mean(dim=1, keepdim=True)
        std = x.var(dim=1, unbiased=False, keepdim=True).sqrt()
        return (x - mean) / (std + self.eps) * self.g + self.b


class Glance(nn.Module):
    """Multi-head self-attention over time on (N, C, T) (blocks ``GLANCE``)."""

    def __init__(self, dim: int, heads: int, dim_head: int):
        super().__init__()
        self.heads, self.dim_head = heads, dim_head
        inner = heads * dim_head
        self.norm = ChannelLayerNorm(dim)
        self.to_qkv = nn.Conv1d(dim, inner * 3, 1, bias=False)
        self.to_out = nn.Conv1d(inner, dim, 1)

    def forward(self, x: Tensor) -> Tensor:
        N, _, T = x.shape
        q, k, v = (z.view(N, self.heads, self.dim_head, T).transpose(2, 3)
                   for z in self.to_qkv(self.norm(x)).chunk(3, dim=1))
        out = F.scaled_dot_product_attention(q, k, v)  # scale dim_head ** -0.5, as official
        return self.to_out(out.transpose(2, 3).reshape(N, -1, T))


class Focus(nn.Module):
    """BatchNorm, value conv, per-head local temporal conv (blocks ``FOCUS``) on (N, C, T)."""

    def __init__(self, dim: int, heads: int, dim_head: int, kernel: int):
        super().__init__()
        self.heads = heads
        inner = heads * dim_head
        self.norm = nn.BatchNorm1d(dim)
        self.to_v = nn.Conv1d(dim, inner, 1, bias=False)
        self.rel_pos = nn.Conv1d(heads, heads, kernel, padding=kernel // 2, groups=heads)
        self.to_out = nn.Conv1d(inner, dim, 1)

    def forward(self, x: Tensor) -> Tensor:
        N, _, T = x.shape
        v = self.to_v(self.norm(x))  # (N, inner, T), channel index c * heads + h
        v = v.reshape(-1, self.heads, T)  # (N * inner/heads, heads, T)
        return self.to_out(self.rel_pos(v).reshape(N, -1, T))


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, hp: MGFNHParams, kind: str):
        super().__init__()
        self.scc = nn.Conv1d(dim, dim, 3, padding=1)
        if kind == "gb":
            self.attn = Glance(dim, heads, hp.head_width)
        elif kind == "fb":
            self.attn = Focus(dim, heads, hp.head_width, hp.local_kernel)
        else:
            raise ValueError(f"mgfn: block type must be 'gb' (glance) or 'fb' (focus), got {kind!r}")
        self.ff = nn.Sequential(ChannelLayerNorm(dim), nn.Conv1d(dim, dim * hp.ff_repe, 1),
                                nn.GELU(), nn.Dropout(hp.ff_dropout),
                                nn.Conv1d(dim * hp.ff_repe, dim, 1))

    def forward(self, x: Tensor) -> Tensor:
        x = self.scc(x) + x
        x = self.attn(x) + x
        return self.ff(x) + x


class Stage(nn.Module):
    def __init__(self, dim: int, next_dim: int | None, depth: int, kind: str, hp: MGFNHParams):
        super().__init__()
        heads = dim // hp.dim_head
        if heads < 1:
            raise ValueError(f"mgfn: stage width {dim} < dim_head {hp.dim_head}")
        self.blocks = nn.ModuleList(Block(dim, heads, hp, kind) for _ in range(depth))
        self.transition = (nn.Sequential(ChannelLayerNorm(dim), nn.Conv1d(dim, next_dim, 1))
                           if next_dim is not None else None)

    def forward(self, x: Tensor) -> Tensor:
        for block in self.blocks:
            x = block(x)
        return self.transition(x) if self.transition is not None else x


def contrastive(x1: Tensor, x2: Tensor, together: bool, margin: float) -> Tensor:
    """train ``ContrastiveLoss``: mean d^2 (label 0, pull together) or mean relu(margin - d)^2
    (label 1, push apart), d = ``F.pairwise_distance`` (eps 1e-6) between rows."""
    d = F.pairwise_distance(x1, x2, keepdim=True)
    return (d ** 2).mean() if together else (F.relu(margin - d) ** 2).mean()


class MGFNModel(WSVADModel):
    # live: 3- and 5-tap temporal convs and glance self-attention over the sequence
    causal = False

    def __init__(self, hparams: MGFNHParams, feat_dim: int):
        super().__init__(hparams, feat_dim)
        hp = hparams
        if not (len(hp.dims) == len(hp.depths) == len(hp.block_types)):
            raise ValueError(f"mgfn: dims {hp.dims}, depths {hp.depths} and block_types "
                             f"{hp.block_types} must have the same length")
        dims = tuple(hp.dims)
        self.to_tokens = nn.Conv1d(feat_dim, dims[0], 3, padding=1)
        self.to_mag = nn.Conv1d(1, dims[0], 3, padding=1)
        self.stages = nn.ModuleList(
            Stage(dims[i], dims[i + 1] if i + 1 < len(dims) else None, hp.depths[i],
                  hp.block_types[i].lower(), hp)
            for i in range(len(dims)))
        self.norm_out = nn.LayerNorm(dims[-1])
        self.fc = nn.Linear(dims[-1], 1)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(B, C, T, D) -> final features (B*C, T, F), crop-averaged scores (B, T)."""
        B, C, T, D = x.shape
        x = x.reshape(B * C, T, D).transpose(1, 2)
        mag = x.norm(p=2, dim=1, keepdim=True)  # dataset: np.linalg.norm over the feature axis
        h = self.to_tokens(x) + self.hparams.mag_ratio * self.to_mag(mag)
        for stage in self.stages:
            h = stage(h)
        feats = self.norm_out(h.transpose(1, 2))
        scores = torch.sigmoid(self.fc(feats)).view(B, C, T).mean(1)
        return feats, scores

    def _loss(self, normal: Tensor, abnormal: Tensor) -> dict[str, Tensor]:
        hp = self.hparams
        B, S = normal.shape[0], normal.shape[2]
        feats, scores = self.forward(torch.cat([normal, abnormal], 0))
        k = max(1, min(hp.topk, S))  # model forward: a fixed k (no n_segments // 10 rule)
        bce, sel_nor, sel_abn = topk_magnitude_bce(feats, scores, k, hp.dropout, self.training)
        l1_abn = sel_abn.norm(p=1, dim=2)  # (C*B, k) crop-major
        l1_nor = sel_nor.norm(p=1, dim=2)
        n = l1_abn.shape[0]
        half = n // 2  # official int(len / 2); with an odd count the middle row sits out
        separate = contrastive(l1_abn, l1_nor, together=False, margin=hp.margin)
        if half > 0:
            nor_together = contrastive(l1_nor[n - half:], l1_nor[:half], True, hp.margin)
            abn_together = contrastive(l1_abn[n - half:], l1_abn[:half], True, hp.margin)
        else:  # one video of one crop: nothing to pull together
            nor_together = abn_together = scores.new_zeros(())
        contrast = hp.lambda_contrast * (hp.lambda_separate * separate + abn_together
                                         + nor_together)
        smooth = hp.lambda_smooth * temporal_smoothness(scores, flatten=False)
        sparse = hp.lambda_sparse * score_sparsity(scores[:B], "l2")
        total = bce + contrast + smooth + sparse
        return {"loss": total, "bce": bce, "contrastive": contrast, "smoothness": smooth,
                "sparsity": sparse}

    def _score_video(self, x: Tensor) -> Tensor:
        return score_crops(x, lambda v: self.forward(v[None, None])[1][0])


def _map_name(k: str) -> str:
    parts = k.split(".")
    if parts[0] == "stages":
        if parts[2] == "0" and parts[3] == "layers":  # stages.i.0.layers.j.{0,1,2}.*
            sub = {"0": "scc", "1": "attn", "2": "ff"}[parts[5]]
            return ".".join(["stages", parts[1], "blocks", parts[4], sub] + parts[6:])
        if parts[2] == "1":  # stages.i.1.{0,1}.*: LayerNorm + conv between stages
            return ".".join(["stages", parts[1], "transition"] + parts[3:])
    if parts[0] == "to_logits":  # to_logits.0 = nn.LayerNorm
        return ".".join(["norm_out"] + parts[2:])
    return k


def load_official_state_dict(state: Mapping[str, Any]) -> dict[str, Tensor]:
    """MGFN checkpoint (``mgfn.state_dict()``, e.g. mgfn_ucf.pkl) to ours:
    ``stages.i.0.layers.j.{0,1,2}`` -> ``stages.i.blocks.j.{scc,attn,ff}``,
    ``stages.i.1`` -> ``stages.i.transition``, ``to_logits.0`` -> ``norm_out``."""
    return {_map_name(k): v for k, v in rename_official(state).items()}


SPEC = register(MethodSpec(
    name="mgfn",
    paper="Chen, Liu, Zhang, Fok, Qi, Wu. MGFN: Magnitude-Contrastive Glance-and-Focus Network "
          "for Weakly-Supervised Video Anomaly Detection. AAAI 2023",
    official_code="https://github.com/carolchenyx/MGFN",
    hparams=MGFNHParams,
    build=MGFNModel,
    load_official_state_dict=load_official_state_dict,
    # 2 (issue 13): the top-k selection dropout masks drawn abnormal-first, as the official code;
    # the official in-order pairing and a test after every epoch
    version="2",
))
