"""Pu, Wu, Yang, Wang, "Learning Prompt-Enhanced Context Features for Weakly-Supervised Video
Anomaly Detection", IEEE TIP 2024 (PEL4VAD).

Official code: yujiangpu20/PEL4VAD (commit eeb31f4), files cited as ``configs`` = configs.py,
``model`` = model.py, ``modules`` = modules.py, ``layers`` = layers.py, ``loss`` = loss.py,
``utils`` = utils.py, ``train`` = train.py, ``main`` = main.py, ``dataset`` = dataset.py,
``infer`` = infer.py, ``token_extract`` = prompt_extract/token_extract.py. Values are UCF-Crime's
(``configs`` 4-28); the XD-Violence (30-54) and ShanghaiTech (56-81) values are in brackets
[XD; SH].

* Encoder (``modules`` XEncoder): x + TCA(x), LayerNorm, Conv1d(D, D/2, 1) + GELU + dropout
  (the "video feature" of the prompt loss), Conv1d(D/2, 300, 1) + GELU + dropout; classifier
  (``model``): a causal Conv1d(300, 1, t_step=9 [3; 3]) on the left-padded sequence, sigmoid.
* TCA (``layers``): one head of width 128 (q, k, v: Linear D -> 128, o: 128 -> D); the
  attention logits q k^T / sqrt(128) plus the learnable distance prior
  exp(-|w |i-j|^2 - b|) (w, b initialised to gamma 0.6 [0.06; 0.08], bias 0.2 [0.02; 0.1])
  feed a global softmax and a local one masked (-1e9) outside a window of 9 [9; 5] snippets
  (``modules`` get_mask, the window clamped at the ends); the branches are mixed by
  sigmoid(alpha) (alpha = 0 at init). With ``norm`` [True; False; True] the mix is power- and
  L2-normalised, the L2 norm over dim 1 of (B, T, 128), i.e. over *time*, as written
  (``F.normalize`` default dim). The official ``view(-1, B, T, d)`` reshapes are kept. The T x T
  maps are computed in blocks of query rows (the same values; memory linear in T for long tests).
* Loss (``loss`` CLAS2, KLV_loss; ``utils`` get_cas, gen_label, create_logits; ``train``):
  BCE of the video score (top-1 snippet of a normal video, mean of the top seq_len//16 + 1 of
  an abnormal one) + lamda 1 [1; 9] x the prompt KL: snippet weights exp(10 s) - 1 (abnormal)
  and exp(10 (1 - s)) - 1 (normal), L1-normalised over the batch's padded length, pool the D/2
  video features into a foreground (every video, paired with its class prompt; normal videos
  with the Normal prompt) and a background (abnormal videos only, paired with the Normal
  prompt); logits = exp(logit_scale) cos(video, prompt) (logit_scale = log(1 / 0.09) [1/0.05;
  1/0.2], learnable); KLDiv(batchmean) of log(softmax) against softmax(10 x same-label matrix);
  0 when the log-softmax has a NaN. The training batch is cut to its longest video (``train``
  12-13: the padding takes part in the attention and in the L1 normalisation).
* Prompts: one 512-d CLIP text feature per class (``dataset``: row ``class index`` of
  ``list/*/*-prompt.npy``; UCF-Crime's are rounded to float16 by ``dataset`` 41-42, ``prompt_fp16``).
  Here from ``prompt_file`` (that .npy, rows in ``class_names`` order), or computed with the CLIP
  text tower from a local weights file (``text_weights``): ``token_extract`` encodes each class's
  concepts (``prompt_concepts``: a local ConceptNet JSON as the official ``json/*-concept.json``,
  keeping the concepts whose score is at least the mean score of the non-label concepts) with
  ``encode_text`` and averages them; without a JSON the class name is the only concept. Without
  either: seeded random prompts, logged as ``RANDOM-INIT``. The prompts are a buffer of the
  state dict (a rebuilt run keeps its own).
* Test (``infer``, the reported protocol): every crop of the whole video, crop scores averaged,
  then smoothed: ``slide`` = mean over the next kappa = 7 scores, zero-padded at the end [XD:
  ``fixed`` = block means over blocks of 8, the last block zero-padded; SH: ``slide`` 3].
* Optimisation (``configs`` 84-92, ``main``): Adam lr 5e-4 (no weight decay), 50 epochs, test
  after every epoch keeping the best (``main`` 64-78), seed 9 [4; 0], 200 segments: ``utils``
  process_feat(is_random=False) = zero-pad short videos, *uniformly sample* long ones.

Where the shared loop differs (see the report of issue 17): the official loader is one
shuffled loader of 128 per-crop rows of both classes (``main`` 101); here 64 normal + 64
abnormal rows zipped per epoch. ``main`` 51 anneals the lr with CosineAnnealingLR(T_max=60)
per epoch; the shared loop has no cosine schedule, so the lr stays 5e-4. Long training videos
are mean-pooled (``pad_pool``) instead of uniformly sampled: the loop's policies have no uniform
sampling (:func:`pad_uniform` is that policy, ready to register). The best epoch is chosen on
smoothed scores (``main`` uses the unsmoothed ``test_func``).
"""

