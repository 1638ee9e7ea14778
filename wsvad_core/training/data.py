"""Training input: each video's features are read from the Zarr store once, reduced to the
method's segments, and held compactly in float16 (official loops re-read and re-pool a .npy per
item per step, which dominates a CPU training step and an eager float32 load costs ~13 GB on
UCF-Crime)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from wsvad_core.data.segment_reader import video_segments


@dataclass
class TrainingSet:
    normal: torch.Tensor      # (Nn, C, S, D) float16
    abnormal: torch.Tensor    # (Na, C, S, D) float16
    normal_ids: list[str]
    abnormal_ids: list[str]
    # (Na,) long: each abnormal video's index into the method's class_names (class-aware methods)
    abnormal_classes: torch.Tensor | None = None

    @property
    def nbytes(self) -> int:
        return self.normal.numel() * 2 + self.abnormal.numel() * 2


def training_video_ids(manifest: pd.DataFrame) -> tuple[list[str], list[str]]:
    train = manifest[manifest["split"] == "train"]
    normal = train.loc[train["label"] == 0, "video_id"].astype(str).tolist()
    abnormal = train.loc[train["label"] == 1, "video_id"].astype(str).tolist()
    if not normal or not abnormal:
        raise ValueError(
            f"training needs normal and abnormal videos; the manifest has {len(normal)} normal "
            f"and {len(abnormal)} abnormal training videos"
        )
    return normal, abnormal


def abnormal_class_indices(manifest: pd.DataFrame, video_ids: list[str],
                           class_names) -> torch.Tensor:
    """Index into ``class_names`` of each video's manifest ``class`` (class-aware methods)."""
    if "class" not in manifest.columns:
        raise ValueError("the manifest has no 'class' column; class-aware methods need it")
    names = list(class_names)
    cls = dict(zip(manifest["video_id"].astype(str), manifest["class"].astype(str)))
    unknown = sorted({cls[v] for v in video_ids if cls[v] not in names})
    if unknown:
        raise ValueError(f"manifest classes {unknown} are not in the method's class_names {names}")
    return torch.tensor([names.index(cls[v]) for v in video_ids], dtype=torch.long)


def load_training_set(store, manifest: pd.DataFrame, policy: str, n_segments: int,
                      progress: bool = True, class_names=None) -> TrainingSet:
    """Gather the segments of every training video; ``store`` is a FeatureStore. With
    ``class_names`` the abnormal videos' class indices come along (``abnormal_classes``)."""
    normal_ids, abnormal_ids = training_video_ids(manifest)
    missing = [v for v in normal_ids + abnormal_ids if v not in store]
    if missing:
        raise KeyError(f"{len(missing)} training videos are missing from the feature store "
                       f"{store.path}: {missing[:5]}")

    def stack(ids: list[str], desc: str) -> torch.Tensor:
        crops, _, dim = store.shape(ids[0]) if hasattr(store, "shape") else np.shape(store[ids[0]])
        out = np.empty((len(ids), crops, n_segments, dim), dtype=np.float16)
        for i, vid in enumerate(tqdm(ids, desc=desc, disable=not progress, leave=False)):
            # long videos segment by segment: peak RAM stays near the float16 segments held
            out[i] = video_segments(store, vid, policy, n_segments, dim=dim, crops=crops)
        return torch.from_numpy(out)

    classes = None if class_names is None else abnormal_class_indices(manifest, abnormal_ids,
                                                                        class_names)
    return TrainingSet(stack(normal_ids, "normal videos"), stack(abnormal_ids, "abnormal videos"),
                       normal_ids, abnormal_ids, classes)


