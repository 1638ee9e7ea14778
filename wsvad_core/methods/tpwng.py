"""Yang, Liu, Wu, "Text Prompt with Normality Guidance for Weakly Supervised Video Anomaly
Detection", CVPR 2024 (TPWNG). No official code: implemented from the paper (arXiv 2404.08531,
Sec. 3-4). The paper's equations were not legible in the text available here; where the prose
leaves a choice, the reading taken is marked *(reading)* below and in the code.

* Text (Sec. 3.2, 4.2): CLIP ViT-B/16 text encoder, frozen except its final projection;
  CoOp-style prompt: l = 8 learnable vectors before each class name ("X X X X X X X X name."
  with the X embeddings replaced), shared by all classes.
* Normality visual prompt (NVP, Sec. 3.2): the softmax over a normal video's frames of their
  similarity to the Normal text weights its frame features into Q_i; the enhanced normal text is
  FFN([Q_i; T_n]) + T_n (FFN: Linear 2D -> 4D, GELU, Linear -> D *(reading: "a standard
  Transformer FFN")*). The i-th normal video's prompt serves the i-th abnormal video of the
  batch *(reading: the paper indexes both by i)*.
* Similarities are cosine similarities of CLIP frame features and class text features
  *(reading: the paper writes X T^T; CLIP matches normalised embeddings)*.
* Losses (Sec. 3.5): L_rank^n = [m - max_j S^nn + max_j,g S^na_g]_+ (normal videos: Normal text
  above every anomaly text); L_rank^a = [m - max S^an + max S^aa_other]_+ + [m - max S^aa_true +
  max S^aa_other]_+; L_dil = cos(S^aa_true, S^an) over the frames; on the min-max normalised
  S~aa: lambda1 * sum_j (S~_j - S~_j+1)^2 ("L_sp") + lambda2 * sum_j S~_j ("L_sm"), lambda1 0.1,
  lambda2 0.01; margin m = 1 *(reading: the hinge form of [26], which the paper follows for the
  two regularisers)*.
* Pseudo-labels (PLG, Sec. 3.3): psi = (1 - alpha) S~aa + alpha (1 - S~an), alpha = 0.2, min-max
  normalised again, frame label = psi~ > theta (0.55 UCF-Crime, 0.35 XD-Violence) *(reading:
  "the normal-text similarity incorporated with weight alpha as a guide")*; normal videos: all 0.
* TCSAL (Sec. 3.4): a Transformer encoder whose heads attend to past frames (distance
  h = t - r >= 0) through the adaptive-span soft mask chi_z(h) = clamp((R + z - h) / R, 0, 1),
  R = 256, with a per-frame, per-head span z = T * sigmoid(C x_t + b) (Sukhbaatar et al.'s dynamic
  span, T = window length), via scaled_dot_product_attention with log(chi) added to the logits;
  then a classifier; L_cl = BCE(scores, pseudo-labels). Depth, heads and classifier size are in
  the supplementary material, not available here: 2 layers, 8 heads, Linear D -> D/4 -> 1.
* Total: L_cl + L_rank^n + L_rank^a + L_dil + lambda1 L_sp + lambda2 L_sm.
* Data and optimisation (supplementary, as quoted by a third-party reimplementation, not
  checked against the original): Adam lr 1e-3 (XD 1e-4), weight decay 5e-3, 32 normal + 32
  abnormal videos, 50 epochs (XD 20) = 1250 steps on UCF-Crime's 800 normal videos. Inputs as
  VadCLIP (same group): 256-snippet pad/mean-pool, one random crop per video per step; test on
  consecutive 256-snippet windows (scores from the classifier).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from wsvad_core.cards import hp

from .base import MethodSpec, TrainHParams, WSVADModel
from .blocks import crop_samples, lengths_from_padding, mlp_head, pad_windows, score_crops
from .registry import register
from .text import TEXT_PROMPT_SPEC, UCF_CRIME_CLASSES, ClipTextEncoder, check_class_names, tokenize


@dataclass
class TPWNGHParams(TrainHParams):
    batch_size: int = 32  # supp.: 32 normal + 32 abnormal
    lr: float = 1e-3  # supp.: 1e-3 (XD-Violence 1e-4)
    weight_decay: float = 5e-3  # supp.
    optimizer: str = "adam"  # supp.
    max_steps: int = 1250  # supp.: 50 epochs x 25 steps (800 normal videos / 32)
    n_segments: int = 256  # VadCLIP's 256-snippet inputs
    prompt_len: int = hp(8, ge=1)  # Sec. 4.2: l = 8
    alpha: float = hp(0.2, ge=0)  # Sec. 4.2: normality guidance weight
    theta: float = hp(0.55, ge=0, le=1)  # Sec. 4.2: 0.55 UCF-Crime, 0.35 XD-Violence
    span_softness: float = hp(256.0, gt=0)  # Sec. 4.2: R = 256
    lambda1: float = hp(0.1, ge=0)  # Sec. 4.2: lambda1 (L_sp)
    lambda2: float = hp(0.01, ge=0)  # Sec. 4.2: lambda2 (L_sm)
    rank_margin: float = hp(1.0, ge=0)  # (reading) hinge margin of the ranking losses
    tcsal_layers: int = hp(2, ge=1)  # supplementary (not available): chosen
    tcsal_heads: int = hp(8, ge=1)
    tcsal_dropout: float = hp(0.1, ge=0, lt=1)
    class_names: tuple[str, ...] = UCF_CRIME_CLASSES  # Normal first; run.py fills the dataset's
    text_model: str = "ViT-B-16"  # Sec. 4.2: CLIP ViT-B/16
    text_weights: str | None = None  # CLIP weights file (run.py: the CLIP feature set's); None = random init
    text_width: int | None = hp(None, ge=1)
    text_heads: int | None = hp(None, ge=1)
    text_layers: int | None = hp(None, ge=1)
    train_crops: str = hp("random", choices=("random", "all"))
    test_crop: int | None = hp(None, ge=0)  # None: average the crops' scores


def minmax(x: Tensor, valid: Tensor) -> Tensor:
    """Min-max normalise each row of x (N, T) over its valid entries (0 outside them)."""
    lo = x.masked_fill(~valid, float("inf")).amin(1, keepdim=True)
    hi = x.masked_fill(~valid, float("-inf")).amax(1, keepdim=True)
    return ((x - lo) / (hi - lo).clamp_min(1e-8)) * valid


def masked_max(x: Tensor, valid: Tensor) -> Tensor:
    """Max over dim 1 of x (N, T, ...) restricted to valid (N, T) entries."""
    v = valid.reshape(valid.shape + (1,) * (x.ndim - 2))
    return x.masked_fill(~v, float("-inf")).amax(1)


class AdaptiveSpanAttention(nn.Module):
    """Causal self-attention whose heads weight past frames by chi_z(h) = clamp((R + z - h)/R, 0, 1)
    with a per-frame span z = T * sigmoid(C x + b)."""

    def __init__(self, dim: int, heads: int, softness: float):
        super().__init__()
        if dim % heads:
            raise ValueError(f"TPWNG: feature dim {dim} is not divisible by tcsal_heads {heads}")
        self.heads, self.softness = heads, float(softness)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.span = nn.Linear(dim, heads)  # C, b
        self.out = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:  # x (B, T, D)
        B, T, D = x.shape
        H = self.heads
        q, k, v = (t.reshape(B, T, H, D // H).transpose(1, 2) for t in self.qkv(x).chunk(3, -1))
        z = T * torch.sigmoid(self.span(x)).transpose(1, 2)  # (B, H, T): span of each query
        pos = torch.arange(T, device=x.device)
        dist = (pos[:, None] - pos[None, :]).to(x.dtype)  # h = t - r
        chi = ((self.softness + z[..., None] - dist) / self.softness).clamp(0, 1)
        chi = chi * (dist >= 0)  # past frames (and the frame itself) only
        bias = torch.where(chi > 0, torch.log(chi.clamp_min(1e-12)), float("-inf"))
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
        return self.out(y.transpose(1, 2).reshape(B, T, D))


class TCSALBlock(nn.Module):
    def __init__(self, dim: int, heads: int, softness: float, dropout: float):
        super().__init__()
        self.ln_1 = nn.LayerNorm(dim)
        self.attn = AdaptiveSpanAttention(dim, heads, softness)
        self.ln_2 = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.drop(self.attn(self.ln_1(x)))
        return x + self.drop(self.ffn(self.ln_2(x)))


class TPWNGModel(WSVADModel):
    # live: TCSAL attends to past snippets only, so a window loses no look-ahead,
    # but a snippet's score needs that past: it is scored in a window
    causal = False

    def __init__(self, hparams: TPWNGHParams, feat_dim: int):
        super().__init__(hparams, feat_dim)
        hp = hparams
        D = feat_dim
        check_class_names("TPWNG", hp.class_names)
        self.text = ClipTextEncoder(hp.text_model, hp.text_weights, embed_dim=D,
                                    width=hp.text_width, heads=hp.text_heads,
                                    layers=hp.text_layers, train_projection=True)
        width = self.text.token_embedding.weight.shape[1]
        self.prompt = nn.Parameter(torch.empty(hp.prompt_len, width))
        nn.init.normal_(self.prompt, std=0.02)  # CoOp's context init
        ctx = " ".join(["X"] * hp.prompt_len)
        tokens = tokenize([f"{ctx} {name}." for name in hp.class_names], self.text.context_length)
        self.register_buffer("tokens", tokens, persistent=False)
        self.nvp = nn.Sequential(nn.Linear(2 * D, 4 * D), nn.GELU(), nn.Linear(4 * D, D))
        self.tcsal = nn.ModuleList(TCSALBlock(D, hp.tcsal_heads, hp.span_softness,
                                              hp.tcsal_dropout) for _ in range(hp.tcsal_layers))
        self.ln = nn.LayerNorm(D)
        self.classifier = mlp_head([D, D // 4, 1], hp.tcsal_dropout, sigmoid=True)

    # -- branches ------------------------------------------------------------------------------
    def class_text(self) -> Tensor:
        """(K, D) class features: prompt vectors + class tokens through the CLIP text encoder."""
        emb = self.text.embed_tokens(self.tokens).clone()
        emb[:, 1:1 + self.hparams.prompt_len] = self.prompt[None]
        return self.text(emb, self.tokens.argmax(-1))

    def frame_scores(self, x: Tensor) -> Tensor:
        """(N, T, D) -> (N, T) anomaly scores (TCSAL + classifier)."""
        for block in self.tcsal:
            x = block(x)
        return self.classifier(self.ln(x)).squeeze(-1)

    # -- interface -----------------------------------------------------------------------------
    def _loss(self, normal: Tensor, abnormal: Tensor, abnormal_classes: Tensor | None = None
             ) -> dict[str, Tensor]:
        hp = self.hparams
        K = len(hp.class_names)
        C = normal.shape[1]
        xn = crop_samples(normal, hp.train_crops)
        xa = crop_samples(abnormal, hp.train_crops)
        N = xn.shape[0]
        S = xn.shape[1]
        ln, la = lengths_from_padding(xn), lengths_from_padding(xa)
        pos = torch.arange(S, device=xn.device)[None]
        vn, va = pos < ln[:, None], pos < la[:, None]

        text = self.class_text()  # (K, D)
        tn = F.normalize(text, dim=-1)
        sim_n = F.normalize(xn, dim=-1) @ tn.T  # (N, S, K)
        xa_unit = F.normalize(xa, dim=-1)
        sim_a = xa_unit @ tn.T
        # NVP: similarity-weighted normal frames -> enhanced Normal text, one per normal video
        w = sim_n[..., 0].masked_fill(~vn, float("-inf")).softmax(1)  # (N, S)
        q = (w[..., None] * xn).sum(1)  # (N, D)
        t_nor = text[0].expand(N, -1)
        t_enh = t_nor + self.nvp(torch.cat([q, t_nor], dim=-1))
        s_an = (xa_unit * F.normalize(t_enh, dim=-1)[:, None, :]).sum(-1)  # (N, S)
        # each abnormal video's true class (without labels: the best-matching anomaly class)
        if abnormal_classes is None:
            tau = masked_max(sim_a[..., 1:], va).argmax(-1).detach() + 1
        else:
            tau = torch.as_tensor(abnormal_classes, device=xa.device).long()
            if C > 1 and hp.train_crops == "all":
                tau = tau.repeat_interleave(C)
            if tau.min() < 1 or tau.max() >= K:
                raise ValueError(f"abnormal_classes must index class_names[1:{K}], got {tau.tolist()}")
        rows = torch.arange(N, device=xa.device)
        s_aa = sim_a.gather(2, tau[:, None, None].expand(N, S, 1))[..., 0]  # (N, S)
        other = torch.ones(N, K, dtype=torch.bool, device=xa.device)
        other[:, 0] = False
        other[rows, tau] = False
        m = hp.rank_margin
        # L_rank^n: Normal text above every anomaly text on normal videos
        max_nn = masked_max(sim_n[..., 0], vn)
        max_na = masked_max(sim_n[..., 1:], vn).amax(-1)
        rank_n = F.relu(m - max_nn + max_na).mean()
        # L_rank^a: the true anomaly text and the (enhanced) Normal text above the other anomalies
        if K > 2:
            max_other = masked_max(sim_a, va).masked_fill(~other, float("-inf")).amax(-1)
            rank_a = (F.relu(m - masked_max(s_an, va) + max_other)
                      + F.relu(m - masked_max(s_aa, va) + max_other)).mean()
        else:  # a single anomaly class has no "other" anomaly text
            rank_a = s_aa.new_zeros(())
        # L_dil: the true-anomaly and Normal similarity curves should disagree
        dil = F.cosine_similarity(s_aa * va, s_an * va, dim=1).mean()
        s_aa_n = minmax(s_aa, va)
        diffs = (s_aa_n[:, 1:] - s_aa_n[:, :-1]) ** 2 * (va[:, 1:] & va[:, :-1])
        # the paper's L_sp (lambda1) is the smoothness term, L_sm (lambda2) the sparsity term
        smoothness = hp.lambda1 * diffs.sum(1).mean()
        sparsity = hp.lambda2 * s_aa_n.sum(1).mean()
        # PLG: normality-guided pseudo-labels (no gradient)
        with torch.no_grad():
            psi = (1 - hp.alpha) * s_aa_n + hp.alpha * (1 - minmax(s_an, va))
            gamma_a = (minmax(psi, va) > hp.theta).float()
        scores = self.frame_scores(torch.cat([xn, xa], 0))  # (2N, S)
        targets = torch.cat([torch.zeros_like(gamma_a), gamma_a], 0)
        valid = torch.cat([vn, va], 0)
        bce = F.binary_cross_entropy(scores.clamp(1e-7, 1 - 1e-7), targets, reduction="none")
        cl = (bce * valid).sum() / valid.sum()
        total = cl + rank_n + rank_a + dil + smoothness + sparsity
        return {"loss": total, "cls": cl, "rank_normal": rank_n, "rank_abnormal": rank_a,
                "dil": dil, "smoothness": smoothness, "sparsity": sparsity}

    def _score_windows(self, seq: Tensor) -> Tensor:
        windows = pad_windows(seq, self.hparams.n_segments)
        return self.frame_scores(windows).reshape(-1)[:seq.shape[0]]

    def _score_video(self, x: Tensor) -> Tensor:
        return score_crops(x, self._score_windows, self.hparams.test_crop)


SPEC = register(MethodSpec(
    name="tpwng",
    paper="Yang, Liu, Wu. Text Prompt with Normality Guidance for Weakly Supervised Video Anomaly "
          "Detection. CVPR 2024",
    official_code=None,
    hparams=TPWNGHParams,
    build=TPWNGModel,
    **TEXT_PROMPT_SPEC,
))