from __future__ import annotations

import json
import logging
import math
import re
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from wsvad_core.cards import hp

from .base import MethodSpec, TrainHParams, WSVADModel, rename_official
from .blocks import crop_samples, score_crops
from .registry import register
from .text import UCF_CRIME_CLASSES, check_class_names, class_names_from_manifest

__all__ = ["PEL4VADHParams", "PEL4VADModel", "load_official_state_dict", "pad_uniform",
           "fixed_smooth", "slide_smooth"]

log = logging.getLogger(__name__)


@dataclass
class PEL4VADHParams(TrainHParams):
    batch_size: int = 64  # configs:90 train_bs 128 rows of both classes -> 64 + 64 here
    lr: float = 5e-4  # configs:88
    weight_decay: float = 0.0  # main:50 optim.Adam(model.parameters(), lr=cfg.lr)
    optimizer: str = "adam"  # main:50
    max_steps: int = 6250  # configs:92 max_epoch 50 x 125 steps (8000 normal rows // 64)
    n_segments: int = 200  # configs:91 max_seqlen 200 (utils process_feat)
    seed: int = 9  # configs:23 (XD 49: 4; SH 76: 0)
    pairing: str = "zipped"  # main:101 one shuffled loader, reshuffled every epoch
    sample_unit: str = "crop"  # list/ucf/train.list: one row per crop (16100 rows)
    eval_schedule: str = "epoch_end"  # main:64-72 test after every epoch, keep the best
    eval_every: int = 1
    hid_dim: int = hp(128, ge=1)  # configs:86 (TCA q/k/v width)
    out_dim: int = hp(300, ge=1)  # configs:87
    heads: int = hp(1, ge=1)  # configs:85 head_num
    dropout: float = hp(0.1, ge=0, lt=1)  # configs:89
    win_size: int = hp(9, ge=1)  # configs:14 (XD 40: 9; SH 67: 5)
    gamma: float = hp(0.6)  # configs:15 DistanceAdj w init (XD 41: 0.06; SH 68: 0.08)
    bias: float = hp(0.2)  # configs:16 DistanceAdj b init (XD 42: 0.02; SH 69: 0.1)
    norm: bool = hp(True)  # configs:17 TCA power + L2 norm (XD 43: False; SH 70: True)
    t_step: int = hp(9, ge=1)  # configs:19 classifier kernel (XD 45: 3; SH 72: 3)
    temp: float = hp(0.09, gt=0)  # configs:21 logit_scale init log(1/temp) (XD 47: 0.05; SH 74: 0.2)
    lamda: float = hp(1.0, ge=0)  # configs:22 weight of the prompt KL (XD 48: 1; SH 75: 9)
    cas_scale: float = hp(10.0, gt=0)  # utils:89 get_cas(scale=10)
    label_scale: float = hp(10.0, gt=0)  # loss:30 softmax(label * 10)
    smooth: str = hp("slide", choices=("slide", "fixed", "none"))  # configs:26 (XD 52: fixed; SH 79: slide)
    kappa: int = hp(7, ge=2)  # configs:27 smoothing window (XD 53: 8; SH 80: 3)
    class_names: tuple[str, ...] = UCF_CRIME_CLASSES  # dataset:430-432 abnormal_dict order
    prompt_file: str | None = None  # the official list/<ds>/<ds>-prompt.npy (rows: class_names order)
    prompt_fp16: bool = hp(True)  # dataset:41-42 UCF prompts cast to float16 (XD, SH: False)
    text_weights: str | None = None  # CLIP weights file to compute the prompts (token_extract)
    text_model: str = "ViT-B-16"  # token_extract:11 clipbackbone='ViT-B/16'
    prompt_concepts: str | None = None  # ConceptNet JSON (prompt_extract/json/<ds>-concept.json)
    train_crops: str = hp("random", choices=("random", "all"))  # sample_unit "video" only


