"""Wu, Zhou, Pang, Zhou, Yan, Wang, Zhang, "VadCLIP: Adapting Vision-Language Models for Weakly
Supervised Video Anomaly Detection", AAAI 2024 (VadCLIP).

Official code: nwpu-zxr/VadCLIP, files cited as ``model`` = src/model.py, ``layers`` =
src/utils/layers.py, ``tools`` = src/utils/tools.py, ``train`` = src/ucf_train.py, ``test`` =
src/ucf_test.py, ``opt`` = src/ucf_option.py (UCF-Crime; XD-Violence differences in brackets).

* Visual branch (``model`` ``encode_video``): frame position embedding (256 positions) added to
  the CLIP features, a "local" transformer (2 [1] residual blocks, width D, 1 head, QuickGELU MLP)
  whose attention is block-diagonal over windows of 8 [64] snippets, then the LGT-adapter: two
  2-layer GCN branches (width D/2, residual Conv1d(k=5) where the width changes), one on the
  feature-similarity graph (cosine > 0.7 kept, row softmax over the video's real snippets), one
  on the distance graph exp(-|i-j|/e); concatenated, Linear D -> D. Coarse scores: classifier
  (Linear D -> 1) on x + MLP(x).
* Text branch: each class name is tokenized with CLIP's BPE; the 77 token slots are learnable
  vectors, except SOT, the name's tokens (after 10 prefix slots) and EOT (10 postfix slots after
  the name); CLIP's frozen text encoder pools the EOT slot. The visual prompt adds the
  coarse-score-weighted, L2-normalised video feature to every class feature, then an MLP
  (residual). Fine logits: cosine(video snippet, class feature) / 0.07.
* Loss (``train``): CLAS2 = BCE of the mean sigmoid coarse score of the top int(len/16 + 1)
  snippets against "not Normal"; CLASM (MIL-align) = cross-entropy between the per-class mean of
  the top int(len/16 + 1) fine logits and the (normalised multi-hot) class label; + 0.1 [1e-4] *
  sum_j |cos(text_Normal, text_j)| / (K - 1) over the prompt features.
* Data (``tools``): training videos mean-pooled to 256 snippets when longer, else zero-padded
  to 256 (length kept for the masks; here recovered from the zero padding, as pad_pool pads with
  exact zeros). The official lists hold one row per crop: each crop is an independent sample;
  here each batch video contributes one random crop per step (``train_crops="random"``), which
  draws rows as the official loaders do. Test (``test``): the whole video in windows of 256
  (last one zero-padded), coarse scores sigmoid(logits1) (what the reported AUC uses) on one
  crop (index 5 in the UCF-Crime list; ``test_crop``, None = average of all crops).
* Optimisation (``opt``, ``train``): batch 64 normal + 64 abnormal rows, AdamW lr 2e-5 [1e-5]
  (torch default weight decay 0.01), 10 epochs (= 1250 steps on UCF-Crime's 8000 normal rows),
  seed 234. The shared loop runs the official schedule, which the hyper-parameters declare:
  epochs of the two zipped loaders over (video, crop) rows (``pairing: zipped``,
  ``sample_unit: crop``: each sample is one crop, as the per-crop lists; ``train_crops`` then has
  nothing left to choose), MultiStepLR at epochs 4 and 8 [3, 6, 10], x0.1, stepped per epoch,
  a test after in-epoch iterations 10, 20, ... (``i * 128 % 1280 == 0 and i != 0``; XD tests
  once per epoch instead) keeping the best-on-test model, and the best model reloaded after
  every epoch (the optimizer state is kept) and returned at the end. ``max_steps`` stays in
  steps: 1250 = 10 epochs of UCF-Crime's lists.
* Precision: the official CLIP runs in fp32, as here. ``CLIPVAD`` (model.py:111) calls the
  repository's own ``clip.load("ViT-B/16", device)`` (jit=False), which rebuilds the model with
  ``build_model`` (src/clip/clip.py:138-139) in the default fp32, and ``build_model``'s
  ``convert_weights(model)`` (the fp16 cast of OpenAI's original) is commented out
  (src/clip/model.py:437): the released fp16 values are loaded into fp32 parameters.
"""

