"""TimeSformer-MIL: Sultani et al.'s MIL head on TimeSformer snippet features, trained with the
ranking hinge + 0.1 x focal loss + 0.1 x temporal smoothness.

No official code: the method is specified by its paper-level description (issue 3 of this
project): TimeSformer-Base 768-d CLS features per 16-frame snippet (feature set ``timesformer``,
``features/backbones/timesformer.py``), the MIL scoring head, and the three loss terms with weights 1 / 0.1 /
0.1. Everything the description leaves open is taken from the MIL baseline it builds on
(``methods/mil.py``, Sultani et al.'s released script) and named as such below:

* Head (as ``mil``): per-snippet L2-normalised features, Linear 768 -> 512, ReLU, Dropout 0.6,
  Linear -> 32 (linear), Dropout 0.6, Linear -> 1, sigmoid; Glorot-normal init.
* Ranking (as ``mil``): for every (normal i, abnormal j) pair max(0, 1 - max_t s_j + max_t s_i),
  summed over the abnormal videos and averaged over the normal ones.
* Focal (Lin et al. 2017, their defaults gamma = 2, alpha = 0.25): on each video's bag score
  (its maximum snippet score) against the video label, mean over the 2B videos.
* Smoothness: sum over abnormal videos of the squared differences of consecutive scores
  (Sultani's form; no sparsity term, no weight regulariser: the description names neither).
* Optimisation (as ``mil``): 30 + 30 videos per step, Adagrad lr 0.001 epsilon 1e-8, 20000 steps,
  32 mean-pooled segments per training video.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from wsvad_core.cards import hp

from .base import MethodSpec
from .blocks import mil_ranking_hinge, temporal_smoothness
from .mil import MILHParams, MILModel
from .mil import load_official_state_dict as _mil_loader
from .registry import register

__all__ = ["TimesformerMILHParams", "TimesformerMILModel", "binary_focal_loss"]


@dataclass
class TimesformerMILHParams(MILHParams):
    lambda_focal: float = hp(0.1, ge=0)  # description: ranking + 0.1 focal + 0.1 smoothness
    lambda_smooth: float = hp(0.1, ge=0)
    lambda_sparse: float = hp(0.0, ge=0)  # not in the description
    l2_weight_reg: float = hp(0.0, ge=0)  # not in the description
    focal_gamma: float = hp(2.0, ge=0)  # Lin et al. 2017 default
    focal_alpha: float = hp(0.25, ge=0, le=1)  # Lin et al. 2017 default (weight of the positive class)


def binary_focal_loss(p: Tensor, target: Tensor, gamma: float, alpha: float,
                      eps: float = 1e-7) -> Tensor:
    """Mean of -alpha_t (1 - p_t)^gamma log(p_t) for probabilities ``p`` and 0/1 targets;
    ``alpha < 0`` disables the class weight. ``p`` is clamped away from 0/1 as BCE clamps its
    log."""
    p = p.clamp(eps, 1.0 - eps)
    p_t = torch.where(target > 0.5, p, 1.0 - p)
    loss = -((1.0 - p_t) ** gamma) * torch.log(p_t)
    if alpha >= 0:
        loss = torch.where(target > 0.5, alpha * loss, (1.0 - alpha) * loss)
    return loss.mean()


class TimesformerMILModel(MILModel):
    # live: MIL's head (forward): each snippet is scored alone
    causal = True

    def _loss(self, normal: Tensor, abnormal: Tensor) -> dict[str, Tensor]:
        hp = self.hparams
        B = normal.shape[0]
        scores = self.forward(torch.cat([abnormal, normal], 0))
        s_abn, s_nor = scores[:B], scores[B:]
        bag_abn, bag_nor = s_abn.max(1).values, s_nor.max(1).values
        ranking = mil_ranking_hinge(bag_abn, bag_nor, hp.margin).sum(1).mean()
        labels = torch.cat([torch.ones(B), torch.zeros(B)]).to(scores)
        focal = hp.lambda_focal * binary_focal_loss(torch.cat([bag_abn, bag_nor]), labels,
                                                    hp.focal_gamma, hp.focal_alpha)
        smooth = hp.lambda_smooth * temporal_smoothness(s_abn, flatten=False)
        terms = {"ranking": ranking, "focal": focal, "smoothness": smooth}
        if hp.lambda_sparse:
            terms["sparsity"] = hp.lambda_sparse * s_abn.sum()
        if hp.l2_weight_reg:
            terms["l2_reg"] = hp.l2_weight_reg * sum((fc.weight ** 2).sum()
                                                     for fc in (self.fc1, self.fc2, self.fc3))
        return {"loss": sum(terms.values()), **terms}


SPEC = register(MethodSpec(
    name="timesformer_mil",
    paper="TimeSformer features + MIL ranking with focal and smoothness terms (paper-level "
          "description; no official code)",
    official_code=None,
    hparams=TimesformerMILHParams,
    accepts=("timesformer",),
    build=TimesformerMILModel,
    load_official_state_dict=_mil_loader,  # the head's layers are mil's (fc1/fc2/fc3)
))