# -- data and test-time helpers -------------------------------------------------------------------

def pad_uniform(x: np.ndarray, n_segments: int) -> np.ndarray:
    """``utils`` process_feat(is_random=False) on (C, T, D): T > S: the snippets at
    ``np.linspace(0, T - 1, S, dtype=uint16)``; else zero-padded at the end to S. (A segment
    policy the shared loop does not have yet; see the module docstring.)"""
    x = np.asarray(x, dtype=np.float32)
    T = x.shape[1]
    if T > n_segments:
        return x[:, np.linspace(0, T - 1, n_segments, dtype=np.uint16)]
    out = np.zeros((x.shape[0], n_segments, x.shape[2]), dtype=np.float32)
    out[:, :T] = x
    return out


def fixed_smooth(s: Tensor, size: int) -> Tensor:
    """``utils`` fixed_smooth: each block of ``size`` scores replaced by its mean, the last block
    zero-padded (the padding counts in its mean)."""
    T = s.shape[0]
    n = -(-T // size)
    padded = F.pad(s, (0, n * size - T))
    return padded.view(n, size).mean(1).repeat_interleave(size)[:T]


def slide_smooth(s: Tensor, size: int) -> Tensor:
    """``utils`` slide_smooth(mode='zero'): out[i] = mean(s[i:i + size]), zeros after the end."""
    padded = F.pad(s, (0, size - 1))
    return padded.unfold(0, size, 1).mean(1)


def _class_words(name: str) -> str:
    """"RoadAccidents" -> "road accidents" (the text of a class with no concept list)."""
    return re.sub(r"(?<=[a-z])(?=[A-Z])", " ", name).replace("_", " ").lower()


def _prompts_from_clip(hp: PEL4VADHParams) -> Tensor:
    """``token_extract`` prompt2vec(avg_th=True): per class, CLIP ``encode_text`` of the concepts
    scoring at least the mean of the non-label scores (all of them for a single concept),
    averaged."""
    from .text import ClipTextEncoder, tokenize

    if hp.prompt_concepts:
        with open(hp.prompt_concepts, encoding="utf-8") as fh:
            concepts = json.load(fh)  # {label: {concept: score}} in class order
        if len(concepts) != len(hp.class_names):
            raise ValueError(f"prompt_concepts {hp.prompt_concepts}: {len(concepts)} classes, "
                             f"class_names has {len(hp.class_names)}")
        texts = []
        for scores in concepts.values():
            vals = list(scores.values())
            th = 1.0 if len(vals) == 1 else sum(vals[1:]) / len(vals[1:])
            texts.append([c for c, v in scores.items() if v >= th])
    else:
        texts = [[_class_words(n)] for n in hp.class_names]
    enc = ClipTextEncoder(hp.text_model, hp.text_weights)
    if enc.provenance.get("text_weights") == "random-init":
        raise ValueError(f"text_weights {hp.text_weights}: holds no CLIP text tower")
    feats = []
    with torch.no_grad():
        for words in texts:
            tok = tokenize(words, enc.context_length)
            feats.append(enc(enc.embed_tokens(tok), tok.argmax(-1)).mean(0))
    return torch.stack(feats)


class DistanceAdj(nn.Module):
    """``layers`` DistanceAdj: exp(-|w d^2 - b|), d = |i - j|, w and b learnable."""

    def __init__(self, gamma: float, bias: float):
        super().__init__()
        self.w = nn.Parameter(torch.full((1,), float(gamma)))
        self.b = nn.Parameter(torch.full((1,), float(bias)))

    def rows(self, r0: int, r1: int, T: int, device) -> Tensor:
        d = (torch.arange(r0, r1, device=device)[:, None] - torch.arange(T, device=device)[None]).abs()
        return torch.exp(-torch.abs(self.w * d.float() ** 2 - self.b))


class TCA(nn.Module):
    """``layers`` TCA (global + windowed softmax attention with the distance prior)."""

    def __init__(self, d_model: int, dim: int, heads: int, norm: bool, win_size: int):
        super().__init__()
        if dim % heads:
            raise ValueError(f"PEL4VAD: hid_dim {dim} is not divisible by heads {heads}")
        self.dim, self.heads, self.norm, self.win = dim, heads, norm, win_size
        self.q = nn.Linear(d_model, dim)
        self.k = nn.Linear(d_model, dim)
        self.v = nn.Linear(d_model, dim)
        self.o = nn.Linear(dim, d_model)
        self.alpha = nn.Parameter(torch.tensor(0.0))

    def _window(self, r0: int, r1: int, T: int, device) -> Tensor:
        """``modules`` get_mask rows r0..r1: j - w//2 + k for k < w, clamped to [0, T-1]."""
        j = torch.arange(r0, r1, device=device)[:, None]
        lo = (j - self.win // 2).clamp(0, T - 1)
        hi = (j - self.win // 2 + self.win - 1).clamp(0, T - 1)
        i = torch.arange(T, device=device)[None]
        return (i >= lo) & (i <= hi)

    def forward(self, x: Tensor, adj: DistanceAdj, block_elems: int = 1 << 22) -> Tensor:
        B, T, _ = x.shape
        d = self.dim // self.heads
        Q = self.q(x).reshape(-1, B, T, d)  # the official view(-1, B, T, dim // heads)
        K = self.k(x).reshape(-1, B, T, d)
        V = self.v(x).reshape(-1, B, T, d)
        scale = 1 / math.sqrt(self.dim)
        rows = max(1, block_elems // max(1, Q.shape[0] * B * T))
        glb, lcl = [], []
        for r0 in range(0, T, rows):
            r1 = min(T, r0 + rows)
            g = Q[:, :, r0:r1] @ K.transpose(-1, -2) * scale + adj.rows(r0, r1, T, x.device)
            local = g.masked_fill(~self._window(r0, r1, T, x.device), -1e9)
            glb.append(g.softmax(-1) @ V)
            lcl.append(local.softmax(-1) @ V)
        glb = torch.cat(glb, 2).reshape(B, T, -1)
        lcl = torch.cat(lcl, 2).reshape(B, T, -1)
        a = torch.sigmoid(self.alpha)
        tmp = a * glb + (1 - a) * lcl
        if self.norm:
            tmp = torch.sqrt(F.relu(tmp)) - torch.sqrt(F.relu(-tmp))  # power norm
            tmp = F.normalize(tmp)  # dim 1 = time, as the official call
        return self.o(tmp).reshape(-1, T, x.shape[2])


class XEncoder(nn.Module):
    def __init__(self, hp: PEL4VADHParams, d_model: int):
        super().__init__()
        self.self_attn = TCA(d_model, hp.hid_dim, hp.heads, hp.norm, hp.win_size)
        self.linear1 = nn.Conv1d(d_model, d_model // 2, kernel_size=1)
        self.linear2 = nn.Conv1d(d_model // 2, hp.out_dim, kernel_size=1)
        self.dropout1 = nn.Dropout(hp.dropout)
        self.dropout2 = nn.Dropout(hp.dropout)
        self.norm = nn.LayerNorm(d_model)
        self.loc_adj = DistanceAdj(hp.gamma, hp.bias)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        x = x + self.self_attn(x, self.loc_adj)
        x = self.norm(x).transpose(1, 2)
        x = self.dropout1(F.gelu(self.linear1(x)))
        return self.dropout2(F.gelu(self.linear2(x))), x


class PEL4VADModel(WSVADModel):
    def __init__(self, hparams: PEL4VADHParams, feat_dim: int):
        super().__init__(hparams, feat_dim)
        hp = hparams
        check_class_names("PEL4VAD", hp.class_names)
        if feat_dim < 2:
            raise ValueError("PEL4VAD: feat_dim must be >= 2")
        self.self_attention = XEncoder(hp, feat_dim)
        self.classifier = nn.Conv1d(hp.out_dim, 1, hp.t_step, padding=0)
        self.logit_scale = nn.Parameter(torch.ones([]) * float(np.log(1 / hp.temp)))
        for m in self.modules():  # model weight_init: Xavier-uniform Conv / Linear weights
            if isinstance(m, (nn.Conv1d, nn.Linear)):
                nn.init.xavier_uniform_(m.weight)
        prompts, self.prompt_provenance = self._prompts(feat_dim // 2)
        self.register_buffer("prompt_features", prompts)

    def _prompts(self, dim: int) -> tuple[Tensor, dict]:
        hp = self.hparams
        K = len(hp.class_names)
        if hp.prompt_file:
            p = torch.from_numpy(np.asarray(np.load(hp.prompt_file), dtype=np.float32))
            src = {"prompts": str(hp.prompt_file)}
        elif hp.text_weights:
            p = _prompts_from_clip(hp).float()
            src = {"prompts": "clip", "text_weights": str(hp.text_weights),
                   "prompt_concepts": hp.prompt_concepts}
        else:
            g = torch.Generator().manual_seed(hp.seed)
            p = torch.randn(K, dim, generator=g)
            log.warning("RANDOM-INIT: PEL4VAD prompt features are random (no prompt_file and no "
                        "text_weights): the prompt-enhanced loss carries no language knowledge; "
                        "results are NOT comparable to published numbers.")
            src = {"prompts": "random-init"}
        if p.ndim != 2 or p.shape[0] != K or p.shape[1] != dim:
            raise ValueError(f"PEL4VAD: prompt features of shape {tuple(p.shape)}; expected "
                             f"({K} classes, {dim} = feat_dim / 2)")
        if hp.prompt_fp16:
            p = p.half().float()
        return p, src

    def official_missing_ok(self, mapped: Mapping[str, Tensor]) -> set[str]:
        return {"prompt_features"}  # the official prompts come from list/*/*-prompt.npy

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(N, T, D) -> snippet scores (N, T, 1), video features (N, D/2, T) (``model`` XModel)."""
        x_e, x_v = self.self_attention(x)
        logits = self.classifier(F.pad(x_e, (self.hparams.t_step - 1, 0)))
        return torch.sigmoid(logits.transpose(1, 2)), x_v

    # -- loss ---------------------------------------------------------------------------------
    def loss_terms(self, x: Tensor, labels: Tensor, classes: Tensor) -> dict[str, Tensor]:
        """``train`` on per-crop rows ``x`` (N, S, D), video labels (N,) and class indices (N,)."""
        hp = self.hparams
        seq_len = (x.abs().amax(-1) > 0).sum(1)  # train:12
        x = x[:, :max(int(seq_len.max()), 1)]  # train:13
        logits, x_v = self.forward(x)
        s = logits[..., 0]
        N, T = s.shape
        # loss CLAS2: top-1 for normal videos, top seq_len//16 + 1 for abnormal ones
        k = torch.where(labels > 0, seq_len // 16 + 1, torch.ones_like(seq_len)).clamp(max=T)
        valid = torch.arange(T, device=s.device)[None] < seq_len[:, None]
        srt = s.masked_fill(~valid, float("-inf")).sort(1, descending=True).values
        keep = torch.arange(T, device=s.device)[None] < k[:, None]
        video = torch.where(keep, srt, torch.zeros_like(srt)).sum(1) / k.to(s.dtype)
        video_bce = F.binary_cross_entropy(video, labels.to(s.dtype))
        # utils get_cas: score-weighted foreground / background video features
        abn = F.normalize((hp.cas_scale * logits).exp() - 1, p=1, dim=1)
        nor = F.normalize((hp.cas_scale * (1.0 - logits)).exp() - 1, p=1, dim=1)
        feats = x_v.transpose(1, 2)  # (N, T, D/2)
        fg = (abn.transpose(1, 2) @ feats)[:, 0]
        bg = (nor.transpose(1, 2) @ feats)[:, 0]
        ab = labels > 0
        prompts = self.prompt_features
        video_feat = torch.cat([fg, bg[ab]])
        token = torch.cat([prompts[torch.where(ab, classes, torch.zeros_like(classes))],
                           prompts[0].expand(int(ab.sum()), -1)])
        vlabel = torch.cat([torch.where(ab, classes, torch.zeros_like(classes)),
                            torch.zeros(int(ab.sum()), dtype=classes.dtype, device=classes.device)])
        # utils create_logits, gen_label; loss KLV_loss with KLDivLoss(batchmean)
        v = video_feat / video_feat.norm(dim=-1, keepdim=True)
        t = token / token.norm(dim=-1, keepdim=True)
        v2t = self.logit_scale.exp() * v @ t.T
        gt = (vlabel[:, None] == vlabel[None]).to(v2t.dtype)
        preds = torch.log(v2t.softmax(1))
        if torch.isnan(preds).any():
            kl = v2t.sum() * 0.0
        else:
            target = (gt * hp.label_scale).softmax(1)
            kl = F.kl_div(preds, target, reduction="batchmean")
        prompt_kl = hp.lamda * kl
        return {"loss": video_bce + prompt_kl, "video_bce": video_bce, "prompt_kl": prompt_kl}

    def _loss(self, normal: Tensor, abnormal: Tensor, abnormal_classes: Tensor | None = None
              ) -> dict[str, Tensor]:
        hp = self.hparams
        if abnormal_classes is None:
            raise ValueError("PEL4VAD needs abnormal_classes (each abnormal video's index into "
                             "class_names): its prompt loss pairs videos with their class prompt")
        cls = torch.as_tensor(abnormal_classes, device=normal.device).long()
        K = len(hp.class_names)
        if cls.numel() and (cls.min() < 1 or cls.max() >= K):
            raise ValueError(f"abnormal_classes must index class_names[1:{K}], got {cls.tolist()}")
        xn = crop_samples(normal, hp.train_crops)
        xa = crop_samples(abnormal, hp.train_crops)
        cls = cls.repeat_interleave(xa.shape[0] // abnormal.shape[0])
        x = torch.cat([xn, xa])
        labels = torch.cat([torch.zeros(xn.shape[0]), torch.ones(xa.shape[0])]).to(x.device)
        classes = torch.cat([torch.zeros(xn.shape[0], dtype=torch.long, device=x.device), cls])
        return self.loss_terms(x, labels, classes)

    # -- test ---------------------------------------------------------------------------------
    def smooth(self, s: Tensor) -> Tensor:
        hp = self.hparams
        if hp.smooth == "fixed":
            return fixed_smooth(s, hp.kappa)
        if hp.smooth == "slide":
            return slide_smooth(s, hp.kappa)
        return s

    def _score_video(self, x: Tensor) -> Tensor:
        # infer:18-30 crops averaged, then smoothed
        s = score_crops(x, lambda v: self.forward(v[None])[0][0, :, 0])
        return self.smooth(s)


def load_official_state_dict(state: Mapping[str, Any]) -> dict[str, Tensor]:
    """XModel ``state_dict()`` (ckpt/ucf__8636.pkl, ...): the official names are kept; a
    DataParallel ``module.`` prefix is dropped (``main`` load_checkpoint)."""
    return rename_official(state)


def prepare_overrides(overrides: dict, store_attrs: Mapping, manifest) -> dict:
    """The dataset's class names (``Normal`` first, then sorted) unless the config sets them."""
    out = dict(overrides)
    out.setdefault("class_names", list(class_names_from_manifest(manifest)))
    return out


SPEC = register(MethodSpec(
    name="pel4vad",
    paper="Pu, Wu, Yang, Wang. Learning Prompt-Enhanced Context Features for Weakly-Supervised "
          "Video Anomaly Detection. IEEE TIP 2024",
    official_code="https://github.com/yujiangpu20/PEL4VAD",
    hparams=PEL4VADHParams,
    build=PEL4VADModel,
    # utils process_feat pads short videos with zeros like pad_pool (long ones: see docstring)
    segment_policy="pad_pool",
    accepts=("i3d",),
    needs_class_labels=True,
    prepare_overrides=prepare_overrides,
    load_official_state_dict=load_official_state_dict,
))