from __future__ import annotations

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


@dataclass
class VadCLIPHParams(TrainHParams):
    batch_size: int = 64  # opt --batch-size 64 (per class: two loaders)
    lr: float = 2e-5  # opt --lr 2e-5
    weight_decay: float = 1e-2  # train torch.optim.AdamW(params, lr) -> torch's default 0.01
    optimizer: str = "adamw"  # train
    max_steps: int = 1250  # opt --max-epoch 10 x 125 iterations (8000 normal rows // 64)
    n_segments: int = 256  # opt --visual-length 256 (pad / mean-pool, tools.process_feat)
    seed: int = 234  # opt --seed 234
    # the loop's schedule (TrainHParams), as train does it:
    # train:66-71 zip of the two loaders, shuffle=True drop_last (:136-139), restarted every epoch
    pairing: str = "zipped"
    # the lists hold one row per crop (list/ucf_CLIP_rgb.csv): an epoch = 8000 normal rows // 64 = 125 steps
    sample_unit: str = "crop"
    # train:98-99 step = i * 128 (i: in-epoch iteration); test if step % 1280 == 0 and step != 0
    eval_schedule: str = "in_epoch"
    eval_every: int = 10  # ... i.e. i % 10 == 0 at the official batch 64
    # opt --scheduler-milestones [4, 8]: MultiStepLR (train:48) stepped per epoch (train:113)
    lr_milestones: tuple[int, ...] = (4, 8)
    lr_gamma: float = 0.1  # opt --scheduler-rate 0.1
    # train:116-117 the best checkpoint's model state reloaded after every epoch; :119-120 final = best
    reload_best_each_epoch: bool = True
    # not official (no effect on results): recompute the temporal transformer blocks in the
    # backward instead of keeping their activations (blocks.recomputed), for a smaller card
    activation_checkpointing: bool = hp(False)
    visual_heads: int = hp(1, ge=1)  # opt --visual-head 1
    visual_layers: int = hp(2, ge=1)  # opt --visual-layers 2 (XD 1)
    attn_window: int = hp(8, ge=1)  # opt --attn-window 8 (XD 64)
    prompt_prefix: int = hp(10, ge=0)  # opt --prompt-prefix 10
    prompt_postfix: int = hp(10, ge=0)  # opt --prompt-postfix 10
    adj_threshold: float = hp(0.7, ge=0, le=1)  # model adj4: F.threshold(adj, 0.7, 0)
    logit_temperature: float = hp(0.07, gt=0)  # model: logits2 = ... / 0.07
    lambda_text_sep: float = hp(0.1, ge=0)  # train: loss3 / 13 * 1e-1 (XD: / 6 * 1e-4)
    class_names: tuple[str, ...] = UCF_CRIME_CLASSES  # train label_map order; run.py fills the dataset's
    text_model: str = "ViT-B-16"  # model clip.load("ViT-B/16")
    text_weights: str | None = None  # CLIP weights file (run.py: the CLIP feature set's); None = random init
    text_width: int | None = hp(None, ge=1)  # None = the text_model's (tests use small towers)
    text_heads: int | None = hp(None, ge=1)
    text_layers: int | None = hp(None, ge=1)
    train_crops: str = hp("random", choices=("random", "all"))  # random | all (every crop an independent sample)
    test_crop: int | None = hp(None, ge=0)  # None: average the crops' scores; k: crop k only (official UCF list: 5)


def _quick_gelu(x: Tensor) -> Tensor:
    return x * torch.sigmoid(1.702 * x)


