"""Method interface shared by every WSVAD method: hyper-parameters, spec, model, optimizer.

A method is a :class:`MethodSpec` (what the registry stores) whose ``build`` returns a
:class:`WSVADModel`. Training and evaluation loops only ever talk to this interface:

* ``model.loss(normal, abnormal)`` with two ``(B, C, S, D)`` tensors (B videos per class, C crops,
  S segments, D feature dim) returns a dict whose ``"loss"`` is the total to back-propagate; the
  other keys are the weighted terms (they sum to ``"loss"``) for logging.
* ``model.score(x)`` with ``(N, C, T, D)`` returns ``(N, T)`` snippet scores in [0, 1], crops
  combined the way the method's official test code does it. It runs in eval mode without grad and
  restores the previous mode, so it can be called in the middle of training.
"""

from __future__ import annotations

import abc
import contextlib
import dataclasses
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import numpy as np
import torch
from torch import Tensor, nn

from wsvad_core.cards import MethodCard, hp, hparam_specs

__all__ = [
    "TrainHParams",
    "MethodSpec",
    "WSVADModel",
    "make_optimizer",
    "hparams_to_dict",
    "load_official",
    "rename_official",
]


@dataclass
class TrainHParams:
    """Fields every method has, with their valid ranges (``cards.hp``; a subclass that only
    changes a default keeps the range declared here). Subclasses set their official values."""

    batch_size: int = hp(32, ge=1)  # videos *per class* per step (batch_size normal + abnormal)
    lr: float = hp(1e-3, gt=0)
    weight_decay: float = hp(0.0, ge=0)
    optimizer: str = hp("adam", choices=("adam", "adamw", "adagrad", "sgd"))
    eps: float = hp(1e-8, gt=0)  # optimizer epsilon (Adam default; Keras Adagrad's epsilon)
    max_steps: int = hp(15000, ge=1)
    n_segments: int = hp(32, ge=1)  # S: segments per training video after the segment policy
    seed: int = hp(0, ge=0)
    eval_every: int = hp(0, ge=0)  # evaluate every N steps (0: only at the end); the unit: eval_schedule
    eval_min_step: int = hp(0, ge=0)  # ... and only after this step (official repos skip early steps)
    # The data order, the test schedule and the LR schedule are the shared loop's
    # (training/loop.py, training/data.py); a method declares the official ones here.
    # pairing: "independent" = two shuffled drop-last loaders, each restarted when exhausted (RTFM
    # main.py:57-63); "zipped" = one epoch is zip(normal loader, abnormal loader), both reshuffled
    # every epoch (VadCLIP ucf_train.py:66-71); "in_order" = zipped and not shuffled: normal batch j
    # with abnormal batch j in list order every epoch (MGFN main.py:39-44, train.py:81-82)
    pairing: str = hp("independent", choices=("independent", "zipped", "in_order"))
    # sample_unit: "video" = a sample is a video with all its crops (B, C, S, D); "crop" = one row
    # per (video, crop), as the per-crop training lists of VadCLIP (batches (B, 1, S, D))
    sample_unit: str = hp("video", choices=("video", "crop"))
    # eval_schedule: "steps" = after step s when s % eval_every == 0 (RTFM main.py:65); "in_epoch"
    # = after 0-based in-epoch iteration i when i % eval_every == 0 and i != 0 (VadCLIP
    # ucf_train.py:98-99); "epoch_end" = after every eval_every-th epoch (MGFN main.py:87). The last
    # step is scored too when nothing was scored before it (so that a best checkpoint exists).
    eval_schedule: str = hp("steps", choices=("steps", "in_epoch", "epoch_end"))
    # MultiStepLR: lr x lr_gamma at the end of each epoch listed (VadCLIP ucf_train.py:48, 113)
    lr_milestones: tuple[int, ...] = hp((), ge=1)
    lr_gamma: float = hp(0.1, gt=0)
    # after every epoch (and at the end) the best-on-test weights are reloaded (VadCLIP
    # ucf_train.py:116-117, 119-120); the optimizer state is kept, as there
    reload_best_each_epoch: bool = hp(False)

    def patch_grids(self) -> tuple[tuple[int, int], ...]:
        """The patch grids the method reads beside its snippet features, in crop-axis order
        (methods with ``reads_patches``)."""
        return ()


def hparams_to_dict(hparams: TrainHParams) -> dict[str, Any]:
    """JSON-friendly dict (tuples become lists) for logs, Snakemake params and metrics.json."""
    out = {}
    for k, v in dataclasses.asdict(hparams).items():
        out[k] = list(v) if isinstance(v, tuple) else v
    return out


