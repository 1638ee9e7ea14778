"""Joo, Vo, Yamazaki, Le, "CLIP-TSA: CLIP-Assisted Temporal Self-Attention for Weakly-Supervised
Video Anomaly Detection", ICIP 2023 (CLIP-TSA).

Official code: joos2010kj/CLIP-TSA, files cited as ``model`` = model.py, ``ha`` =
utils/hard_attention.py, ``train`` = train.py, ``main`` = main.py, ``runner`` = runner.sh,
``dataset`` = dataset.py. CLIP-TSA is RTFM with a hard-attention front end:

* ``ha``: each snippet is scored by an MLP (D -> 256 ReLU -> 1 sigmoid); a *perturbed top-k*
  (Berthet et al.) keeps the k = int(T * k_ratio) best of ``num_samples`` noisy copies
  (Gaussian noise, sigma 0.05) of the score sequence; the official output sums the one-hot
  indicators over the k slots, i.e. each snippet is multiplied by the fraction of noisy samples
  in which it is among the top k. The backward is the perturbed-optimiser estimator. With one
  sequence in the batch (test, one crop) k is capped at 1000. The noise is drawn at test time
  too, from the global RNG at every forward, so each test video gets fresh noise and official
  scores are random. Here the test noise comes from one generator seeded with the run's seed
  and advanced across the videos of a scoring pass (``scoring_pass``: one test-set evaluation,
  ``evaluation.evaluate.score_videos``, which the pipeline and the best-on-test selection use):
  every video's noise is fresh, as there, and a pass is reproducible (the official sequence
  after ``torch.manual_seed(seed)``). A ``score`` call outside a pass scores each video with the
  seed's noise, as if alone.
* ``model``: features wider than 512 (I3D 2048, C3D 4096) first go through an MLP
  (D -> 1024 ReLU -> 512 sigmoid); the hard attention, RTFM's Aggregate, fc1/fc2/fc3 then work at
  width W (512, or D when D <= 512) with ``division = 2048 // W``: Aggregate branches 512/div,
  fc W -> 512/div -> 128/div -> 1, Dropout 0.7, sigmoid scores averaged over crops.
* ``train``: RTFM's loss unchanged (BCE on the mean score of the top-3-magnitude snippets
  + 1e-4 * magnitude margin loss, margin 100, + smoothness 8e-4 + "sparsity" 8e-3 on the abnormal
  crop-averaged scores flattened over the batch).
* ``main`` / ``runner`` (UCF-Crime): batch 16 + 16, Adam lr 1e-3 weight decay 5e-3, 4000 steps,
  k 0.95 (XD-Violence 0.9, ShanghaiTech 0.01 with 35000 steps), num_samples 100, seed 2, test every
  5 steps after step 150, best-on-test checkpoint kept; ``dataset``: RTFM's 32-segment mean pool.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from wsvad_core.cards import hp

from .base import MethodSpec, TrainHParams, WSVADModel, rename_official
from .blocks import TemporalAggregate, rtfm_head, rtfm_loss, xavier_init
from .registry import register


@dataclass
class CLIPTSAHParams(TrainHParams):
    batch_size: int = 16  # main/runner --batch_size 16 (per class; two loaders)
    lr: float = 1e-3  # runner --lr [0.001]*4000 (constant)
    weight_decay: float = 5e-3  # main optim.Adam(..., weight_decay=0.005)
    optimizer: str = "adam"  # main
    max_steps: int = 4000  # runner ucf --max_epoch 4000 (one batch per "epoch")
    n_segments: int = 32  # dataset process_feat(feature, 32); model num_segments = 32
    seed: int = 2  # runner ucf --seed 2 (main's default is 3)
    eval_every: int = 5  # main: test when step % 5 == 0 and step > 150
    eval_min_step: int = 150
    dropout: float = hp(0.7, ge=0, lt=1)  # model nn.Dropout(0.7), also the top-k selection mask
    topk: int | None = hp(None, ge=1)  # None: n_segments // 10 (model k_abn = k_nor = num_segments // 10 = 3)
    k_ratio: float = hp(0.95, gt=0, le=1)  # runner ucf --k 0.95 (xd 0.9, sh 0.01): hard-attention k = int(T * k)
    num_samples: int = hp(100, ge=1)  # main --num_samples 100
    sigma: float = hp(0.05, gt=0)  # ha PerturbedTopK(sigma=0.05) default; HardAttention does not pass one
    eval_k_cap: int = hp(1000, ge=1)  # ha: k = min(1000, k) when the batch holds one sequence
    width: int = hp(512, ge=1)  # model: I3D/C3D features are mapped to 512 by the MLP; ViT stays at D
    margin: float = hp(100.0, ge=0)  # train RTFM_loss(0.0001, 100)
    alpha: float = hp(1e-4, ge=0)
    lambda_smooth: float = hp(8e-4, ge=0)  # train smooth(abn_scores, 8e-4)
    lambda_sparse: float = hp(8e-3, ge=0)  # train sparsity(abn_scores, batch_size, 8e-3)


class _PerturbedTopKMembership(torch.autograd.Function):
    """Fraction of noisy samples in which each position is among the top k.

    Equals the official ``PerturbedTopKFunction`` summed over its k slots (which is how
    HardAttention uses it), computed from a (b, n, t) membership mask instead of the official
    (b, n, k, t) one-hot tensor; the backward is the official estimator summed the same way:
    ``grad_x[b, d] = sum_n M[b, n, d] <noise[b, n], g[b]> / (n * sigma)``.
    """

    @staticmethod
    def forward(ctx, x: Tensor, k: int, sigma: float, noise: Tensor) -> Tensor:
        b, n, t = noise.shape
        perturbed = x[:, None, :] + noise * sigma
        idx = torch.topk(perturbed, k=k, dim=-1, sorted=False).indices  # (b, n, k)
        member = torch.zeros_like(perturbed).scatter_(-1, idx, 1.0)  # (b, n, t)
        ctx.save_for_backward(member, noise)
        ctx.sigma = sigma
        return member.mean(dim=1)

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        member, noise = ctx.saved_tensors
        n = noise.shape[1]
        proj = torch.einsum("bne,be->bn", noise, grad_out)  # <noise_n, g>
        grad_x = torch.einsum("bnd,bn->bd", member, proj) / (n * ctx.sigma)
        return grad_x, None, None, None


class HardAttention(nn.Module):
    """ha ``HardAttention``: snippet scorer + perturbed top-k; names follow the official module
    (``scorer.fc1``, ``scorer.fc2``)."""

    def __init__(self, dim: int):
        super().__init__()
        self.scorer = nn.Module()
        self.scorer.fc1 = nn.Linear(dim, 256)
        self.scorer.fc2 = nn.Linear(256, 1)

    def forward(self, x: Tensor, k_ratio: float, num_samples: int, sigma: float, k_cap: int,
                generator: torch.Generator | None = None) -> Tensor:
        """x (b, t, d) -> (b, t, d) snippets weighted by their top-k membership frequency."""
        b, t, _ = x.shape
        s = torch.sigmoid(self.scorer.fc2(F.relu(self.scorer.fc1(x)))).squeeze(-1)  # (b, t)
        k = int(t * k_ratio)
        k = t if k > t else (1 if k == 0 else k)
        if b == 1:  # ha: train_mode is "batch > 1"; a single sequence caps k
            k = min(k_cap, k)
        # ha draws torch.normal(0, 1, (b, num_samples, t)): same call, so a seeded RNG gives the
        # official noise; the eval generator lives on the CPU (deterministic across devices)
        dev = "cpu" if generator is not None else x.device
        noise = torch.normal(mean=0.0, std=1.0, size=(b, num_samples, t), generator=generator,
                             device=dev).to(x.device)
        freq = _PerturbedTopKMembership.apply(s, k, sigma, noise)
        return freq[..., None] * x


class TSAMLP(nn.Module):
    """model ``MLP``: D -> 1024 ReLU -> 512 sigmoid, applied when D > 512."""

    def __init__(self, dim: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, 1024)
        self.fc2 = nn.Linear(1024, 512)

    def forward(self, x: Tensor) -> Tensor:
        return torch.sigmoid(self.fc2(F.relu(self.fc1(x))))


class CLIPTSAModel(WSVADModel):
    # live: the hard attention keeps the top int(T * k_ratio) snippets of the sequence,
    # then RTFM's Aggregate (dilated convs, non-local block) mixes them
    causal = False

    def __init__(self, hparams: CLIPTSAHParams, feat_dim: int):
        super().__init__(hparams, feat_dim)
        hp = hparams
        width = feat_dim if feat_dim <= hp.width else hp.width
        if width < 1 or 2048 % width or (512 * width) % 2048 or (128 * width) % 2048:
            raise ValueError(f"CLIP-TSA: width {width} (feat_dim {feat_dim}) must divide 2048 into "
                             "a power-of-two division (model.py: division = 2048 // width) with "
                             "width >= 16")
        div = 2048 // width
        self.width = width
        # creation order of model.py: hard attention, Aggregate, fc1..3, weight_init, then the MLP
        self.hard_attention = HardAttention(width)
        self.aggregate = TemporalAggregate(width, inner=512 // div, norm="bn")
        self.fc1 = nn.Linear(width, 512 // div)
        self.fc2 = nn.Linear(512 // div, 128 // div)
        self.fc3 = nn.Linear(128 // div, 1)
        self.drop_out = nn.Dropout(hp.dropout)
        self.apply(xavier_init)
        self.mlp = TSAMLP(feat_dim) if feat_dim > width else None  # default (not Xavier) init
        self._test_noise: torch.Generator | None = None  # inside a scoring_pass

    def _attend(self, seqs: Tensor, generator: torch.Generator | None) -> Tensor:
        hp = self.hparams
        args = (hp.k_ratio, hp.num_samples, hp.sigma, hp.eval_k_cap)
        n, t, _ = seqs.shape
        if self.mlp is not None and n > 1 and t != hp.n_segments:
            # model.py: non-ViT features not at the training length (the test's crops) go through
            # the hard attention one sequence at a time
            return torch.cat([self.hard_attention(s[None], *args, generator=generator)
                              for s in seqs], 0)
        return self.hard_attention(seqs, *args, generator=generator)

    def forward(self, x: Tensor, generator: torch.Generator | None = None
                ) -> tuple[Tensor, Tensor]:
        """(B, C, T, D) -> features (B*C, T, W), crop-averaged scores (B, T)."""
        B, C, T, D = x.shape
        seqs = x.reshape(B * C, T, D)
        if self.mlp is not None:
            seqs = self.mlp(seqs)
        return rtfm_head(self, self._attend(seqs, generator), B)

    def _loss(self, normal: Tensor, abnormal: Tensor) -> dict[str, Tensor]:
        feats, scores = self.forward(torch.cat([normal, abnormal], 0))  # train: one forward
        return rtfm_loss(feats, scores, self.hparams, self.training)  # train.py: RTFM's cost

    def _score_video(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        # all crops in one forward as test_10crop.py does (one noise draw for the whole video)
        gen = generator or torch.Generator().manual_seed(int(self.hparams.seed))
        return self.forward(x[None], generator=gen)[1][0]

    def score(self, x):
        """As ``WSVADModel.score``. Inside a :meth:`scoring_pass` the test noise is drawn afresh
        for every video from the pass's generator (the official forward draws ``torch.normal``
        from the global RNG each time, utils/hard_attention.py); outside one, every video is
        scored as if alone, with the noise of a generator seeded with the run's seed (so a
        video's score does not depend on its place in the call)."""
        gen = self._test_noise
        return self._score_each(x, lambda v: self._score_video(v, gen))

    @contextlib.contextmanager
    def scoring_pass(self):
        """One seeded noise stream across every video scored inside (a test-set evaluation)."""
        outer = self._test_noise
        self._test_noise = torch.Generator().manual_seed(int(self.hparams.seed))
        try:
            yield
        finally:
            self._test_noise = outer


