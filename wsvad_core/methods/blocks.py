"""Shared building blocks, so that a paper is a configuration rather than a fork.

* :class:`NonLocalBlock1D`, :class:`TemporalAggregate`: RTFM's multi-scale temporal network
  (RTFM model.py ``Aggregate``), also S3R's embedding (S3R detector.py ``Aggregate``, GroupNorm).
* :func:`topk_magnitude_selection`, :func:`feature_magnitude_loss`: RTFM's top-k feature magnitude
  selection and margin loss (RTFM model.py / train.py); :func:`topk_magnitude_bce` and
  :func:`rtfm_loss` put them together into RTFM train.py's cost, which S3R, CLIP-TSA and SSRL
  reuse unchanged (MGFN reuses the selection + BCE part).
* :func:`temporal_smoothness`, :func:`score_sparsity`: the smoothness and sparsity terms, with
  the variants the official code actually computes.
* :func:`mil_ranking_hinge`: Sultani et al.'s ranking hinge between bag maxima.
* :func:`crop_samples`, :func:`pad_windows`, :func:`score_crops`: how per-crop methods draw their
  training samples and score a test video (crop by crop, in fixed-length windows).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "DSATransformer",
    "TemporalEmbedding",
    "dsa_mix",
    "topk_mean",
    "lengths_from_padding",
    "rtfm_head",
    "xavier_init",
    "NonLocalBlock1D",
    "TemporalAggregate",
    "mlp_head",
    "topk_magnitude_selection",
    "feature_magnitude_loss",
    "rtfm_k",
    "topk_magnitude_bce",
    "rtfm_loss",
    "temporal_smoothness",
    "score_sparsity",
    "mil_ranking_hinge",
    "crop_samples",
    "pad_windows",
    "score_crops",
]


def xavier_init(m: nn.Module) -> None:
    """RTFM/S3R ``weight_init``: Xavier-uniform weights and zero bias for every Conv/Linear."""
    if isinstance(m, (nn.Conv1d, nn.Linear)):
        nn.init.xavier_uniform_(m.weight)
        if m.bias is not None:
            nn.init.zeros_(m.bias)


class NonLocalBlock1D(nn.Module):
    """Embedded-dot-product non-local block over time, ``z = x + W(f(x) g(x))`` with
    ``f = theta(x)^T phi(x) / T`` (no softmax), as in RTFM/S3R (sub_sample=False, bn_layer=True).

    Attribute names follow RTFM (``g``, ``theta``, ``phi``, ``W``); S3R calls the same layers
    value / query / key / alter.
    """

    def __init__(self, in_channels: int, inter_channels: int | None = None, bn_layer: bool = True):
        super().__init__()
        inter = inter_channels if inter_channels is not None else max(1, in_channels // 2)
        self.inter_channels = inter
        self.g = nn.Conv1d(in_channels, inter, kernel_size=1)
        self.theta = nn.Conv1d(in_channels, inter, kernel_size=1)
        self.phi = nn.Conv1d(in_channels, inter, kernel_size=1)
        if bn_layer:
            self.W = nn.Sequential(nn.Conv1d(inter, in_channels, kernel_size=1),
                                   nn.BatchNorm1d(in_channels))
            bn = self.W[1]
        else:
            self.W = nn.Conv1d(inter, in_channels, kernel_size=1)
            bn = self.W
        # zero-initialised output: the block starts as the identity (official init; the BN is not
        # touched by the Conv/Linear Xavier init that follows)
        nn.init.zeros_(bn.weight)
        nn.init.zeros_(bn.bias)

    def forward(self, x: Tensor) -> Tensor:  # x: (B, C, T)
        T = x.shape[-1]
        g = self.g(x)  # (B, I, T)
        theta = self.theta(x)  # (B, I, T)
        phi = self.phi(x)  # (B, I, T)
        # (theta^T phi / T) g^T computed as theta^T (phi g^T) / T: the same product without the
        # T x T affinity matrix, so test videos of thousands of snippets fit in memory.
        y = torch.einsum("bit,bjt->bij", phi, g)  # (B, I, I): sum_t phi[:, i, t] g[:, j, t]
        y = torch.einsum("bit,bij->bjt", theta, y) / T  # (B, I, T)
        return x + self.W(y)


class TemporalAggregate(nn.Module):
    """RTFM's multi-scale temporal network (MTN).

    Three 3-tap convolutions with dilation 1/2/4 (``conv_1..3``: D -> inner) and a 1x1 conv
    (``conv_4``: D -> inner) followed by a non-local block; the four are concatenated and fused by a
    3-tap conv (``conv_5``: 4*inner -> D) and added to the input (residual).

    ``norm="bn"`` is RTFM (conv -> ReLU -> BatchNorm, inner fixed at 512 in the official code);
    ``norm="gn"`` is S3R (conv -> GroupNorm(8) -> ReLU, inner = D // 4). Sequential indices match
    the official modules so state dicts map by name.
    """

    def __init__(self, dim: int, inner: int = 512, norm: str = "bn", gn_groups: int = 8):
        super().__init__()
        if norm not in ("bn", "gn"):
            raise ValueError(f"norm must be 'bn' or 'gn', got {norm!r}")
        if norm == "gn" and (inner % gn_groups or dim % gn_groups):
            raise ValueError(f"GroupNorm({gn_groups}) needs inner ({inner}) and dim ({dim}) "
                             f"divisible by {gn_groups}")
        self.dim, self.inner, self.norm = dim, inner, norm

        def normed(conv: nn.Conv1d, channels: int) -> nn.Sequential:
            if norm == "bn":  # RTFM model.py: Conv, ReLU, BatchNorm1d
                return nn.Sequential(conv, nn.ReLU(), nn.BatchNorm1d(channels))
            # S3R detector.py: Conv, GroupNorm(8, eps 1e-5), ReLU
            return nn.Sequential(conv, nn.GroupNorm(gn_groups, channels, eps=1e-5), nn.ReLU())

        self.conv_1 = normed(nn.Conv1d(dim, inner, 3, stride=1, dilation=1, padding=1), inner)
        self.conv_2 = normed(nn.Conv1d(dim, inner, 3, stride=1, dilation=2, padding=2), inner)
        self.conv_3 = normed(nn.Conv1d(dim, inner, 3, stride=1, dilation=4, padding=4), inner)
        self.conv_4 = nn.Sequential(nn.Conv1d(dim, inner, 1, stride=1, padding=0, bias=False),
                                    nn.ReLU())
        self.conv_5 = normed(nn.Conv1d(4 * inner, dim, 3, stride=1, padding=1, bias=False), dim)
        self.non_local = NonLocalBlock1D(inner, bn_layer=True)

    def forward(self, x: Tensor) -> Tensor:  # x: (B, T, D) -> (B, T, D)
        x = x.transpose(1, 2)
        multi = torch.cat([self.conv_1(x), self.conv_2(x), self.conv_3(x)], dim=1)
        glob = self.non_local(self.conv_4(x))
        out = self.conv_5(torch.cat([multi, glob], dim=1)) + x
        return out.transpose(1, 2)


def recomputed(enabled: bool, block, *args):
    """``block(*args)``; with ``enabled``, while gradients are recorded, its activations are
    dropped after the forward and recomputed in the backward (``torch.utils.checkpoint``,
    RNG state restored, so dropout draws the same masks): the same loss and gradients for the
    memory of the block's inputs, at one more forward of the block per step. Not for blocks with
    BatchNorm: the recompute would update the running statistics a second time."""
    if enabled and torch.is_grad_enabled():
        from torch.utils.checkpoint import checkpoint

        return checkpoint(block, *args, use_reentrant=False)
    return block(*args)


def mlp_head(dims: list[int], dropout: float, sigmoid: bool = True) -> nn.Sequential:
    """Linear-ReLU-Dropout stack ending in a Linear (and a Sigmoid): RTFM/S3R's snippet classifier
    layout [Linear, ReLU, Dropout]*(n-1) + [Linear] (+ [Sigmoid])."""
    layers: list[nn.Module] = []
    for i in range(len(dims) - 1):
        layers.append(nn.Linear(dims[i], dims[i + 1]))
        if i < len(dims) - 2:
            layers += [nn.ReLU(), nn.Dropout(dropout)]
    if sigmoid:
        layers.append(nn.Sigmoid())
    return nn.Sequential(*layers)


def topk_magnitude_selection(features: Tensor, scores: Tensor, k: int, drop_p: float,
                             training: bool) -> tuple[Tensor, Tensor, Tensor]:
    """RTFM's top-k selection by feature magnitude (model.py ``forward``).

    features: (B*C, T, F) snippet features, video-major ((b c) order), C crops per video.
    scores:   (B, T) crop-averaged snippet scores.
    The snippet magnitude is the L2 norm of its feature averaged over crops; during training the
    magnitudes are multiplied by ``dropout(ones)`` (a random segment mask, as the official code);
    the k largest are chosen per video, the same indices for every crop.

    Returns ``(selected (C*B, k, F) crop-major as the official concatenation over crops,
    topk_score (B,) mean of the selected snippet scores, idx (B, k))``.
    """
    B, T = scores.shape
    C = features.shape[0] // B
    Fdim = features.shape[-1]
    k = max(1, min(int(k), T))
    mags = features.norm(p=2, dim=2).view(B, C, T).mean(1)  # (B, T)
    mask = F.dropout(torch.ones_like(mags), p=drop_p, training=training)
    idx = torch.topk(mags * mask, k, dim=1).indices  # (B, k)
    feats = features.view(B, C, T, Fdim)
    sel = torch.gather(feats, 2, idx[:, None, :, None].expand(B, C, k, Fdim))  # (B, C, k, F)
    sel = sel.transpose(0, 1).reshape(C * B, k, Fdim)
    topk_score = torch.gather(scores, 1, idx).mean(1)
    return sel, topk_score, idx


def feature_magnitude_loss(selected_normal: Tensor, selected_abnormal: Tensor,
                           margin: float) -> Tensor:
    """RTFM train.py ``RTFM_loss`` magnitude term:
    mean over (crop, video) pairs of (|margin - ||mean_k f_abn||| + ||mean_k f_nor||)^2."""
    l_abn = torch.abs(margin - selected_abnormal.mean(1).norm(p=2, dim=1))
    l_nor = selected_normal.mean(1).norm(p=2, dim=1)
    return ((l_abn + l_nor) ** 2).mean()


def rtfm_k(hparams, n_segments: int) -> int:
    """RTFM's k: ``hparams.topk``, or ``hparams.n_segments // 10`` when it is None (model.py
    ``k_abn = k_nor = num_segments // 10``), within [1, n_segments]."""
    k = hparams.topk if hparams.topk is not None else hparams.n_segments // 10
    return max(1, min(k, n_segments))


def topk_magnitude_bce(features: Tensor, scores: Tensor, k: int, drop_p: float, training: bool
                       ) -> tuple[Tensor, Tensor, Tensor]:
    """Top-k magnitude selection on the normal and the abnormal half of a batch and the BCE of the
    selected snippets' mean scores against labels 0 / 1 (RTFM model.py + train.py).

    features (2B*C, T, F) video-major, scores (2B, T); the first B videos are normal.
    Returns ``(bce, selected normal, selected abnormal)`` (selections as
    :func:`topk_magnitude_selection`). The abnormal half is selected first: the official code
    draws the abnormal half's dropout mask (``select_idx``) before the normal half's
    (``select_idx_normal``): RTFM model.py:231-232 then 253-254, S3R detector.py:302-303 then
    327-328, SSRL model.py:288-289 then 310-311, CLIP-TSA model.py:284-285 then 304-305, MGFN
    models/mgfn.py:43-44 then 65-66 (``MSNSD``). So one ``torch.manual_seed`` gives the official
    masks (tests/unit/test_recipe_dropout_order.py)."""
    B = scores.shape[0] // 2
    n = features.shape[0] // 2  # B * C rows per class
    sel_abn, top_abn, _ = topk_magnitude_selection(features[n:], scores[B:], k, drop_p, training)
    sel_nor, top_nor, _ = topk_magnitude_selection(features[:n], scores[:B], k, drop_p, training)
    labels = torch.cat([torch.zeros(B), torch.ones(B)]).to(scores)
    bce = F.binary_cross_entropy(torch.cat([top_nor, top_abn]), labels)
    return bce, sel_nor, sel_abn


def rtfm_loss(features: Tensor, scores: Tensor, hparams, training: bool) -> dict[str, Tensor]:
    """RTFM train.py's cost on one forward of B normal + B abnormal videos (normal first):
    BCE on the top-k magnitude snippets' mean scores + ``alpha`` * magnitude margin loss
    + ``lambda_smooth`` * smoothness + ``lambda_sparse`` * "sparsity" of the abnormal videos'
    scores flattened over the batch. ``hparams`` needs topk, n_segments, dropout (the selection
    mask), alpha, margin, lambda_smooth, lambda_sparse. Returns the weighted terms and their sum
    ``"loss"``."""
    hp = hparams
    k = rtfm_k(hp, scores.shape[1])
    bce, sel_nor, sel_abn = topk_magnitude_bce(features, scores, k, hp.dropout, training)
    magnitude = hp.alpha * feature_magnitude_loss(sel_nor, sel_abn, hp.margin)
    abn = scores[scores.shape[0] // 2:]
    smooth = hp.lambda_smooth * temporal_smoothness(abn, flatten=True)
    sparse = hp.lambda_sparse * score_sparsity(abn, "l2")
    return {"loss": bce + magnitude + smooth + sparse, "bce": bce, "magnitude": magnitude,
            "smoothness": smooth, "sparsity": sparse}


def temporal_smoothness(scores: Tensor, flatten: bool = False) -> Tensor:
    """Sum of squared differences of consecutive scores (unweighted).

    scores (B, S). ``flatten=False``: within each video, summed over videos (Sultani et al.).
    ``flatten=True``: over the batch flattened to one sequence, so the last segment of one video
    is compared with the first of the next (what RTFM/S3R train.py ``smooth`` computes).
    """
    if flatten:
        s = scores.reshape(-1)
        return ((s[1:] - s[:-1]) ** 2).sum()
    return ((scores[:, 1:] - scores[:, :-1]) ** 2).sum()


def score_sparsity(scores: Tensor, kind: str = "l1") -> Tensor:
    """Sparsity of scores (unweighted). ``"l1"``: sum of all scores (Sultani et al.; scores are
    >= 0). ``"l2"``: L2 norm of all scores flattened (RTFM/S3R train.py ``sparsity``:
    ``mean(norm(arr, dim=0))`` on the 1-d flattened batch is its L2 norm)."""
    if kind == "l1":
        return scores.sum()
    if kind == "l2":
        return scores.reshape(-1).norm(p=2)
    raise ValueError(f"unknown sparsity kind {kind!r}; valid: l1, l2")


def mil_ranking_hinge(max_abnormal: Tensor, max_normal: Tensor, margin: float = 1.0) -> Tensor:
    """Hinge of every (normal i, abnormal j) bag pair: max(0, margin - A_j + N_i), shape (Bn, Ba)."""
    return F.relu(margin - max_abnormal[None, :] + max_normal[:, None])


def crop_samples(x: Tensor, mode: str, key: str = "train_crops") -> Tensor:
    """(B, C, S, D) -> per-crop training samples (N, S, D): one random crop per video
    (``"random"``, as the official per-crop lists draw rows) or every crop (``"all"``,
    video-major). ``key`` names the hyper-parameter in the error."""
    B, C, S, D = x.shape
    if C == 1:
        return x[:, 0]
    if mode == "random":
        idx = torch.randint(C, (B,), device=x.device)
        return x[torch.arange(B, device=x.device), idx]
    if mode == "all":
        return x.reshape(B * C, S, D)
    raise ValueError(f"{key} must be 'random' or 'all', got {mode!r}")


def pad_windows(seq: Tensor, length: int) -> Tensor:
    """(T, D) -> (ceil(T / length), length, D): consecutive windows, the last one zero-padded
    (how VadCLIP's test feeds a long video to a model trained on fixed-length inputs)."""
    T = seq.shape[0]
    n_win = -(-T // length)
    padded = seq.new_zeros(n_win * length, seq.shape[1])
    padded[:T] = seq
    return padded.view(n_win, length, -1)


def window_scores(seq: Tensor, length: int, logits_fn) -> Tensor:
    """(T, D) -> (T,) sigmoid scores of ``logits_fn(windows, lengths)`` over consecutive windows
    of ``length`` snippets, the last one zero-padded (the VadCLIP-style test pass)."""
    T = seq.shape[0]
    windows = pad_windows(seq, length)
    lengths = torch.clamp(T - torch.arange(windows.shape[0], device=seq.device) * length, max=length)
    return torch.sigmoid(logits_fn(windows, lengths).reshape(-1)[:T])


def score_crops(x: Tensor, score_fn, crop: int | None = None) -> Tensor:
    """(C, T, D) -> (T,): ``score_fn`` ((T, D) -> (T,)) on crop ``crop`` only, or averaged over
    every crop when ``crop`` is None, one crop at a time (crops are independent in eval mode, and
    memory stays flat for long videos), as the official test loops average crop scores."""
    if crop is not None:
        if not 0 <= crop < x.shape[0]:
            raise ValueError(f"test_crop={crop} but the features have {x.shape[0]} crops")
        return score_fn(x[crop])
    return torch.stack([score_fn(x[i]) for i in range(x.shape[0])], 0).mean(0)


# ---- UR-DMU's dual-memory transformer blocks (also BN-WVAD's and UR-DMU + patch's)

# e as the official code computes it: torch.exp(torch.tensor(1.)) in float32
_E32 = float(torch.exp(torch.tensor(1.0)))
# exp(-d / e) is exactly 0 in float32 for d > ~282: a band of this radius equals the dense kernel
_DSA_RADIUS = 300


def dsa_mix(t: Tensor, dense_max: int = 2048) -> Tensor:
    """The distance branch of UR-DMU's attention on (..., n, d): ``K @ t`` with
    ``K[i, j] = exp(-|i - j| / e) / s_j``, ``s_j = sum_k exp(-|j - k| / e)`` (official broadcast).

    Up to ``dense_max`` snippets the n x n kernel is built as the official code does; longer test
    videos use the same kernel as a banded convolution (the kernel is exactly 0 in float32 beyond
    ``_DSA_RADIUS``), so memory stays linear in n.
    """
    n = t.shape[-2]
    if n <= dense_max:
        pos = torch.arange(1, n + 1, device=t.device, dtype=torch.float32)
        kernel = torch.exp(-(pos[None, :] - pos[:, None]).abs() / _E32)
        kernel = kernel / kernel.sum(-1)  # divides column j by row sum j (official broadcast)
        return kernel.to(t.dtype) @ t
    offsets = torch.arange(-_DSA_RADIUS, _DSA_RADIUS + 1, device=t.device, dtype=torch.float32)
    w = torch.exp(-offsets.abs() / _E32).to(t.dtype).view(1, 1, -1)
    row_sum = F.conv1d(torch.ones(1, 1, n, device=t.device, dtype=t.dtype), w,
                       padding=_DSA_RADIUS).view(n, 1)
    lead, d = t.shape[:-2], t.shape[-1]
    seq = (t / row_sum).reshape(-1, n, d).transpose(1, 2).reshape(-1, 1, n)
    out = F.conv1d(seq, w, padding=_DSA_RADIUS)  # symmetric kernel: correlation == convolution
    return out.view(-1, d, n).transpose(1, 2).reshape(*lead, n, d)


class DSAAttention(nn.Module):
    """Global self-attention + distance-kernel branch per head (translayer ``Attention``)."""

    def __init__(self, dim: int, heads: int, dim_head: int, dropout: float):
        super().__init__()
        inner = heads * dim_head
        self.heads, self.dim_head = heads, dim_head
        self.to_qkv = nn.Linear(dim, inner * 4, bias=False)  # q, k, v and the DSA value t
        self.to_out = nn.Sequential(nn.Linear(2 * inner, dim), nn.Dropout(dropout))

    def forward(self, x: Tensor) -> Tensor:  # (b, n, dim)
        b, n, _ = x.shape
        q, k, v, t = (z.view(b, n, self.heads, self.dim_head).transpose(1, 2)
                      for z in self.to_qkv(x).chunk(4, dim=-1))
        glob = F.scaled_dot_product_attention(q, k, v)  # scale 1/sqrt(dim_head), as official
        local = dsa_mix(t)
        out = torch.cat([glob, local], dim=-1).transpose(1, 2).reshape(b, n, -1)
        return self.to_out(out)


class PreNorm(nn.Module):
    def __init__(self, dim: int, fn: nn.Module):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fn = fn

    def forward(self, x: Tensor) -> Tensor:
        return self.fn(self.norm(x))


class FeedForward(nn.Module):
    def __init__(self, dim: int, hidden: int, dropout: float):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout),
                                 nn.Linear(hidden, dim), nn.Dropout(dropout))

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class DSATransformer(nn.Module):
    """UR-DMU / BN-WVAD transformer: pre-norm residual [DSA attention, FFN] x depth."""

    def __init__(self, dim: int, depth: int, heads: int, dim_head: int, mlp_dim: int,
                 dropout: float):
        super().__init__()
        self.layers = nn.ModuleList(
            nn.ModuleList([PreNorm(dim, DSAAttention(dim, heads, dim_head, dropout)),
                           PreNorm(dim, FeedForward(dim, mlp_dim, dropout))])
            for _ in range(depth))

    def forward(self, x: Tensor) -> Tensor:
        for attn, ff in self.layers:
            x = attn(x) + x
            x = ff(x) + x
        return x


class TemporalEmbedding(nn.Module):
    """Conv1d(D, width, 3, padding 1) + ReLU along time on (N, T, D) (model ``Temporal``)."""

    def __init__(self, in_dim: int, out_dim: int):
        super().__init__()
        self.conv_1 = nn.Sequential(nn.Conv1d(in_dim, out_dim, 3, stride=1, padding=1), nn.ReLU())

    def forward(self, x: Tensor) -> Tensor:
        return self.conv_1(x.transpose(1, 2)).transpose(1, 2)


# ---- VadCLIP's length-aware pooling (also GS-MoE's and TPWNG's)

def topk_mean(x: Tensor, lengths: Tensor, denom: int = 16) -> Tensor:
    """Mean of the top int(len/16 + 1) values of x[i, :len_i] along dim 1 (x (N, T, ...)), the
    official CLAS2 / CLASM instance score."""
    T = x.shape[1]
    valid = torch.arange(T, device=x.device)[None, :] < lengths[:, None]
    valid = valid.reshape(valid.shape + (1,) * (x.ndim - 2))
    srt = torch.sort(x.masked_fill(~valid, float("-inf")), dim=1, descending=True).values
    k = (lengths.float() / denom + 1).long().clamp(max=T)  # int(len / 16 + 1)
    keep = torch.arange(T, device=x.device)[None, :] < k[:, None]
    keep = keep.reshape(keep.shape + (1,) * (x.ndim - 2))
    summed = torch.where(keep, srt, torch.zeros_like(srt)).sum(1)
    return summed / k.reshape((-1,) + (1,) * (x.ndim - 2)).to(x.dtype)


def lengths_from_padding(x: Tensor) -> Tensor:
    """(N, T, D) -> (N,) number of snippets up to the last non-zero one (at least 1): pad_pool
    pads short videos with exact zeros."""
    nonzero = (x != 0).any(-1)  # (N, T)
    idx = torch.arange(1, x.shape[1] + 1, device=x.device)[None, :]
    return (nonzero * idx).amax(1).clamp(min=1)


# ---- RTFM's head on the aggregated features (also CLIP-TSA's)

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