@dataclass(frozen=True)
class MethodSpec:
    """Everything the pipeline needs to know about one method; :meth:`card` is the torch-free
    part the workflow reads (``wsvad_core/cards.py``)."""

    name: str
    paper: str
    official_code: str | None  # repository URL; None: built from the paper alone
    hparams: type[TrainHParams]  # dataclass type whose defaults are the official values
    # build(hparams, feat_dim) -> model (usually the model class itself); methods that need a
    # dictionary get it too: build(hparams, feat_dim, dictionary=...)
    build: Callable[..., "WSVADModel"]
    # "meanpool" | "resize" | "pad_pool" (see data/segments.py); the default is RTFM's
    # process_feat, which most methods inherit
    segment_policy: str = "meanpool"
    # feature kinds the method trains on (a backbone card's ``kind``)
    accepts: tuple[str, ...] = ("i3d", "clip")
    needs_dictionary: bool = False
    # reads the patch feature sets of ``hparams.patch_grids()`` beside its snippet features
    reads_patches: bool = False
    load_official_state_dict: Callable[[Mapping[str, Tensor]], dict[str, Tensor]] | None = None
    # class-aware methods: training/run.py gives loss() ``abnormal_classes`` (each abnormal
    # video's index into hparams.class_names, from the manifest's ``class`` column)
    needs_class_labels: bool = False
    # prepare_overrides(overrides, store_attrs, manifest) -> overrides: run-time values a method
    # takes from the data (class names, the CLIP weights file); saved with the checkpoint
    prepare_overrides: Callable[[dict, Mapping, Any], dict] | None = None
    # bump when a change to the method's code changes its results: a param of the train rule,
    # so the runs of this method (and only those) are redone
    version: str = "1"

    def card(self) -> MethodCard:
        return MethodCard(name=self.name, paper=self.paper, official_code=self.official_code,
                          accepts=tuple(self.accepts), needs_dictionary=self.needs_dictionary,
                          reads_patches=self.reads_patches, version=str(self.version),
                          hparams=hparam_specs(self.hparams))


class WSVADModel(nn.Module, metaclass=abc.ABCMeta):
    """Base class of method models.

    Subclasses implement :meth:`loss` and :meth:`_score_video`; :meth:`score` handles device, dtype,
    eval mode and the loop over videos so that long test videos are scored one at a time.
    """

    # Live scoring (wsvad_core/live/): a ``causal`` method scores each snippet from that snippet
    # alone, so a stream is scored as it arrives and the scores are the offline ones. Any other
    # method mixes snippets along time; live, it scores a sliding window of the last W snippets
    # (``live_window`` by default) and keeps the score of the newest. Each method class states
    # its value and why; the default is the safe one.
    causal: bool = False

    def __init__(self, hparams: TrainHParams, feat_dim: int):
        super().__init__()
        self.hparams = hparams
        self.feat_dim = int(feat_dim)

    def live_window(self) -> int:
        """Default W of the live sliding window: the number of segments the method trains on,
        the temporal context its layers were fitted to (1 for a causal method)."""
        return 1 if self.causal else max(1, int(self.hparams.n_segments))

    # -- helpers -----------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        for p in self.parameters():
            return p.device
        for b in self.buffers():
            return b.device
        return torch.device("cpu")

    def _as_input(self, x: Tensor | np.ndarray, name: str = "x") -> Tensor:
        x = torch.as_tensor(x)
        if x.ndim != 4:
            raise ValueError(f"{name}: expected a 4-d (videos, crops, time, dim) array, got shape "
                             f"{tuple(x.shape)}")
        if x.shape[-1] != self.feat_dim:
            raise ValueError(f"{name}: feature dim {x.shape[-1]} != model feat_dim {self.feat_dim}")
        return x.to(device=self.device, dtype=torch.float32)

    def _check_pair(self, normal: Tensor, abnormal: Tensor) -> tuple[Tensor, Tensor]:
        normal = self._as_input(normal, "normal")
        abnormal = self._as_input(abnormal, "abnormal")
        if normal.shape != abnormal.shape:
            raise ValueError(f"normal {tuple(normal.shape)} and abnormal {tuple(abnormal.shape)} "
                             "batches must have the same shape (paired batches, as the official "
                             "loops draw batch_size videos of each class)")
        return normal, abnormal

    # -- interface ---------------------------------------------------------------------------
    def loss(self, normal: Tensor, abnormal: Tensor, **kwargs) -> dict[str, Tensor]:
        """Training loss on paired (B, C, S, D) batches (checked here, then :meth:`_loss`);
        ``"loss"`` is the total. Class-aware methods also get ``abnormal_classes``."""
        normal, abnormal = self._check_pair(normal, abnormal)
        return self._loss(normal, abnormal, **kwargs)

    @abc.abstractmethod
    def _loss(self, normal: Tensor, abnormal: Tensor) -> dict[str, Tensor]:
        """The method's loss on checked float32 batches on the model device."""

    @abc.abstractmethod
    def _score_video(self, x: Tensor) -> Tensor:
        """(C, T, D) float32 on the model device -> (T,) scores in [0, 1]. Called in eval/no-grad."""

    def official_missing_ok(self, mapped: Mapping[str, Tensor]) -> set[str]:
        """Keys of this model an official checkpoint (``mapped``: already under wsvad's names)
        may lack, for :func:`load_official`: by default ``_not_in_official_checkpoint`` (e.g. S3R's
        dictionary, which comes from its own .npy). SSRL also lets a checkpoint of an earlier
        stage lack the later stages' branches."""
        return set(getattr(self, "_not_in_official_checkpoint", ()))

    def after_official_load(self, mapped: Mapping[str, Tensor]) -> None:
        """Called by :func:`load_official` once ``mapped`` is loaded (e.g. SSRL sets its stage
        from the branches the checkpoint held). Default: nothing."""

    def before_step(self) -> None:
        """Called by the training loop between ``backward()`` and ``optimizer.step()`` (e.g. to
        clip gradients as an official train.py does there). Default: nothing."""

    def after_step(self) -> None:
        """Called by the training loop after ``optimizer.step()`` (e.g. to advance a stage
        counter). Default: nothing."""

    def score(self, x: Tensor | np.ndarray) -> Tensor:
        """(N, C, T, D) -> (N, T) snippet anomaly scores in [0, 1] (float32, on the model device)."""
        return self._score_each(x, self._score_video)

    @contextlib.contextmanager
    def scoring_pass(self):
        """One pass over a test set (``evaluation.evaluate.score_videos`` scores its videos one
        :meth:`score` call each inside it). Methods whose test draws random numbers (CLIP-TSA's
        hard-attention noise) draw them from one seeded stream across the pass's videos, so each
        video gets fresh noise and the pass is reproducible. Default: nothing."""
        yield

    @torch.no_grad()
    def _score_each(self, x: Tensor | np.ndarray, video_fn) -> Tensor:
        """``video_fn`` ((C, T, D) -> (T,)) on every video of ``x``, in eval mode without grad;
        the previous mode is restored."""
        x = self._as_input(x)
        was_training = self.training
        self.eval()
        try:
            out = [video_fn(x[i]) for i in range(x.shape[0])]
        finally:
            self.train(was_training)
        if not out:
            return torch.zeros(0, x.shape[2], device=x.device)
        return torch.stack(out, 0)