def load_official_state_dict(state: Mapping[str, Any]) -> dict[str, Tensor]:
    """``Model.state_dict()`` (or a main.py checkpoint's ``model_state_dict``) to ours:
    ``Aggregate.`` -> ``aggregate.``, ``module.`` dropped; the official ``mlp.*`` exists for ViT
    features too but is only used for inputs wider than 512, so a 512-or-narrower one is dropped."""
    if "model_state_dict" in state and isinstance(state["model_state_dict"], Mapping):
        state = state["model_state_dict"]
    state = {k.removeprefix("module."): v for k, v in state.items()}
    mlp_in = state.get("mlp.fc1.weight")
    drop_mlp = mlp_in is not None and torch.as_tensor(mlp_in).shape[1] <= 512
    return rename_official(state, renames=(("Aggregate.", "aggregate."),),
                           drop=("mlp.",) if drop_mlp else ())


SPEC = register(MethodSpec(
    name="cliptsa",
    paper="Joo, Vo, Yamazaki, Le. CLIP-TSA: CLIP-Assisted Temporal Self-Attention for "
          "Weakly-Supervised Video Anomaly Detection. ICIP 2023",
    official_code="https://github.com/joos2010kj/CLIP-TSA",
    hparams=CLIPTSAHParams,
    accepts=("clip", "i3d"),
    build=CLIPTSAModel,
    load_official_state_dict=load_official_state_dict,
    # 2 (issue 13): the top-k selection dropout masks drawn abnormal-first, as the official code;
    # fresh test noise for every video of a scoring pass
    version="2",
))
