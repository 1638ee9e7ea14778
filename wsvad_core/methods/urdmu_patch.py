"""UR-DMU + patch stage: a two-stage spatio-temporal WSVAD model in the style of the
"snippet stage, then spatial tubelet stage" methods (SST-WSVADL, STPrivacy): stage 1 is UR-DMU
(``methods/urdmu.py``, unchanged, trained with its own loss on the snippet features); stage 2
scores spatial tubelets (the cells of a patch grid followed through time, ``features/patches.py``)
with cross-attention to the frozen stage-1 snippet embeddings.

No official code: this is the configuration the issue describes, built from shared blocks; the
choices the description leaves open are named here.

* Input: the snippet crops followed by the grid's patches on the crop axis (``(B, C + rows *
  cols, S, D)``, a ``StackedStore``); default grid 2x3.
* Stage 1 = UR-DMU exactly (its hyper-parameters are this method's inherited fields: batch 64 +
  64, Adam 1e-4 / wd 5e-5, 200 segments, 3000 steps, one random crop per video per step).
* Stage 2 (UR-DMU frozen, in eval mode): each tubelet's patch features get UR-DMU's temporal
  embedding (Conv1d(D, 512, 3) + ReLU along time, its own weights) plus a learned embedding of the
  cell position; every (cell, snippet) token attends to the stage-1 snippet sequence of its video
  (multi-head cross-attention, 4 heads, pre-LayerNorm, ``scaled_dot_product_attention``, residual),
  then an MLP 512 -> 128 -> 1 (sigmoid) gives patch scores s_p,t. The snippet's patch score is the
  max over cells.
* Stage-2 loss: BCE of the top-k mean (k = T // 16 + 1, UR-DMU's k) of the snippet patch scores
  against the video labels + 0.1 x BCE of every patch score of normal videos against 0 (exact
  under weak labels) + 0.1 x BCE of the abnormal videos' snippet patch scores against the
  stage-1 scores (temporal pseudo-labels: stage 1 says *when*, the cell max learns *where*).
* Schedule: one run does stage 1 then stage 2 (``stage_steps``, default max_steps 6000 split
  equally: 3000 + 3000; stage 2 reuses
  UR-DMU's optimiser settings); stage-1 parameters stop learning when stage 2 starts (Adam skips
  parameters without gradients, so stage 2 starts with a fresh Adam state).
* Score: per crop, ``fusion * stage-1 score + (1 - fusion) * snippet patch score`` (fusion 0.5),
  averaged over crops as UR-DMU's test does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from wsvad_core.cards import hp
from wsvad_core.grids import parse_grid

from .base import MethodSpec
from .blocks import TemporalEmbedding, crop_samples
from .registry import register
from .staged import StagedModel, stage_ends
from .urdmu import URDMUHParams, URDMUModel
from .urdmu import load_official_state_dict as _urdmu_loader

__all__ = ["URDMUPatchHParams", "URDMUPatchModel", "TubeletCrossAttention"]


@dataclass
class URDMUPatchHParams(URDMUHParams):
    patch_grid: tuple[int, int] = hp((2, 3), ge=1)  # rows, cols of the patch feature set read beside the snippets
    # None = max_steps split equally: UR-DMU's 3000, then 3000 patch steps
    stage_steps: tuple[int, ...] | None = hp(None, ge=0)
    max_steps: int = 6000
    patch_heads: int = hp(4, ge=1)  # cross-attention heads (UR-DMU's transformer has 4)
    patch_dropout: float = hp(0.1, ge=0, lt=1)  # attention-output dropout in stage 2
    lambda_patch_normal: float = hp(0.1, ge=0)
    lambda_align: float = hp(0.1, ge=0)
    fusion: float = hp(0.5, ge=0, le=1)  # weight of the stage-1 score in the final score

    def patch_grids(self) -> tuple[tuple[int, int], ...]:
        return (parse_grid(self.patch_grid),)


class TubeletCrossAttention(nn.Module):
    """Pre-norm multi-head cross-attention of (cell, snippet) tokens to a snippet sequence."""

    def __init__(self, dim: int, heads: int, dropout: float):
        super().__init__()
        if dim % heads:
            raise ValueError(f"cross-attention width {dim} is not divisible by {heads} heads")
        self.heads = heads
        self.norm_q = nn.LayerNorm(dim)
        self.norm_kv = nn.LayerNorm(dim)
        self.to_q = nn.Linear(dim, dim)
        self.to_kv = nn.Linear(dim, 2 * dim)
        self.to_out = nn.Sequential(nn.Linear(dim, dim), nn.Dropout(dropout))

    def forward(self, tokens: Tensor, context: Tensor) -> Tensor:
        """tokens (N, L, W), context (N, T, W) -> tokens + attention output (N, L, W)."""
        N, L, W = tokens.shape
        h = self.heads

        def split(z: Tensor) -> Tensor:
            return z.view(N, -1, h, W // h).transpose(1, 2)

        q = split(self.to_q(self.norm_q(tokens)))
        k, v = (split(z) for z in self.to_kv(self.norm_kv(context)).chunk(2, dim=-1))
        out = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(N, L, W)
        return tokens + self.to_out(out)


class URDMUPatchModel(StagedModel):
    # live: UR-DMU's stage 1, and tubelets cross-attend to its whole sequence
    causal = False

    @property
    def _not_in_official_checkpoint(self) -> tuple[str, ...]:
        # an official UR-DMU checkpoint holds stage 1 only
        return tuple(k for k in self.state_dict() if not k.startswith("stage1."))

    def __init__(self, hparams: URDMUPatchHParams, feat_dim: int):
        super().__init__(hparams, feat_dim)
        hp = hparams
        self.grid = hp.patch_grids()[0]
        self.n_patches = self.grid[0] * self.grid[1]
        if not 0.0 <= hp.fusion <= 1.0:
            raise ValueError(f"urdmu_patch: fusion must be in [0, 1], got {hp.fusion}")
        self.stage_ends = stage_ends(hp.stage_steps, hp.max_steps, 2, "urdmu_patch")
        W = hp.width
        self.stage1 = URDMUModel(hp, feat_dim)  # reads only UR-DMU's fields of hp
        self.patch_embedding = TemporalEmbedding(feat_dim, W)
        self.cell_embedding = nn.Parameter(torch.zeros(self.n_patches, W))
        nn.init.trunc_normal_(self.cell_embedding, std=0.02)
        self.cross = TubeletCrossAttention(W, hp.patch_heads, hp.patch_dropout)
        self.patch_head = nn.Sequential(nn.Linear(W, hp.cls_hidden), nn.ReLU(),
                                        nn.Linear(hp.cls_hidden, 1), nn.Sigmoid())
        self._start_stages()

    # -- stages ----------------------------------------------------------------------------------
    def _apply_stage(self) -> None:
        # the optimiser is built at step 0 from the parameters that require grad, so the patch
        # stage requires grad throughout (unused in stage 1: no gradient, Adam skips it)
        self.requires_grad_(True)
        if self.stage == 2:
            self.stage1.requires_grad_(False)

    def train(self, mode: bool = True):
        super().train(mode)
        if mode and self.stage == 2:
            self.stage1.eval()  # frozen: deterministic embeddings and pseudo-labels
        return self

    # -- forward ---------------------------------------------------------------------------------
    def _split(self, x: Tensor) -> tuple[Tensor, Tensor]:
        c0 = x.shape[1] - self.n_patches
        if c0 < 1:
            raise ValueError(f"urdmu_patch: input has {x.shape[1]} crops; expected the snippet "
                             f"crops followed by the {self.n_patches} patches of grid {self.grid}")
        return x[:, :c0], x[:, c0:]

    def patch_scores(self, clip: Tensor, patches: Tensor) -> tuple[Tensor, Tensor]:
        """clip (N, T, D) one crop per video, patches (N, P, T, D) -> stage-1 scores (N, T) and
        patch scores (N, P, T)."""
        N, P, T, D = patches.shape
        with torch.no_grad():  # stage 1 is frozen in stage 2
            context = self.stage1.encode(clip)
            s1 = self.stage1.test_forward(clip)
        tokens = self.patch_embedding(patches.reshape(N * P, T, D)).view(N, P, T, -1)
        tokens = tokens + self.cell_embedding[None, :, None, :]
        h = self.cross(tokens.reshape(N, P * T, -1), context)
        return s1, self.patch_head(h).view(N, P, T)

    def _loss(self, normal: Tensor, abnormal: Tensor) -> dict[str, Tensor]:
        (n_clip, n_patch), (a_clip, a_patch) = self._split(normal), self._split(abnormal)
        if self.stage == 1:
            return self.stage1.loss(n_clip, a_clip)
        hp = self.hparams
        B = normal.shape[0]
        clip = torch.cat([crop_samples(n_clip, hp.train_crops), crop_samples(a_clip, hp.train_crops)])
        if clip.shape[0] != 2 * B:  # train_crops="all": every crop pairs with the same patches
            reps = clip.shape[0] // (2 * B)
            patches = torch.cat([n_patch.repeat_interleave(reps, 0), a_patch.repeat_interleave(reps, 0)])
            n = B * reps
        else:
            patches, n = torch.cat([n_patch, a_patch]), B
        s1, sp = self.patch_scores(clip, patches)
        s2 = sp.max(1).values  # (2n, T): the snippet's most anomalous cell
        T = s2.shape[1]
        k = min(T // 16 + 1, T)
        labels = torch.cat([torch.zeros(n), torch.ones(n)]).to(s2)
        video = F.binary_cross_entropy(s2.topk(k, dim=-1).values.mean(-1), labels)
        normal_cells = hp.lambda_patch_normal * F.binary_cross_entropy(
            sp[:n], torch.zeros_like(sp[:n]))
        align = hp.lambda_align * F.binary_cross_entropy(s2[n:], s1[n:].detach())
        return {"loss": video + normal_cells + align, "patch_video_bce": video,
                "patch_normal": normal_cells, "patch_align": align}

    def _score_video(self, x: Tensor) -> Tensor:
        clip, patches = self._split(x[None])
        hp = self.hparams
        out = []
        for c in range(clip.shape[1]):  # crops one at a time, as UR-DMU's test
            if self.stage == 1:
                out.append(self.stage1.test_forward(clip[:, c])[0])
                continue
            s1, sp = self.patch_scores(clip[:, c], patches)
            out.append(hp.fusion * s1[0] + (1.0 - hp.fusion) * sp[0].max(0).values)
        return torch.stack(out).mean(0)


def load_official_state_dict(state: Mapping[str, Any]) -> dict[str, Tensor]:
    """An official UR-DMU checkpoint initialises stage 1 (``stage1.``); the patch stage has no
    official weights (``base.load_official`` returns its keys as missing)."""
    return {"stage1." + k: v for k, v in _urdmu_loader(state).items()}


SPEC = register(MethodSpec(
    name="urdmu_patch",
    paper="Two-stage UR-DMU + spatial tubelet stage (SST-WSVADL / STPrivacy-style); stage 1: Zhou, "
          "Yu, Yang. Dual Memory Units with Uncertainty Regulation for Weakly Supervised Video "
          "Anomaly Detection. AAAI 2023",
    official_code=None,
    hparams=URDMUPatchHParams,
    accepts=("i3d",),
    build=URDMUPatchModel,
    reads_patches=True,
    load_official_state_dict=load_official_state_dict,
))
