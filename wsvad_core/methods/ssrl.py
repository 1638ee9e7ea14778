"""Li, Liu, Jiao, "Scale-aware Spatio-temporal Relation Learning for Video Anomaly Detection",
ECCV 2022 (SSRL).

Official code: nutuniv/SSRL (commit 5e1f312), files cited as ``model`` = model.py, ``train`` =
train.py, ``main`` = main.py, ``option`` = option.py, ``dataset`` = dataset.py, ``test`` = test.py,
``stageN`` = scripts/train_ssrl_stageN.sh.

Input: the snippet features (10 crops of I3D-R50, 2048-d) followed on the crop axis by the patch
features of each active grid (one view per patch, raster order; ``features/patches.py``), i.e.
``(B, 10 + 6 + 15 + 28, S, D)`` for grids 2x3, 3x5, 4x7 (the official loader concatenates the
same way; the run gets them as a ``StackedStore``).

* Stage 1 (model ``ssrl_stage1``) is RTFM with SSRL's ``Aggregate``: dilated convs 1/2/4 and a
  1x1 conv + non-local block at D/4 channels each, fused by a 3-tap conv back to D, residual
  (Conv -> ReLU -> BatchNorm) = ``blocks.TemporalAggregate(D, D // 4, "bn")``; Dropout 0.7;
  classifier Linear D -> 512 -> 128 -> 1 with ReLU + Dropout 0.7, sigmoid; Xavier init.
* Stages 2-4 (``ssrl_stage2..4``, ``--multi_patch_size 23 [35 [47]]``) add one patch branch per
  grid (PSR + multi-scale aggregation): for every snippet the grid's patch features go through
  their own ``Aggregate`` along the *patch* axis (raster order, the spatial relation), are folded
  into a (rows, cols) map, a Conv2d(D, D/2, 3) -> ReLU -> BatchNorm2d (padding 1 for 2x3, else
  0: here padding 1 whenever rows or cols < 3, the same for the official grids), flattened
  (channel-major) and mapped by Linear -> D + ReLU (+ Dropout 0.7 for the 4x7 branch only, as the
  code does); the branch output is added to every crop of the snippet features before the clip
  ``Aggregate``. The official code hard-codes D = 2048 in the patch stages; here D is the dim.
* Loss (train): RTFM's — BCE on the mean score of the top-3-magnitude snippets (k =
  num_segments // 10; magnitudes averaged over the 10 crops, times a dropout(0.7) mask) +
  0.0001 x magnitude margin loss (margin 100) + 8e-4 x smoothness + 8e-3 x sparsity of the
  abnormal crop-averaged scores flattened over the batch.
* Training (option, main, stageN): 8 GPUs under DistributedDataParallel with batch 4 + 4 each
  (``ddp_world_size`` x ``batch_size / ddp_world_size`` here: the loss is the mean of the
  per-process losses, each on its own forward, so BatchNorm batch statistics, top-k and the
  smoothness/sparsity sums are per process as there; the BatchNorm running statistics are rank
  0's, one update per step from the first sub-batch, as DDP's buffer broadcast keeps them);
  Adam lr 0.001 weight decay 0.005;
  150000 iterations per stage; features mean-pooled to 32 segments (utils ``process_feat``);
  seed 10; test every 5 steps after step 50, best-on-test checkpoint kept.
* Stages: each stage starts from the previous stage's model, freezes every parameter it had
  (``--train_part``), keeps the frozen clip ``Aggregate`` and the frozen patch branches' BatchNorms
  in eval mode, and trains only the new branch. Here one run does all stages in sequence
  (``stage_steps``): the optimizer holds every parameter, but Adam only touches parameters with
  a gradient, so each branch gets a fresh Adam exactly when its stage starts, as a new optimizer
  per stage does. The previous stage is carried over at its last step (the official scripts
  load the previous stage's best-on-test checkpoint). Note: the released main.py builds
  ``model_state_dict.update(pretrained)`` without ``load_state_dict``, so as released it does
  not actually load the previous stage; the paper's staged training (what this reproduces)
  obviously does.
* Test (test): whole video, eval mode, scores averaged over the 10 crops.
* ``multi_patch_size: []`` is stage 1 alone (no patch feature sets are read).
* Released checkpoints (``best_auc.pkl`` of any stage) carry no stage counter; the stage is the
  number of patch branches they hold plus one (a stage-k ``Model`` builds one branch per grid of
  its ``--multi_patch_size``, model.py:205-217), so ``base.load_official`` loads a checkpoint of
  any stage into the default model and leaves it in that stage (``after_official_load``).
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from wsvad_core.cards import hp
from wsvad_core.grids import parse_grid

from .base import MethodSpec, TrainHParams, rename_official
from .blocks import TemporalAggregate, mlp_head, rtfm_loss, xavier_init
from .registry import register
from .staged import StagedModel, stage_ends

__all__ = ["SSRLHParams", "SSRLModel", "load_official_state_dict"]


@dataclass
class SSRLHParams(TrainHParams):
    batch_size: int = 32  # option --batch_size 4 per process x 8 processes (stageN: nproc_per_node=8)
    ddp_world_size: int = hp(8, ge=1)  # stageN: torch.distributed.launch --nproc_per_node=8
    lr: float = 1e-3  # stageN --lr [0.001]*150000 (constant)
    weight_decay: float = 5e-3  # main: optim.Adam(..., weight_decay=0.005)
    optimizer: str = "adam"  # main
    # stage2-4 --multi_patch_size (rows = n // 10, cols = n % 10)
    multi_patch_size: tuple[int, ...] = hp((23, 35, 47), ge=11, le=99)
    # None = max_steps split equally: stageN --max_epoch 150000 each
    stage_steps: tuple[int, ...] | None = hp(None, ge=0)
    max_steps: int = 600000  # 4 stages x 150000
    n_segments: int = 32  # option --num_segments 32; dataset process_feat(feature, 32)
    seed: int = 10  # option --seed 10
    eval_every: int = 5  # main: test_step = 5 ...
    eval_min_step: int = 50  # ... and step > 50
    dropout: float = hp(0.7, ge=0, lt=1)  # model nn.Dropout(0.7)
    topk: int | None = hp(None, ge=1)  # None: n_segments // 10 (model k_abn = k_nor = num_segments // 10)
    hidden1: int = hp(512, ge=1)  # model Classfier fc1
    hidden2: int = hp(128, ge=1)  # model Classfier fc2
    # model: drop_out on the patch branch only "if size == 47"
    branch_dropout: tuple[int, ...] = hp((47,), ge=11, le=99)
    margin: float = hp(100.0, ge=0)  # train RTFM_loss(0.0001, 100)
    alpha: float = hp(1e-4, ge=0)
    lambda_smooth: float = hp(8e-4, ge=0)  # train smooth(abn_scores, 8e-4)
    lambda_sparse: float = hp(8e-3, ge=0)  # train sparsity(abn_scores, batch_size, 8e-3)

    def patch_grids(self) -> tuple[tuple[int, int], ...]:
        """The patch feature sets this run reads (training/run.py), in crop-axis order."""
        return tuple(parse_grid(g) for g in self.multi_patch_size)


def _ssrl_code(grid: tuple[int, int]) -> int:
    return grid[0] * 10 + grid[1]


def _patch_layers(dim: int, grid: tuple[int, int]) -> tuple[nn.Module, nn.Module, nn.Module]:
    """One grid's branch: PSR Aggregate over the patch axis, Conv2d map, Linear back to D."""
    rows, cols = grid
    pad = 1 if min(rows, cols) < 3 else 0  # model: padding=1 if patch_size == 23 else 0
    out_cells = (rows + 2 * pad - 2) * (cols + 2 * pad - 2)
    if out_cells < 1:
        raise ValueError(f"ssrl: patch grid {grid} is too small for the 3x3 patch_to_clip conv")
    return (TemporalAggregate(dim, inner=dim // 4, norm="bn"),
            nn.Sequential(nn.Conv2d(dim, dim // 2, 3, stride=1, padding=pad), nn.ReLU(),
                          nn.BatchNorm2d(dim // 2)),
            nn.Linear(dim // 2 * out_cells, dim))


class SSRLModel(StagedModel):
    # live: RTFM's Aggregate (dilated convs, non-local block) on the clip features
    causal = False

    def __init__(self, hparams: SSRLHParams, feat_dim: int):
        super().__init__(hparams, feat_dim)
        hp = hparams
        D = feat_dim
        if D % 8:
            raise ValueError(f"ssrl needs feat_dim divisible by 8 (Aggregate at D/4, non-local at "
                             f"D/8); got {D}")
        self.grids = hp.patch_grids()
        if len(set(self.grids)) != len(self.grids):
            raise ValueError(f"ssrl: multi_patch_size {hp.multi_patch_size} repeats a grid")
        # stage 1, then one stage per grid
        self.stage_ends = stage_ends(hp.stage_steps, hp.max_steps, len(self.grids) + 1, "ssrl")
        if hp.batch_size % hp.ddp_world_size:
            raise ValueError(f"ssrl: batch_size {hp.batch_size} must be a multiple of "
                             f"ddp_world_size {hp.ddp_world_size} (batch per process)")
        self.n_patches = [r * c for r, c in self.grids]
        drop_codes = {int(c) for c in hp.branch_dropout}
        self.aggregate_clip = TemporalAggregate(D, inner=D // 4, norm="bn")
        self.aggregate_patch = nn.ModuleList()
        self.patch_to_clip = nn.ModuleList()
        self.linear_out = nn.ModuleList()
        self.branch_dropout = []
        for g in self.grids:  # ModuleLists with the official names: state dicts map one to one
            agg, conv, lin = _patch_layers(D, g)
            self.aggregate_patch.append(agg)
            self.patch_to_clip.append(conv)
            self.linear_out.append(lin)
            self.branch_dropout.append(_ssrl_code(g) in drop_codes)
        self.drop_out = nn.Dropout(hp.dropout)
        self.classifier = mlp_head([D, hp.hidden1, hp.hidden2, 1], hp.dropout, sigmoid=True)
        self.apply(xavier_init)  # model weight_init: Conv (1d and 2d) and Linear
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        self._start_stages()

    # -- stages: 1 = clip stage; k >= 2 trains the patch branch of grid k - 2 (all grids when done)
    def _branch_modules(self, i: int) -> list[nn.Module]:
        return [self.aggregate_patch[i], self.patch_to_clip[i], self.linear_out[i]]

    def _apply_stage(self) -> None:
        """--train_part: only the current stage's modules learn."""
        k = self.stage
        self.requires_grad_(k == 1)
        if k >= 2:
            for m in self._branch_modules(k - 2):
                m.requires_grad_(True)

    def train(self, mode: bool = True):
        super().train(mode)
        k = self.stage
        if mode and k >= 2:  # train: frozen BatchNorms keep their statistics (eval mode)
            self.aggregate_clip.eval()
            for i in range(k - 2):
                self.aggregate_patch[i].eval()
                self.patch_to_clip[i].eval()
        return self

    # -- forward ---------------------------------------------------------------------------------
    def forward(self, x: Tensor, n_branches: int | None = None) -> tuple[Tensor, Tensor]:
        """(B, C0 + sum(P), T, D) -> features (B*C0, T, D) after the clip Aggregate + dropout and
        crop-averaged scores (B, T). ``n_branches``: patch branches used (default: the stage's)."""
        B, C, T, D = x.shape
        n = self.stage - 1 if n_branches is None else n_branches
        c0 = C - sum(self.n_patches)
        if c0 < 1:
            raise ValueError(f"ssrl: input has {C} crops; expected the snippet crops followed by "
                             f"{sum(self.n_patches)} patches (grids {self.grids})")
        clip = x[:, :c0]
        start = c0
        for i in range(n):
            patches = x[:, start:start + self.n_patches[i]]
            start += self.n_patches[i]
            y = self.aggregate_patch[i](patches.transpose(1, 2).reshape(B * T, -1, D))
            rows, cols = self.grids[i]
            y = self.patch_to_clip[i](y.transpose(1, 2).reshape(B * T, D, rows, cols)).reshape(B, T, -1)
            y = F.relu(self.linear_out[i](y))
            if self.branch_dropout[i]:
                y = self.drop_out(y)
            clip = clip + y[:, None]
        feats = self.drop_out(self.aggregate_clip(clip.reshape(B * c0, T, D)))
        scores = self.classifier(feats).view(B, c0, T).mean(1)
        return feats, scores

    def _process_loss(self, normal: Tensor, abnormal: Tensor) -> dict[str, Tensor]:
        """One DDP process's train.py cost (RTFM's) on its own forward."""
        feats, scores = self.forward(torch.cat([normal, abnormal], 0))
        return rtfm_loss(feats, scores, self.hparams, self.training)

    def _loss(self, normal: Tensor, abnormal: Tensor) -> dict[str, Tensor]:
        world = self.hparams.ddp_world_size
        B = normal.shape[0]
        if B % world:
            raise ValueError(f"ssrl: a batch of {B} videos per class cannot be split over "
                             f"ddp_world_size {world} processes")
        per = B // world
        # DDP averages the processes' gradients = gradient of the mean of their losses
        parts = []
        for i in range(world):
            # BatchNorm buffers: DistributedDataParallel (main.py:76, default
            # broadcast_buffers=True) copies rank 0's buffers to every process before each forward
            # and rank 0 saves the checkpoints (main.py:125-133), so the statistics that survive a
            # step are rank 0's: one momentum update from its sub-batch. The other processes'
            # forwards therefore normalise with their batch statistics but leave the running
            # statistics (and num_batches_tracked) alone.
            with contextlib.nullcontext() if i == 0 else _running_stats_untouched(self):
                parts.append(self._process_loss(normal[i * per:(i + 1) * per],
                                                abnormal[i * per:(i + 1) * per]))
        return {key: torch.stack([p[key] for p in parts]).mean() for key in parts[0]}

    def _score_video(self, x: Tensor) -> Tensor:
        return self.forward(x[None])[1][0]

    # -- official checkpoints ----------------------------------------------------------------
    def _official_branches(self, mapped: Mapping[str, Tensor]) -> int:
        """How many patch branches an official checkpoint holds: a stage-k ``best_auc.pkl`` is
        the ``Model`` of ``model_name='ssrl_stagek'``, which builds one ``Aggregate_patch`` /
        ``patch_to_clip`` / ``linear_out`` per grid of its ``--multi_patch_size`` (model.py:205-217;
        stage 1 builds none, model.py:202-203), i.e. k - 1 branches, the grids in order
        (scripts/train_ssrl_stage2..4.sh: 23, then 23 35, then 23 35 47)."""
        held = {int(m.group(2)) for k in mapped
                if (m := _BRANCH_KEY.match(k)) is not None}
        n = len(held)
        if held != set(range(n)):
            raise KeyError(f"ssrl: the official checkpoint holds patch branches {sorted(held)}; "
                           f"a stage-k checkpoint holds branches 0..k-2 (one per grid, in order)")
        return n

    def official_missing_ok(self, mapped: Mapping[str, Tensor]) -> set[str]:
        """The stage counter (not in official checkpoints) and the branches of the stages after
        the checkpoint's: a stage-1 checkpoint loads into a model with patch grids."""
        n = self._official_branches(mapped)
        later = {k for k in self.state_dict()
                 if (m := _BRANCH_KEY.match(k)) is not None and int(m.group(2)) >= n}
        return {"step"} | later

    def after_official_load(self, mapped: Mapping[str, Tensor]) -> None:
        """The stage is the one the checkpoint was trained in (1 + its branches): the model sits
        at the end of that stage and scores with exactly those branches, as the official
        ``Model`` of that stage does."""
        self.enter_stage(self._official_branches(mapped) + 1)


@contextlib.contextmanager
def _running_stats_untouched(model: nn.Module):
    """Training-mode BatchNorms normalise with the batch statistics (their output is unchanged)
    but neither update their running statistics nor count the batch: ``track_running_stats``
    off for the duration (``_BatchNorm.forward`` then passes no running buffers to
    ``F.batch_norm``). BatchNorms in eval mode (SSRL's frozen ones) are not affected."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
           and m.training and m.track_running_stats]
    for m in bns:
        m.track_running_stats = False
    try:
        yield
    finally:
        for m in bns:
            m.track_running_stats = True


_BRANCH_KEY = re.compile(r"^(aggregate_patch|patch_to_clip|linear_out)\.(\d+)\.")


def load_official_state_dict(state: Mapping[str, Any]) -> dict[str, Tensor]:
    """SSRL checkpoint (``Model.state_dict()`` of any stage, ``best_auc.pkl``) to ours:
    ``Aggregate_clip`` / ``Aggregate_patch`` lower-cased, the classifier's fc1/fc2/fc3 to
    ``classifier.0/3/6``; ``patch_to_clip`` and ``linear_out`` keep their names. The stage
    counter is not in it: load with ``base.load_official``, which sets the stage from the
    branches the checkpoint holds (``SSRLModel.after_official_load``), so a checkpoint of any
    stage loads into the default model (grids 23, 35, 47) and scores as that stage's model."""
    return rename_official(state, renames=(
        ("Aggregate_clip.", "aggregate_clip."), ("Aggregate_patch.", "aggregate_patch."),
        ("classfier.fc1.", "classifier.0."), ("classfier.fc2.", "classifier.3."),
        ("classfier.fc3.", "classifier.6."), ("classfier.", "classifier.")))


SPEC = register(MethodSpec(
    name="ssrl",
    paper="Li, Liu, Jiao. Scale-aware Spatio-temporal Relation Learning for Video Anomaly "
          "Detection. ECCV 2022",
    official_code="https://github.com/nutuniv/SSRL",
    hparams=SSRLHParams,
    accepts=("i3d",),
    build=SSRLModel,
    reads_patches=True,
    load_official_state_dict=load_official_state_dict,
    # 2 (issue 13): the top-k selection dropout masks drawn abnormal-first, as the official code;
    # BatchNorm running statistics updated once per step (rank 0's), as DDP keeps them
    version="2",
))