class _QuickGELU(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return _quick_gelu(x)


def _mlp(width: int) -> nn.Sequential:
    from collections import OrderedDict

    return nn.Sequential(OrderedDict([("c_fc", nn.Linear(width, width * 4)), ("gelu", _QuickGELU()),
                                      ("c_proj", nn.Linear(width * 4, width))]))


class SDPAttention(nn.Module):
    """Multi-head self-attention with ``nn.MultiheadAttention``'s parameter names
    (``in_proj_weight``, ``in_proj_bias``, ``out_proj``) through scaled_dot_product_attention."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        if width % heads:
            raise ValueError(f"attention width {width} is not divisible by {heads} heads")
        self.heads = heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * width, width))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * width))
        self.out_proj = nn.Linear(width, width)
        nn.init.xavier_uniform_(self.in_proj_weight)  # nn.MultiheadAttention's init
        nn.init.zeros_(self.out_proj.bias)

    def forward(self, x: Tensor, attn_mask: Tensor | None = None) -> Tensor:  # x (B, T, W)
        B, T, W = x.shape
        q, k, v = F.linear(x, self.in_proj_weight, self.in_proj_bias).chunk(3, dim=-1)
        q, k, v = (t.reshape(B, T, self.heads, W // self.heads).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
        return self.out_proj(y.transpose(1, 2).reshape(B, T, W))


class ResidualBlock(nn.Module):
    """model ``ResidualAttentionBlock`` (pre-LayerNorm attention + QuickGELU MLP)."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.attn = SDPAttention(width, heads)
        self.ln_1 = nn.LayerNorm(width)
        self.mlp = _mlp(width)
        self.ln_2 = nn.LayerNorm(width)

    def forward(self, x: Tensor, attn_mask: Tensor) -> Tensor:
        x = x + self.attn(self.ln_1(x), attn_mask)
        return x + self.mlp(self.ln_2(x))


class GraphConvolution(nn.Module):
    """layers ``GraphConvolution`` (no bias): adj @ (x W) + residual, the residual a Conv1d(k=5)
    when the width changes, else the identity."""

    def __init__(self, in_features: int, out_features: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(in_features, out_features))
        nn.init.xavier_uniform_(self.weight)
        self.residual = (nn.Conv1d(in_features, out_features, kernel_size=5, padding=2)
                         if in_features != out_features else None)

    def forward(self, x: Tensor, adj: Tensor) -> Tensor:
        out = adj @ (x @ self.weight)
        if self.residual is None:
            return out + x
        return out + self.residual(x.transpose(1, 2)).transpose(1, 2)


def window_mask(length: int, window: int) -> Tensor:
    """model ``build_attention_mask``: attention only inside consecutive windows (True = kept)."""
    if length % window:
        raise ValueError(f"VadCLIP: n_segments ({length}) must be a multiple of attn_window "
                         f"({window}); the official mask leaves the remainder rows empty")
    block = torch.arange(length) // window
    return block[:, None] == block[None, :]


class VadCLIPModel(WSVADModel):
    # live: windowed local attention, then GCNs over the similarity and distance
    # graphs of the whole window
    causal = False

    def __init__(self, hparams: VadCLIPHParams, feat_dim: int):
        super().__init__(hparams, feat_dim)
        hp = hparams
        D, L = feat_dim, hp.n_segments
        check_class_names("VadCLIP", hp.class_names)
        self.temporal = nn.Module()
        self.temporal.resblocks = nn.ModuleList(ResidualBlock(D, hp.visual_heads)
                                                for _ in range(hp.visual_layers))
        self.register_buffer("attn_mask", window_mask(L, hp.attn_window), persistent=False)
        width = D // 2
        self.gc1 = GraphConvolution(D, width)
        self.gc2 = GraphConvolution(width, width)
        self.gc3 = GraphConvolution(D, width)
        self.gc4 = GraphConvolution(width, width)
        dist = (torch.arange(L)[:, None] - torch.arange(L)[None, :]).abs().float()
        # layers DistanceAdj: exp(-|i - j| / e)
        self.register_buffer("dis_adj", torch.exp(-dist / torch.exp(torch.tensor(1.0))),
                             persistent=False)
        self.linear = nn.Linear(D, D)
        self.mlp1 = _mlp(D)
        self.mlp2 = _mlp(D)
        self.classifier = nn.Linear(D, 1)
        self.text = ClipTextEncoder(hp.text_model, hp.text_weights, embed_dim=D,
                                    width=hp.text_width, heads=hp.text_heads, layers=hp.text_layers)
        ctx = self.text.context_length
        text_width = self.text.token_embedding.weight.shape[1]
        self.frame_position_embeddings = nn.Embedding(L, D)
        self.text_prompt_embeddings = nn.Embedding(ctx, text_width)
        nn.init.normal_(self.text_prompt_embeddings.weight, std=0.01)
        nn.init.normal_(self.frame_position_embeddings.weight, std=0.01)
        tokens = tokenize(hp.class_names, context_length=ctx)
        eot = tokens.argmax(-1)
        if int(eot.max()) + hp.prompt_prefix + hp.prompt_postfix >= ctx:
            raise ValueError(f"VadCLIP: a class name is too long for {hp.prompt_prefix} prefix + "
                             f"{hp.prompt_postfix} postfix prompt slots in {ctx} tokens")
        self.register_buffer("tokens", tokens, persistent=False)

    # -- visual branch -------------------------------------------------------------------------
    def _similarity_adj(self, x: Tensor, lengths: Tensor) -> Tensor:
        """model adj4: thresholded cosine similarity, softmax over each video's real snippets."""
        norm = x.norm(p=2, dim=2, keepdim=True)
        sim = (x @ x.transpose(1, 2)) / (norm @ norm.transpose(1, 2) + 1e-20)
        sim = torch.where(sim > self.hparams.adj_threshold, sim, torch.zeros_like(sim))
        T = x.shape[1]
        valid = torch.arange(T, device=x.device)[None, :] < lengths[:, None]  # (N, T)
        adj = sim.masked_fill(~valid[:, None, :], float("-inf")).softmax(-1)
        return adj * valid[:, :, None]

    def encode_video(self, x: Tensor, lengths: Tensor) -> Tensor:
        """(N, L, D) padded snippet features -> (N, L, D) visual features."""
        x = x + self.frame_position_embeddings.weight[None]
        recompute = self.training and self.hparams.activation_checkpointing
        for block in self.temporal.resblocks:
            x = recomputed(recompute, block, x, self.attn_mask)
        adj = self._similarity_adj(x, lengths)
        dis = self.dis_adj.to(x.dtype)
        x1 = _quick_gelu(self.gc2(_quick_gelu(self.gc1(x, adj)), adj))
        x2 = _quick_gelu(self.gc4(_quick_gelu(self.gc3(x, dis)), dis))
        return self.linear(torch.cat([x1, x2], dim=2))

    def coarse_logits(self, visual: Tensor) -> Tensor:
        return self.classifier(visual + self.mlp2(visual))  # (N, L, 1)

    # -- text branch ---------------------------------------------------------------------------
    def encode_prompts(self) -> Tensor:
        """(K, D) class features from the learnable prompt (model ``encode_textprompt``)."""
        hp = self.hparams
        P, Q = hp.prompt_prefix, hp.prompt_postfix
        words = self.text.embed_tokens(self.tokens)  # (K, ctx, W), frozen
        K = words.shape[0]
        emb = self.text_prompt_embeddings.weight[None].repeat(K, 1, 1)
        eot = self.tokens.argmax(-1)
        for i in range(K):
            ind = int(eot[i])
            emb[i, 0] = words[i, 0]
            emb[i, P + 1:P + ind] = words[i, 1:ind]
            emb[i, P + ind + Q] = words[i, ind]
        return self.text(emb, eot + P + Q)

    def forward(self, x: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(N, L, D), (N,) -> text features (K, D), coarse logits (N, L, 1), fine logits (N, L, K)."""
        visual = self.encode_video(x, lengths)
        logits1 = self.coarse_logits(visual)
        text = self.encode_prompts()
        attn = logits1.transpose(1, 2) @ visual  # (N, 1, D)
        attn = attn / attn.norm(dim=-1, keepdim=True)
        text_feats = text[None] + attn  # (N, K, D)
        text_feats = text_feats + self.mlp1(text_feats)
        v = visual / visual.norm(dim=-1, keepdim=True)
        t = text_feats / text_feats.norm(dim=-1, keepdim=True)
        logits2 = v @ t.transpose(1, 2) / self.hparams.logit_temperature
        return text, logits1, logits2

    # -- interface -----------------------------------------------------------------------------
    def _loss(self, normal: Tensor, abnormal: Tensor, abnormal_classes: Tensor | None = None
             ) -> dict[str, Tensor]:
        hp = self.hparams
        C = normal.shape[1]
        # training samples, one row per crop as the official lists
        n_rows = crop_samples(normal, hp.train_crops)
        a_rows = crop_samples(abnormal, hp.train_crops)
        K = len(hp.class_names)
        rows_per_video = a_rows.shape[0] // abnormal.shape[0]
        labels = torch.zeros(n_rows.shape[0] + a_rows.shape[0], K, device=normal.device)
        labels[:n_rows.shape[0], 0] = 1.0
        if abnormal_classes is None:  # class unknown: every anomaly class equally (multi-label)
            labels[n_rows.shape[0]:, 1:] = 1.0
        else:
            cls = torch.as_tensor(abnormal_classes, device=normal.device).long()
            if cls.min() < 1 or cls.max() >= K:
                raise ValueError(f"abnormal_classes must index class_names[1:{K}], got {cls.tolist()}")
            cls = cls.repeat_interleave(rows_per_video) if C > 1 else cls
            labels[torch.arange(n_rows.shape[0], labels.shape[0], device=normal.device), cls] = 1.0
        x = torch.cat([n_rows, a_rows], 0)
        lengths = lengths_from_padding(x)
        text, logits1, logits2 = self.forward(x, lengths)
        # CLAS2: top-k mean of sigmoid coarse scores vs "not Normal"
        inst1 = topk_mean(torch.sigmoid(logits1[..., 0]), lengths)
        clas2 = F.binary_cross_entropy(inst1, 1.0 - labels[:, 0])
        # CLASM: per-class top-k mean of the fine logits, soft-label cross-entropy
        inst2 = topk_mean(logits2, lengths)
        soft = labels / labels.sum(1, keepdim=True)
        clasm = -(soft * F.log_softmax(inst2, dim=1)).sum(1).mean()
        tn = text / text.norm(dim=-1, keepdim=True)
        sep = hp.lambda_text_sep * (tn[1:] @ tn[0]).abs().sum() / (K - 1)
        total = clas2 + clasm + sep
        return {"loss": total, "clas2": clas2, "clasm": clasm, "text_sep": sep}

    def _score_windows(self, seq: Tensor) -> Tensor:
        """(T, D) -> (T,) sigmoid coarse scores over consecutive windows of n_segments (test)."""
        return window_scores(seq, self.hparams.n_segments,
                             lambda w, n: self.coarse_logits(self.encode_video(w, n)))

    def _score_video(self, x: Tensor) -> Tensor:
        return score_crops(x, self._score_windows, self.hparams.test_crop)


def load_official_state_dict(state: Mapping[str, Any]) -> dict[str, Tensor]:
    """CLIPVAD ``state_dict()`` (model_ucf.pth) to ours: ``clipmodel.`` text-tower keys ->
    ``text.``; the CLIP image tower, ``logit_scale`` and the unused ``disAdj.sigma`` are dropped."""
    if "model_state_dict" in state and isinstance(state["model_state_dict"], Mapping):
        state = state["model_state_dict"]
    text_keys = ("token_embedding.", "positional_embedding", "transformer.", "ln_final.",
                 "text_projection")
    out = {}
    for k, v in state.items():
        k = k.removeprefix("module.")
        if k == "disAdj.sigma":
            continue
        if k.startswith("clipmodel."):
            rest = k[len("clipmodel."):]
            if not rest.startswith(text_keys):
                continue  # image tower, logit_scale
            k = "text." + rest
        out[k] = torch.as_tensor(v).float()
    return out


SPEC = register(MethodSpec(
    name="vadclip",
    paper="Wu, Zhou, Pang, Zhou, Yan, Wang, Zhang. VadCLIP: Adapting Vision-Language Models for "
          "Weakly Supervised Video Anomaly Detection. AAAI 2024",
    official_code="https://github.com/nwpu-zxr/VadCLIP",
    hparams=VadCLIPHParams,
    build=VadCLIPModel,
    load_official_state_dict=load_official_state_dict,
    **TEXT_PROMPT_SPEC,
    # 2 (issue 13): the official schedule (per-crop rows in zipped epochs, MultiStepLR per epoch,
    # in-epoch test points, best reloaded after every epoch)
    version="2",
))