def make_optimizer(model: nn.Module, hparams: TrainHParams) -> torch.optim.Optimizer:
    """The optimizer named by ``hparams.optimizer`` with the method's lr / weight decay / eps."""
    name = hparams.optimizer.lower()
    params = [p for p in model.parameters() if p.requires_grad]
    # torch's fused Adam / AdamW kernel: the same update as the per-tensor default, one pass
    # over each parameter instead of a dozen (10x faster on a CPU: 18 vs 187 ms per step for
    # RTFM's 22 M parameters, a fifth of its demo step)
    if name == "adam":
        return torch.optim.Adam(params, lr=hparams.lr, weight_decay=hparams.weight_decay,
                                eps=hparams.eps, fused=True)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=hparams.lr, weight_decay=hparams.weight_decay,
                                 eps=hparams.eps, fused=True)
    if name == "adagrad":
        return torch.optim.Adagrad(params, lr=hparams.lr, weight_decay=hparams.weight_decay,
                                   eps=hparams.eps)
    if name == "sgd":
        return torch.optim.SGD(params, lr=hparams.lr, weight_decay=hparams.weight_decay,
                               momentum=getattr(hparams, "momentum", 0.0))
    raise ValueError(f"unknown optimizer {hparams.optimizer!r}; valid: adam, adamw, adagrad, sgd")


def rename_official(state: Mapping[str, Any], renames: tuple[tuple[str, str], ...] = (),
                    drop: tuple[str, ...] = ()) -> dict[str, Tensor]:
    """An official state dict under wsvad's names, for ``MethodSpec.load_official_state_dict``:
    a DataParallel ``module.`` prefix dropped, keys starting with a ``drop`` prefix left out, the
    first ``(old, new)`` of ``renames`` whose ``old`` prefix a key starts with replaced by
    ``new``; values as tensors."""
    out = {}
    for k, v in state.items():
        k = k.removeprefix("module.")
        if drop and k.startswith(drop):
            continue
        for old, new in renames:
            if k.startswith(old):
                k = new + k[len(old):]
                break
        out[k] = torch.as_tensor(v)
    return out


def load_official(spec: MethodSpec, model: WSVADModel, state_dict: Mapping[str, Any]
                  ) -> tuple[list[str], list[str]]:
    """Load an official checkpoint's state dict into ``model`` through the spec's name mapping.

    Returns ``(missing, unexpected)``; the keys the model says an official checkpoint may lack
    (:meth:`WSVADModel.official_missing_ok`: e.g. S3R's dictionary, which comes from its own .npy;
    SSRL's stage counter and later-stage branches) may be missing, anything else raises. Then
    :meth:`WSVADModel.after_official_load` (SSRL: the stage from the branches present).
    """
    if spec.load_official_state_dict is None:
        raise ValueError(f"method {spec.name!r} has no official state-dict loader")
    mapped = spec.load_official_state_dict(state_dict)
    allowed_missing = model.official_missing_ok(mapped)
    result = model.load_state_dict(mapped, strict=False)
    missing = [k for k in result.missing_keys if k not in allowed_missing]
    if missing or result.unexpected_keys:
        raise KeyError(f"{spec.name}: official state dict does not match: missing {missing}, "
                       f"unexpected {list(result.unexpected_keys)}")
    model.after_official_load(mapped)
    return list(result.missing_keys), list(result.unexpected_keys)