class PairedSampler:
    """Yields (normal_idx, abnormal_idx) batches as two shuffled, drop-last loaders would
    (each class reshuffled when exhausted), from one seeded generator: ``pairing:
    independent``, the RTFM family's loop (RTFM main.py:57-63 re-creates each loader's iterator
    when its own batches run out)."""

    def __init__(self, n_normal: int, n_abnormal: int, batch_size: int, seed: int):
        self.sizes = (n_normal, n_abnormal)
        self.batch = {0: min(batch_size, n_normal), 1: min(batch_size, n_abnormal)}
        self.gen = torch.Generator().manual_seed(seed)
        self.perm = [torch.empty(0, dtype=torch.long), torch.empty(0, dtype=torch.long)]
        self.pos = [0, 0]

    @property
    def epoch_steps(self) -> int:
        """Steps of one pass over the smaller class (``min(len(nloader), len(aloader))``)."""
        return min(self.sizes[0] // self.batch[0], self.sizes[1] // self.batch[1])

    def _take(self, k: int) -> torch.Tensor:
        b = self.batch[k]
        if self.pos[k] + b > len(self.perm[k]):
            self.perm[k] = torch.randperm(self.sizes[k], generator=self.gen)
            self.pos[k] = 0
        idx = self.perm[k][self.pos[k]:self.pos[k] + b]
        self.pos[k] += b
        return idx

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self._take(0), self._take(1)

    def state_dict(self) -> dict:
        return {"gen": self.gen.get_state(), "perm": self.perm, "pos": list(self.pos)}

    def load_state_dict(self, state: dict) -> None:
        self.gen.set_state(state["gen"])
        self.perm = list(state["perm"])
        self.pos = list(state["pos"])


class EpochPairedSampler:
    """Batches of ``zip(normal_loader, abnormal_loader)`` over drop-last loaders, both restarted
    at every epoch: an epoch is ``min(n_normal // batch, n_abnormal // batch)`` steps and the
    longer class's remaining batches are skipped. ``shuffle``: both loaders reshuffle every
    epoch (``pairing: zipped``, VadCLIP ucf_train.py:66-71 with ``shuffle=True``, :137-139); else
    normal batch j is paired with abnormal batch j in list order every epoch (``pairing:
    in_order``, MGFN main.py:39-44 ``shuffle=False``, train.py:81-82)."""

    def __init__(self, n_normal: int, n_abnormal: int, batch_size: int, seed: int,
                 shuffle: bool = True):
        self.sizes = (n_normal, n_abnormal)
        self.batch = (min(batch_size, n_normal), min(batch_size, n_abnormal))
        self.shuffle = shuffle
        self.gen = torch.Generator().manual_seed(seed)
        self.perm = [torch.arange(n) for n in self.sizes]
        self.pos = 0

    @property
    def epoch_steps(self) -> int:
        return min(self.sizes[0] // self.batch[0], self.sizes[1] // self.batch[1])

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.pos == 0 and self.shuffle:  # a new epoch: iter() on both shuffled loaders
            self.perm = [torch.randperm(n, generator=self.gen) for n in self.sizes]
        j = self.pos
        out = tuple(p[j * b:(j + 1) * b] for p, b in zip(self.perm, self.batch))
        self.pos = (self.pos + 1) % self.epoch_steps
        return out

    def state_dict(self) -> dict:
        return {"gen": self.gen.get_state(), "perm": self.perm, "pos": self.pos}

    def load_state_dict(self, state: dict) -> None:
        self.gen.set_state(state["gen"])
        self.perm = list(state["perm"])
        self.pos = int(state["pos"])


def make_sampler(hparams, n_normal: int, n_abnormal: int):
    """The sampler of ``hparams.pairing`` (default ``independent``) over ``n_normal`` and
    ``n_abnormal`` samples (videos, or (video, crop) rows with ``sample_unit: crop``)."""
    pairing = getattr(hparams, "pairing", "independent")
    if pairing == "independent":
        return PairedSampler(n_normal, n_abnormal, hparams.batch_size, hparams.seed)
    if pairing in ("zipped", "in_order"):
        return EpochPairedSampler(n_normal, n_abnormal, hparams.batch_size, hparams.seed,
                                  shuffle=pairing == "zipped")
    raise ValueError(f"pairing must be 'independent', 'zipped' or 'in_order', got {pairing!r}")
