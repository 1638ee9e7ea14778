"""Yin, Zhang, Wang, Lu, Zhang, Gong, Zuo, Yu, Gao, Sang, "Learning to Tell Apart: Weakly
Supervised Video Anomaly Detection via Disentangled Semantic Alignment", AAAI 2026 (DSANet).

Official code: lessiYin/DSANet (commit 1417406), files cited as ``model`` = src/model.py,
``dnp`` = src/utils/dnp_vision_transformer.py, ``adapter`` = src/utils/adapter_modules.py,
``descr`` = src/utils/descriptions.py, ``train`` = src/ucf_train.py, ``test`` =
src/ucf_test.py, ``opt`` = src/ucf_option.py, ``stable`` = src/utils/StableAdamW.py
(UCF-Crime; XD-Violence = src/xd_*.py, in brackets). Built on VadCLIP (CLIP ViT-B/16 features,
VadCLIP's lists).

* Visual branch (``model`` encode_video, 335-357): VadCLIP's, unchanged (frame position
  embedding, 2 [1] local-window transformer blocks, window 8 [64], the two 2-layer GCN branches
  on the thresholded-similarity and distance graphs, Linear D -> D); it is computed here by
  VadCLIP's own code (``vadclip.VadCLIPModel.encode_video``). Coarse logits: classifier(x +
  MLP(x)) (384); fine logits (logits2) as VadCLIP's: cosine(snippet, class text + the
  logit-weighted normalised video feature, + MLP) / 0.07 (386-401).
* Text side (``model`` CLIP_Adapter, 98-145; get_text_features 359-380): no learnable prompt;
  each class's descriptions (``descr``: one word per class, the lower-cased UCF-Crime class name;
  XD: normal, fighting, shooting, riot, abuse, car accident, explosion) go through the frozen
  CLIP text tower with a trainable adapter after each of the first 3 [1] blocks
  (LeakyReLU(Linear(x, no bias)), rescaled to the token's norm, mixed 0.1 [0.6] adapter +
  0.9 [0.4] token) and, after ln_final, a trainable LeakyReLU(Linear) projection of the EOT token
  in place of CLIP's text_projection; per class the mean over descriptions, L2-normalised.
  The tower comes from the local CLIP weights file of the feature set (``text_weights``), else
  a seeded random init logged as ``RANDOM-INIT`` (``text.ClipTextEncoder``).
* Decoupled alignment (``model`` 403-422): sigmoid coarse scores s weight the snippets by
  exp(10 s) - 1 (event) and exp(10 (1 - s)) - 1 (background), L1-normalised over the padded
  length; the two pooled features' cosines with the class texts / 0.07 are logits3 / logits4.
* Normality branch (``model`` SGNM 147-211, ``dnp``): the int(0.8 N) lowest-scoring snippets
  of the N = 256 padded ones (no gradient) update 16 learnable prototypes through a
  cross-attention block (8 heads, LayerNorm eps 1e-8); gather loss = mean over those snippets
  of min over prototypes of 1 - cos; the video features go through a QuickGELU bottleneck MLP
  and 8 prototype blocks (cosine attention with a learnable per-head scale, ReLU, no softmax;
  the attention output replaces x, then a residual MLP) into a reconstruction.
* Loss (``train`` 205-234): CLAS2 (VadCLIP's) + 1.1 [5.0] x CLASM (VadCLIP's MIL-align on
  logits2) + sum_j |cos(t_Normal, t_j)| / (K - 1) (the constants 13 [6]) + CLASM_EVENT (logits3,
  labels smoothed with eps 0.1) + CLASM_BKG (logits4 against Normal 1, others 0.01, smoothed)
  + consistency (MSE between s and (1 - cos(features, reconstruction)) / 2 on the real
  snippets) + the gather loss.
* Test (``test``): VadCLIP's: windows of 256, the whole video, sigmoid of the coarse logits
  (AUC1 / AP1, what ``test`` returns and ``train`` selects on; its ``refine_scores_hierarchical``
  score is sigmoid(logits1 / temp), the same ranking, so ``opt --temp`` changes no AUC or AP).
  UCF-Crime's test list holds crop 5 only (``test_crop``).
* Optimisation (``opt``, ``train`` 132-166): batch 64 normal + 64 abnormal rows [96 rows of
  one mixed loader], AdamW lr 7e-5 [1e-5] (torch's weight decay 0.01) for everything but the
  normality branch, 10 epochs; the normality branch has its own StableAdamW (AdamW with AMSGrad,
  eps 1e-10, weight decay 1e-4 and the update-RMS clipping of ``stable``) whose lr warms up
  linearly from 0 over 100 iterations then follows a cosine down to 0.1 lr over
  10 x (len(normal loader) + len(anomaly loader)) = 2510 [4120] iterations, stepped every
  iteration. That optimizer is this model's own: :meth:`before_step` takes the branch's
  gradients away from the shared optimizer and :meth:`after_step` applies them (the shared
  loop has one optimizer). Test every 10 in-epoch iterations [every epoch], best-on-test kept
  and reloaded after every epoch.

Where the shared loop differs (issue 17 report): ``train`` 163-166 anneals the main lr with
CosineAnnealingLR(T_max=10) per epoch; the loop has no cosine schedule, so it stays at lr. On a
resume from ``resume.pt`` the normality branch's StableAdamW moments restart (its step counter,
and so its lr schedule, is kept in the state dict).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from wsvad_core.cards import hp

from .base import MethodSpec, TrainHParams, WSVADModel
from .blocks import crop_samples, lengths_from_padding, recomputed, score_crops, topk_mean, window_scores
from .registry import register
from .text import TEXT_PROMPT_SPEC, UCF_CRIME_CLASSES, ClipTextEncoder, check_class_names, tokenize
from .vadclip import GraphConvolution, ResidualBlock, VadCLIPModel, _mlp, window_mask

__all__ = ["DSANetHParams", "DSANetModel", "StableAdamW", "warm_cosine_lr", "load_official_state_dict"]


@dataclass
class DSANetHParams(TrainHParams):
    batch_size: int = 64  # opt:20 --batch-size 64 per class (two loaders) [xd_option: 96 mixed rows]
    lr: float = 7e-5  # opt:27 [xd_option: 1e-5]
    weight_decay: float = 1e-2  # train:159-162 AdamW(params, lr) -> torch's default 0.01
    optimizer: str = "adamw"  # train:159
    max_steps: int = 1250  # opt:16 --max-epoch 10 x 125 iterations (8000 normal rows // 64)
    n_segments: int = 256  # opt:7 --visual-length 256
    seed: int = 234  # opt:4
    pairing: str = "zipped"  # train:188-190 zip of two shuffled drop-last loaders, every epoch
    sample_unit: str = "crop"  # list/ucf_CLIP_rgb.csv: one row per crop
    eval_schedule: str = "in_epoch"  # train:244-245 step = i * 128, test if step % 1280 == 0, != 0
    eval_every: int = 10  # [XD: once per epoch, epoch_end 1]
    reload_best_each_epoch: bool = True  # train:277-279 (XD xd_train: the same)
    # not official (no effect on results): recompute the temporal transformer blocks and the
    # normality branch's blocks in the backward instead of keeping their activations
    # (blocks.recomputed). On: the official batch fits a 6 GB card (off: ~15 GB; see
    # benchmarks/README.md, full_size.py), at about one more forward of those blocks per step
    activation_checkpointing: bool = hp(True)
    visual_heads: int = hp(1, ge=1)  # opt:9
    visual_layers: int = hp(2, ge=1)  # opt:10 [xd_option: 1]
    attn_window: int = hp(8, ge=1)  # opt:11 [xd_option: 64]
    adj_threshold: float = hp(0.7, ge=0, le=1)  # model adj4: F.threshold(x, 0.7, 0)
    logit_temperature: float = hp(0.07, gt=0)  # model:401, 421-422 "/ 0.07"
    cas_scale: float = hp(10.0, gt=0)  # model:382 forward(..., scale=10)
    num_prototypes: int = hp(16, ge=1)  # opt:32
    decoder_depth: int = hp(8, ge=1)  # opt:30
    normal_selection_ratio: float = hp(0.8, gt=0, le=1)  # opt:31
    sgnm_heads: int = hp(8, ge=1)  # model:277 num_heads=8
    use_normality: bool = hp(True)  # opt:33 --DNP_use True
    text_adapt_until: int = hp(3, ge=0)  # opt:36 [xd_option: 1]
    t_w: float = hp(0.1, ge=0, le=1)  # opt:37 [xd_option: 0.6]
    loss2_weight: float = hp(1.1, ge=0)  # opt:41 [xd_option: 5.0]
    label_smoothing: float = hp(0.1, ge=0, lt=1)  # train:29, 45 epsilon=0.1
    background_other: float = hp(0.01, ge=0)  # train:52 labels2 = 0.01 (Normal: 1)
    # the normality branch's own optimizer (train:141-157, stable)
    refiner_lr: float | None = hp(None, gt=0)  # None: lr (train:143 lr=args.lr)
    refiner_weight_decay: float = hp(1e-4, ge=0)  # train:145
    refiner_eps: float = hp(1e-10, gt=0)  # train:147
    refiner_amsgrad: bool = hp(True)  # train:146
    refiner_clip: float = hp(1.0, gt=0)  # stable: clip_threshold default 1.0
    refiner_warmup: int = hp(100, ge=0)  # train:157 warmup_iters=100 (from 0)
    refiner_final_ratio: float = hp(0.1, ge=0)  # train:155 final_value = lr * 0.1
    refiner_total_iters: int = hp(2510, ge=1)  # train:150-151 10 x (125 + 126) [XD: 10 x 412]
    class_names: tuple[str, ...] = UCF_CRIME_CLASSES  # train label_map order; run.py fills the dataset's
    # one text per class, class_names order; None: the lower-cased class names (descr
    # DESCRIPTIONS_ORI: "normal", "abuse", ..., "roadaccidents")
    descriptions: tuple[str, ...] | None = None
    descriptions_file: str | None = None  # JSON {class name: [texts]} (several texts are averaged)
    text_model: str = "ViT-B-16"  # model:265 clip.load("ViT-B/16")
    text_weights: str | None = None  # CLIP weights file (run.py: the CLIP feature set's); None = random init
    text_width: int | None = hp(None, ge=1)  # None = the text_model's (tests use small towers)
    text_heads: int | None = hp(None, ge=1)
    text_layers: int | None = hp(None, ge=1)
    train_crops: str = hp("random", choices=("random", "all"))  # sample_unit "video" only
    test_crop: int | None = hp(None, ge=0)  # None: average the crops' scores (official UCF list: crop 5)


# -- the normality branch's optimizer ----------------------------------------------------------

class StableAdamW(torch.optim.Optimizer):
    """``stable`` StableAdamW: decoupled weight decay (p *= 1 - lr wd), Adam moments (AMSGrad
    optional), and the step divided by max(1, RMS(g / denom) / clip_threshold)."""

    def __init__(self, params, lr: float, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2, amsgrad: bool = False, clip_threshold: float = 1.0):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                                      amsgrad=amsgrad, clip_threshold=clip_threshold))

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            b1, b2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad
                p.mul_(1 - group["lr"] * group["weight_decay"])
                st = self.state[p]
                if not st:
                    st["step"] = 0
                    st["exp_avg"] = torch.zeros_like(p)
                    st["exp_avg_sq"] = torch.zeros_like(p)
                    if group["amsgrad"]:
                        st["max_exp_avg_sq"] = torch.zeros_like(p)
                st["step"] += 1
                c1 = 1 - b1 ** st["step"]
                c2 = 1 - b2 ** st["step"]
                st["exp_avg"].mul_(b1).add_(g, alpha=1 - b1)
                st["exp_avg_sq"].mul_(b2).addcmul_(g, g, value=1 - b2)
                sq = st["exp_avg_sq"]
                if group["amsgrad"]:
                    torch.max(st["max_exp_avg_sq"], sq, out=st["max_exp_avg_sq"])
                    sq = st["max_exp_avg_sq"]
                denom = (sq.sqrt() / math.sqrt(c2)).add_(group["eps"])
                ratio = g / denom
                rms = ratio.norm(2) / (ratio.numel() ** 0.5)
                scale = max(1.0, float(rms) / group["clip_threshold"])
                p.addcdiv_(st["exp_avg"], denom, value=-group["lr"] / c1 / scale)


def warm_cosine_lr(it: int, base: float, final: float, total: int, warmup: int) -> float:
    """``train`` WarmCosineScheduler (83-98) at iteration ``it`` (0-based: the lr of the it-th
    step; the scheduler's constructor already applies iteration 0): linspace(0, base, warmup),
    then final + (base - final) (1 + cos(pi i / (total - warmup))) / 2; final from ``total`` on."""
    if it >= total:
        return final
    if it < warmup:
        return base * it / (warmup - 1) if warmup > 1 else 0.0
    n = total - warmup
    return final + 0.5 * (base - final) * (1 + math.cos(math.pi * (it - warmup) / n))


# -- the normality branch (SGNM) -------------------------------------------------------------

def _norm(dim: int) -> nn.LayerNorm:
    return nn.LayerNorm(dim, eps=1e-8)  # model:157, 170 partial(nn.LayerNorm, eps=1e-8)


class _Mlp(nn.Module):
    """``dnp`` Mlp: fc1, GELU, fc2 (dropout 0)."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


def _split_heads(x: Tensor, heads: int) -> Tensor:  # (B, N, C) -> (B, h, N, C/h)
    B, N, C = x.shape
    return x.view(B, N, heads, C // heads).transpose(1, 2)


class _CrossAttention(nn.Module):
    """``dnp`` Aggregation_Attention (softmax) or Prototype_Attention (cosine, learnable scale,
    ReLU) from x to y."""

    def __init__(self, dim: int, heads: int, prototype: bool):
        super().__init__()
        if dim % heads:
            raise ValueError(f"DSANet: width {dim} is not divisible by {heads} heads")
        self.heads, self.prototype = heads, prototype
        if prototype:
            self.learn_scale = nn.Parameter(torch.ones(heads, 1, 1))
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        B, T, C = x.shape
        q = _split_heads(self.q(x), self.heads)
        k, v = (_split_heads(t, self.heads) for t in self.kv(y).chunk(2, dim=-1))
        if self.prototype:
            attn = F.relu(F.normalize(q, dim=-1) @ F.normalize(k, dim=-1).transpose(-2, -1)
                          * self.learn_scale)
            out = attn @ v
        else:
            out = F.scaled_dot_product_attention(q, k, v)  # scale (C/h)^-0.5 as dnp
        return self.proj(out.transpose(1, 2).reshape(B, T, C))


class _AggregationBlock(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.norm1 = _norm(dim)
        self.attn = _CrossAttention(dim, heads, prototype=False)
        self.norm2 = _norm(dim)
        self.mlp = _Mlp(dim, 4 * dim)

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        x = x + self.attn(self.norm1(x), self.norm1(y))
        return x + self.mlp(self.norm2(x))


class _PrototypeBlock(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.norm1 = _norm(dim)
        self.attn = _CrossAttention(dim, heads, prototype=True)
        self.norm2 = _norm(dim)
        self.mlp = _Mlp(dim, 4 * dim)

    def forward(self, x: Tensor, prototype: Tensor) -> Tensor:
        x = self.attn(self.norm1(x), self.norm1(prototype))  # no residual (dnp Prototype_Block)
        return x + self.mlp(self.norm2(x))


class SGNM(nn.Module):
    """``model`` SGNM: prototypes from the most normal snippets, reconstruction through them."""

    def __init__(self, dim: int, prototypes: int, heads: int, decoder_depth: int, ratio: float):
        super().__init__()
        self.ratio = ratio
        self.recompute = False  # DSANetModel sets it from activation_checkpointing
        self.video_prototypes = nn.Parameter(torch.randn(prototypes, dim))
        self.dnp_extractor = nn.ModuleList([_AggregationBlock(dim, heads)])
        self.bottleneck = _mlp(dim)
        self.decoder = nn.ModuleList(_PrototypeBlock(dim, heads) for _ in range(decoder_depth))

    def forward(self, feats: Tensor, logits1: Tensor) -> tuple[Tensor, Tensor]:
        B, N, D = feats.shape
        # model:184-193: the selection and the gathered snippets are taken under no_grad, so the
        # gather loss and the prototypes reach the visual branch through no path
        with torch.no_grad():
            scores = torch.sigmoid(logits1[..., 0])
            idx = torch.topk(scores, k=N, largest=False, dim=1).indices[:, :int(N * self.ratio)]
            normal = torch.gather(feats, 1, idx[..., None].expand(-1, -1, D))
        protos = self.video_prototypes[None].expand(B, -1, -1)
        recompute = self.training and self.recompute
        for blk in self.dnp_extractor:
            protos = recomputed(recompute, blk, protos, normal)
        # the (B, n, P) cosines as one matmul of unit vectors: F.cosine_similarity on the broadcast
        # (B, n, 1, D) x (B, 1, P, D), as ``model`` writes it, would keep a B n P D product for the
        # backward (0.9 GB at the official batch)
        dist = 1.0 - F.normalize(normal, dim=-1, eps=1e-8) @ F.normalize(protos, dim=-1, eps=1e-8).transpose(1, 2)
        gather = dist.min(2).values.mean()
        rec = self.bottleneck(feats)
        for blk in self.decoder:
            rec = recomputed(recompute, blk, rec, protos)
        return rec, gather


class _Adapter(nn.Module):
    """``adapter`` SimpleAdapter / SimpleProj(relu=True): LeakyReLU(Linear(no bias))."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.fc = nn.Sequential(nn.Linear(c_in, c_out, bias=False), nn.LeakyReLU())

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(x)


# -- the model ----------------------------------------------------------------------------------

class DSANetModel(WSVADModel):
    def __init__(self, hparams: DSANetHParams, feat_dim: int):
        super().__init__(hparams, feat_dim)
        hp = hparams
        D, L = feat_dim, hp.n_segments
        check_class_names("DSANet", hp.class_names)
        # VadCLIP's visual branch, under the same names (model:237-263)
        self.temporal = nn.Module()
        self.temporal.resblocks = nn.ModuleList(ResidualBlock(D, hp.visual_heads)
                                                for _ in range(hp.visual_layers))
        self.register_buffer("attn_mask", window_mask(L, hp.attn_window), persistent=False)
        self.gc1 = GraphConvolution(D, D // 2)
        self.gc2 = GraphConvolution(D // 2, D // 2)
        self.gc3 = GraphConvolution(D, D // 2)
        self.gc4 = GraphConvolution(D // 2, D // 2)
        dist = (torch.arange(L)[:, None] - torch.arange(L)[None, :]).abs().float()
        self.register_buffer("dis_adj", torch.exp(-dist / torch.exp(torch.tensor(1.0))),
                             persistent=False)
        self.linear = nn.Linear(D, D)
        self.mlp1 = _mlp(D)
        self.mlp2 = _mlp(D)
        self.classifier = nn.Linear(D, 1)
        # CLIP's own text tower (its text_projection is loaded but unused: the adapter's last
        # layer projects the EOT token instead, model:141-143)
        self.text = ClipTextEncoder(hp.text_model, hp.text_weights, width=hp.text_width,
                                    heads=hp.text_heads, layers=hp.text_layers)
        width = self.text.token_embedding.weight.shape[1]
        if hp.text_adapt_until > len(self.text.transformer.resblocks):
            raise ValueError(f"DSANet: text_adapt_until {hp.text_adapt_until} > the text tower's "
                             f"{len(self.text.transformer.resblocks)} blocks")
        self.frame_position_embeddings = nn.Embedding(L, D)
        self.clip_adapter = nn.Module()
        self.clip_adapter.text_adapter = nn.ModuleList(
            [_Adapter(width, width) for _ in range(hp.text_adapt_until)] + [_Adapter(width, D)])
        for p in self.clip_adapter.text_adapter.parameters():  # model:113-116
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)
        self.video_anomaly_refiner = SGNM(D, hp.num_prototypes, hp.sgnm_heads, hp.decoder_depth,
                                          hp.normal_selection_ratio)
        self.video_anomaly_refiner.recompute = hp.activation_checkpointing
        # model initialize_parameters (287-298)
        nn.init.normal_(self.frame_position_embeddings.weight, std=0.01)
        for m in self.video_anomaly_refiner.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.01, a=-0.03, b=0.03)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        texts = self._descriptions()
        tokens = tokenize([t for ts in texts for t in ts], context_length=self.text.context_length)
        self.register_buffer("tokens", tokens, persistent=False)
        self.register_buffer("token_class", torch.tensor(
            [i for i, ts in enumerate(texts) for _ in ts]), persistent=False)
        # the normality branch's optimizer step count (its lr schedule), kept across a resume
        self.register_buffer("refiner_step", torch.zeros((), dtype=torch.long))
        self._refiner_opt: StableAdamW | None = None
        self._refiner_grads: list | None = None

    def _descriptions(self) -> list[list[str]]:
        hp = self.hparams
        if hp.descriptions_file:
            with open(hp.descriptions_file, encoding="utf-8") as fh:
                table = json.load(fh)
            missing = [n for n in hp.class_names if n not in table]
            if missing:
                raise ValueError(f"descriptions_file {hp.descriptions_file} lacks classes {missing}")
            return [[str(t) for t in table[n]] for n in hp.class_names]
        if hp.descriptions is not None:
            if len(hp.descriptions) != len(hp.class_names):
                raise ValueError(f"DSANet: {len(hp.descriptions)} descriptions for "
                                 f"{len(hp.class_names)} class_names")
            return [[d] for d in hp.descriptions]
        return [[n.lower()] for n in hp.class_names]

    def official_missing_ok(self, mapped: Mapping[str, Tensor]) -> set[str]:
        return {"refiner_step"}

    # -- text side -----------------------------------------------------------------------------
    def text_features(self) -> Tensor:
        """(K, D) class features (model get_text_features + CLIP_Adapter.encode_text)."""
        hp, enc = self.hparams, self.text
        tok = self.tokens
        eot = tok.argmax(-1)
        n = int(eot.max()) + 1  # causal attention: slots after the last EOT reach no EOT
        x = enc.embed_tokens(tok)[:, :n] + enc.positional_embedding[:n]
        tr = enc.transformer
        if not getattr(tr, "batch_first", True):
            x = x.transpose(0, 1)
        mask = enc.attn_mask[:n, :n]
        adapters = self.clip_adapter.text_adapter
        for i, blk in enumerate(tr.resblocks):
            x = blk(x, attn_mask=mask)
            if i < hp.text_adapt_until:
                a = adapters[i](x)
                a = a * x.norm(dim=-1, keepdim=True) / (a.norm(dim=-1, keepdim=True) + 1e-6)
                x = hp.t_w * a + (1 - hp.t_w) * x
        if not getattr(tr, "batch_first", True):
            x = x.transpose(0, 1)
        x = enc.ln_final(x)
        x = adapters[-1](x[torch.arange(x.shape[0], device=x.device), eot])
        K = len(hp.class_names)
        sums = x.new_zeros(K, x.shape[1]).index_add_(0, self.token_class, x)
        mean = sums / torch.bincount(self.token_class, minlength=K)[:, None].to(x.dtype)
        return mean / mean.norm(dim=-1, keepdim=True)

    # -- forward -------------------------------------------------------------------------------
    def encode_video(self, x: Tensor, lengths: Tensor) -> Tensor:
        return VadCLIPModel.encode_video(self, x, lengths)  # model:335-357 = VadCLIP's

    def _similarity_adj(self, x: Tensor, lengths: Tensor) -> Tensor:
        return VadCLIPModel._similarity_adj(self, x, lengths)

    def coarse_logits(self, visual: Tensor) -> Tensor:
        return self.classifier(visual + self.mlp2(visual))

    def forward(self, x: Tensor, lengths: Tensor) -> dict[str, Tensor]:
        """``model`` DSANet.forward on (N, L, D) padded rows with their lengths."""
        hp = self.hparams
        visual = self.encode_video(x, lengths)
        logits1 = self.coarse_logits(visual)
        text = self.text_features()
        attn = logits1.transpose(1, 2) @ visual
        attn = attn / attn.norm(dim=-1, keepdim=True)
        tf = text[None] + attn
        tf = tf + self.mlp1(tf)
        v = visual / visual.norm(dim=-1, keepdim=True)
        logits2 = v @ (tf / tf.norm(dim=-1, keepdim=True)).transpose(1, 2) / hp.logit_temperature
        s = torch.sigmoid(logits1)
        abn = F.normalize((hp.cas_scale * s).exp() - 1, p=1, dim=1)
        nor = F.normalize((hp.cas_scale * (1.0 - s)).exp() - 1, p=1, dim=1)
        abn_feat = abn.transpose(1, 2) @ visual
        nor_feat = nor.transpose(1, 2) @ visual
        tn = (text / text.norm(dim=-1, keepdim=True)).T
        logits3 = abn_feat / abn_feat.norm(dim=-1, keepdim=True) @ tn / hp.logit_temperature
        logits4 = nor_feat / nor_feat.norm(dim=-1, keepdim=True) @ tn / hp.logit_temperature
        out = {"text": text, "logits1": logits1, "logits2": logits2, "logits3": logits3,
               "logits4": logits4, "visual": visual}
        if hp.use_normality:
            out["reconstructed"], out["gather"] = self.video_anomaly_refiner(visual, logits1)
        return out

    # -- loss ----------------------------------------------------------------------------------
    def loss_from_outputs(self, out: dict[str, Tensor], labels: Tensor, lengths: Tensor
                          ) -> dict[str, Tensor]:
        """``train`` 205-234 on :meth:`forward`'s outputs, (N, K) multi-hot labels."""
        hp = self.hparams
        K = labels.shape[1]
        eps = hp.label_smoothing
        logits1 = out["logits1"]
        clas2 = F.binary_cross_entropy(topk_mean(torch.sigmoid(logits1[..., 0]), lengths),
                                       1.0 - labels[:, 0])
        soft = labels / labels.sum(1, keepdim=True)
        clasm = -(soft * F.log_softmax(topk_mean(out["logits2"], lengths), 1)).sum(1).mean()
        event_t = (1 - eps) * labels / labels.sum(1, keepdim=True).clamp(min=1e-6) + eps / K
        event = -(event_t * F.log_softmax(out["logits3"][:, 0], 1)).sum(1).mean()
        bkg = torch.full_like(labels, hp.background_other)
        bkg[:, 0] = 1.0
        bkg = (1 - eps) * bkg / bkg.sum(1, keepdim=True).clamp(min=1e-6) + eps / K
        background = -(bkg * F.log_softmax(out["logits4"][:, 0], 1)).sum(1).mean()
        text = out["text"]
        tn = text / text.norm(dim=-1, keepdim=True)
        sep = (tn[1:] @ tn[0]).abs().sum() / (K - 1)
        terms = {"clas2": clas2, "clasm": hp.loss2_weight * clasm, "text_sep": sep,
                 "event": event, "background": background}
        if hp.use_normality:
            rec = (1.0 - F.cosine_similarity(out["visual"], out["reconstructed"], dim=-1)) / 2.0
            valid = torch.arange(logits1.shape[1], device=logits1.device)[None] < lengths[:, None]
            terms["consistency"] = F.mse_loss(torch.sigmoid(logits1[..., 0])[valid], rec[valid])
            terms["gather"] = out["gather"]
        return {"loss": sum(terms.values()), **terms}

    def _loss(self, normal: Tensor, abnormal: Tensor, abnormal_classes: Tensor | None = None
              ) -> dict[str, Tensor]:
        hp = self.hparams
        n_rows = crop_samples(normal, hp.train_crops)
        a_rows = crop_samples(abnormal, hp.train_crops)
        K = len(hp.class_names)
        labels = torch.zeros(n_rows.shape[0] + a_rows.shape[0], K, device=normal.device)
        labels[:n_rows.shape[0], 0] = 1.0
        if abnormal_classes is None:  # class unknown: every anomaly class (as VadCLIP here)
            labels[n_rows.shape[0]:, 1:] = 1.0
        else:
            cls = torch.as_tensor(abnormal_classes, device=normal.device).long()
            if cls.min() < 1 or cls.max() >= K:
                raise ValueError(f"abnormal_classes must index class_names[1:{K}], got {cls.tolist()}")
            cls = cls.repeat_interleave(a_rows.shape[0] // abnormal.shape[0])
            labels[torch.arange(n_rows.shape[0], labels.shape[0], device=normal.device), cls] = 1.0
        x = torch.cat([n_rows, a_rows], 0)
        lengths = lengths_from_padding(x)
        return self.loss_from_outputs(self.forward(x, lengths), labels, lengths)

    # -- the normality branch's optimizer (train:141-157, 243) -----------------------------------
    def _refiner_params(self) -> list[nn.Parameter]:
        return [p for p in self.video_anomaly_refiner.parameters() if p.requires_grad]

    def refiner_optimizer(self) -> StableAdamW:
        hp = self.hparams
        if self._refiner_opt is None:
            self._refiner_opt = StableAdamW(
                self._refiner_params(), lr=0.0, betas=(0.9, 0.999), eps=hp.refiner_eps,
                weight_decay=hp.refiner_weight_decay, amsgrad=hp.refiner_amsgrad,
                clip_threshold=hp.refiner_clip)
        return self._refiner_opt

    def refiner_lr(self, it: int) -> float:
        hp = self.hparams
        base = hp.lr if hp.refiner_lr is None else hp.refiner_lr
        return warm_cosine_lr(it, base, base * hp.refiner_final_ratio, hp.refiner_total_iters,
                              hp.refiner_warmup)

    def before_step(self) -> None:
        """Between backward() and the shared optimizer's step: the normality branch's gradients
        are held back (the shared AdamW skips parameters without a gradient)."""
        params = self._refiner_params()
        self._refiner_grads = [p.grad for p in params]
        for p in params:
            p.grad = None

    def after_step(self) -> None:
        """After the shared step: the branch's StableAdamW step at the warm-cosine lr."""
        if self._refiner_grads is None:
            return
        params = self._refiner_params()
        for p, g in zip(params, self._refiner_grads):
            p.grad = g
        self._refiner_grads = None
        opt = self.refiner_optimizer()
        for group in opt.param_groups:
            group["lr"] = self.refiner_lr(int(self.refiner_step))
        opt.step()
        self.refiner_step += 1
        for p in params:
            p.grad = None

    # -- test ----------------------------------------------------------------------------------
    def _score_windows(self, seq: Tensor) -> Tensor:
        """(T, D) -> (T,) sigmoid coarse scores over windows of n_segments (test:39-72)."""
        return window_scores(seq, self.hparams.n_segments,
                             lambda w, n: self.coarse_logits(self.encode_video(w, n)))

    def _score_video(self, x: Tensor) -> Tensor:
        return score_crops(x, self._score_windows, self.hparams.test_crop)


_TEXT_KEYS = ("token_embedding.", "positional_embedding", "transformer.", "ln_final.",
              "text_projection")


def load_official_state_dict(state: Mapping[str, Any]) -> dict[str, Tensor]:
    """DSANet ``state_dict()`` (model/model_ucf.pth, or a checkpoint's ``model_state_dict``) to
    ours: ``clipmodel.`` text-tower keys -> ``text.``; the CLIP image tower, ``logit_scale``, the
    second copy of the tower under ``clip_adapter.clipmodel.`` and the unused ``disAdj.sigma``
    are dropped; every other key keeps its official name."""
    if "model_state_dict" in state and isinstance(state["model_state_dict"], Mapping):
        state = state["model_state_dict"]
    out = {}
    for k, v in state.items():
        k = k.removeprefix("module.")
        if k == "disAdj.sigma" or k.startswith("clip_adapter.clipmodel."):
            continue
        if k.startswith("clipmodel."):
            rest = k[len("clipmodel."):]
            if not rest.startswith(_TEXT_KEYS):
                continue
            k = "text." + rest
        out[k] = torch.as_tensor(v).float()
    return out


SPEC = register(MethodSpec(
    name="dsanet",
    paper="Yin, Zhang, Wang, Lu, Zhang, Gong, Zuo, Yu, Gao, Sang. Learning to Tell Apart: Weakly "
          "Supervised Video Anomaly Detection via Disentangled Semantic Alignment. AAAI 2026",
    official_code="https://github.com/lessiYin/DSANet",
    hparams=DSANetHParams,
    build=DSANetModel,
    load_official_state_dict=load_official_state_dict,
    **TEXT_PROMPT_SPEC,
))
