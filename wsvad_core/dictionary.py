"""S3R's task-specific dictionary, learned from the normal training videos.

What the official script does (louisYen/S3R data/ucf-crime/ucf_crime_dictionary_learning.py and
data/shanghaitech/shanghaitech_dictionary_learning.py, ``dictionary_learning``):

1. Input: the normal training videos' features as (V videos, N crops, T=32 segments, C), i.e.
   all crops of each video quantised to 32 segments; they are averaged over crops *and*
   segments: one C-d vector per normal video (:func:`normal_training_matrix`).
2. Atom count: ``n_slots = int(np.around(V * R / 100.))`` with R = 50 (UCF-Crime) or 90
   (ShanghaiTech): a percentage of the number of normal training videos (:func:`n_atoms_for`).
3. ``MiniBatchDictionaryLearning(n_components=n_slots, transform_algorithm='omp',
   transform_n_nonzero_coefs=2, random_state=42, n_iter=100, batch_size=32)`` (alpha 1 and
   fit_algorithm 'lars' by default) and ``fit_transform`` on the **transposed** matrix
   ``x = video_features.T`` (C x V: the channels are the samples, the videos the features); the
   saved dictionary is the OMP code matrix transposed, (n_slots, C). Each channel is therefore
   coded with at most 2 non-zero coefficients, i.e. every column of the dictionary has <= 2
   non-zeros. :func:`learn_dictionary` reproduces this by default (``layout="official"``);
   ``layout="components"`` gives the textbook alternative (fit on the V x C matrix, atoms =
   ``components_``) for comparison.

``n_iter=100`` in the scikit-learn of that time meant 100 mini-batch updates (batches cycled over
the once-shuffled data, dictionary initialised from a randomized SVD of the whole matrix). Current
scikit-learn's ``max_iter`` counts epochs instead, so the 100 updates are run here with
``partial_fit`` on the same batch sequence.
"""

from __future__ import annotations

import itertools
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import sklearn
from sklearn.decomposition import MiniBatchDictionaryLearning
from sklearn.utils import gen_batches
from sklearn.utils.extmath import randomized_svd

from .data.segments import apply_segment_policy

__all__ = [
    "build_dictionary",
    "OFFICIAL_PERCENTAGE",
    "OFFICIAL_SEED",
    "learn_dictionary",
    "n_atoms_for",
    "normal_training_matrix",
]

# R in the official scripts: ucf_crime_dictionary_learning.py ratio=50 (cfg file "50pct"),
# shanghaitech_dictionary_learning.py ratio=90 (cfg file "90pct"). XD-Violence has no official
# S3R dictionary; 50 (the UCF-Crime script's value) is the default elsewhere.
OFFICIAL_PERCENTAGE: dict[str, float] = {"ucf_crime": 50.0, "shanghaitech": 90.0}
DEFAULT_PERCENTAGE = 50.0
OFFICIAL_SEED = 42  # DictArgumentParser seed = 42
OFFICIAL_N_ITER = 100  # max_iter = 100 passed as n_iter (mini-batch steps)
OFFICIAL_BATCH_SIZE = 32  # DictArgumentParser batch_size = 32
OFFICIAL_N_NONZERO = 2  # transform_n_nonzero_coefs = 2
OFFICIAL_ALPHA = 1.0  # MiniBatchDictionaryLearning default alpha
OFFICIAL_FIT_ALGORITHM = "lars"  # MiniBatchDictionaryLearning default fit_algorithm


def n_atoms_for(n_normal_videos: int, percentage: float = DEFAULT_PERCENTAGE) -> int:
    """Official atom count: ``int(np.around(V * R / 100.))``; ``percentage`` R is in percent
    (50 for UCF-Crime, 90 for ShanghaiTech), never below 1 atom."""
    if n_normal_videos < 1:
        raise ValueError(f"need at least one normal training video, got {n_normal_videos}")
    if not 0 < percentage <= 100:
        raise ValueError(f"percentage is in percent, 0 < R <= 100 (official: 50 UCF-Crime, "
                         f"90 ShanghaiTech); got {percentage}")
    return max(1, int(np.around(n_normal_videos * percentage / 100.0)))


def learn_dictionary(features: np.ndarray, n_atoms: int, seed: int = OFFICIAL_SEED, *,
                     layout: str = "official", n_iter: int = OFFICIAL_N_ITER,
                     batch_size: int = OFFICIAL_BATCH_SIZE,
                     n_nonzero_coefs: int = OFFICIAL_N_NONZERO,
                     alpha: float = OFFICIAL_ALPHA) -> tuple[np.ndarray, dict[str, Any]]:
    """Learn S3R's dictionary from ``features`` (N normal videos, D), one row per video.

    Returns ``(atoms (n_atoms, D) float32, info)``; ``info`` records every setting and the
    sparsity of the OMP codes.
    """
    X = np.asarray(features, dtype=np.float64)  # the old sklearn ran the online loop in float64
    if X.ndim != 2 or X.shape[0] < 1 or X.shape[1] < 1:
        raise ValueError(f"features must be a non-empty (n_videos, dim) matrix, got {X.shape}")
    if not np.isfinite(X).all():
        raise ValueError("features contain NaN or inf")
    if layout not in ("official", "components"):
        raise ValueError(f"layout must be 'official' or 'components', got {layout!r}")
    n_atoms = int(n_atoms)
    if n_atoms < 1:
        raise ValueError(f"n_atoms must be >= 1, got {n_atoms}")
    n_videos, dim = X.shape
    # official: samples are the D channels, features the N videos
    fit_X = X.T.copy() if layout == "official" else X
    n_samples = fit_X.shape[0]
    nnz = min(int(n_nonzero_coefs), n_atoms)  # OMP cannot pick more atoms than exist
    bs = n_samples if batch_size < 0 else int(batch_size)  # official: batch_size < 0 -> all

    rng = np.random.RandomState(seed)
    # init as sklearn does: randomized SVD of the whole matrix, zero rows if too few components
    _, S, Vt = randomized_svd(fit_X, n_atoms, random_state=rng)
    init = (S[:, None] * Vt)[:n_atoms]
    if init.shape[0] < n_atoms:
        init = np.vstack([init, np.zeros((n_atoms - init.shape[0], init.shape[1]))])
    X_train = fit_X.copy()
    rng.shuffle(X_train)  # shuffle=True, once, with the same random state

    learner = MiniBatchDictionaryLearning(
        n_components=n_atoms, alpha=alpha, fit_algorithm=OFFICIAL_FIT_ALGORITHM, batch_size=bs,
        shuffle=False, dict_init=init, transform_algorithm="omp",
        transform_n_nonzero_coefs=nnz, random_state=rng)
    batches = itertools.cycle(gen_batches(n_samples, bs))
    for _, batch in zip(range(int(n_iter)), batches):
        learner.partial_fit(X_train[batch])

    codes = learner.transform(fit_X)  # (n_samples, n_atoms), OMP with <= nnz non-zeros per row
    if layout == "official":
        atoms = codes.T  # (n_atoms, D): the saved "dictionary" is the transposed code matrix
    else:
        atoms = learner.components_
    recon = codes @ learner.components_
    nz = np.count_nonzero(codes, axis=1)
    info: dict[str, Any] = {
        "method": "sklearn.decomposition.MiniBatchDictionaryLearning",
        "sklearn_version": sklearn.__version__,
        "layout": layout,
        "fit_matrix": "features.T (dim x videos)" if layout == "official"
                      else "features (videos x dim)",
        "n_videos": int(n_videos),
        "dim": int(dim),
        "n_atoms": n_atoms,
        "seed": int(seed),
        "n_iter_minibatch_steps": int(n_iter),
        "batch_size": int(bs),
        "alpha": float(alpha),
        "fit_algorithm": OFFICIAL_FIT_ALGORITHM,
        "dict_init": "randomized_svd",
        "shuffle": True,
        "transform_algorithm": "omp",
        "transform_n_nonzero_coefs": int(nnz),
        "code_nonzeros_max": int(nz.max()),
        "code_nonzeros_mean": float(nz.mean()),
        "relative_reconstruction_error": float(np.linalg.norm(fit_X - recon)
                                               / max(np.linalg.norm(fit_X), 1e-12)),
    }
    return atoms.astype(np.float32), info


def _read_manifest(manifest: Any):
    from .data.manifest import read_manifest

    return read_manifest(manifest) if isinstance(manifest, (str, Path)) else manifest


def normal_training_matrix(store: Any, manifest: Any, n_segments: int = 32,
                           policy: str = "resize", return_ids: bool = False):
    """One row per normal training video, as the official script's input.

    ``store``: a feature store (``store[video_id] -> (C, T, D)``); ``manifest``: the manifest
    DataFrame (or its CSV path) with ``video_id, split, label``. Each normal training video is
    quantised to ``n_segments`` segments with S3R's training policy (cv2 linear resize) and
    averaged over all crops and segments. Returns ``(N, D)`` float32 (and the ids on request).
    """
    df = _read_manifest(manifest)
    missing_cols = {"video_id", "split", "label"} - set(df.columns)
    if missing_cols:
        raise ValueError(f"manifest lacks column(s) {sorted(missing_cols)}")
    rows = df[(df["split"] == "train") & (df["label"].astype(int) == 0)]
    ids = [str(v) for v in rows["video_id"]]
    if not ids:
        raise ValueError("the manifest has no normal training videos (split == 'train', label 0)")
    available = set(getattr(store, "video_ids", ids))
    absent = [v for v in ids if v not in available]
    if absent:
        raise KeyError(f"{len(absent)} normal training video(s) missing from the feature store, "
                       f"e.g. {absent[:3]}")
    out = []
    for vid in ids:
        arr = np.asarray(store[vid], dtype=np.float32)
        if arr.ndim == 2:
            arr = arr[None]
        seg = apply_segment_policy(policy, arr, n_segments)  # (C, S, D)
        out.append(seg.mean(axis=(0, 1)))
    mat = np.stack(out, 0).astype(np.float32)
    return (mat, ids) if return_ids else mat


def build_dictionary(manifest: str | Path, store_dir: str | Path, atoms_out: str | Path,
                     info_out: str | Path, percentage: float = DEFAULT_PERCENTAGE,
                     seed: int = OFFICIAL_SEED, layout: str = "official",
                     n_segments: int = 32) -> tuple[np.ndarray, dict[str, Any]]:
    """The ``dictionary`` rule: normal training videos of ``manifest`` in the store at
    ``store_dir`` -> atoms ``.npy`` (n_atoms, D) float32 and an info ``.json``.

    ``percentage`` is R of the official rule, in percent (50 UCF-Crime, 90 ShanghaiTech).
    """
    from .features.store import open_store

    log = logging.getLogger("wsvad.dictionary")
    if percentage < 1:
        log.warning("dictionary percentage %s is below 1 %%: it is a percentage (official "
                    "S3R: 50 for UCF-Crime, 90 for ShanghaiTech), not a fraction", percentage)
    store = open_store(store_dir)
    X, ids = normal_training_matrix(store, manifest, n_segments=n_segments, return_ids=True)
    n_atoms = n_atoms_for(len(ids), percentage)
    log.info("learning %d atoms from %d normal training videos (%s %%), dim %d",
             n_atoms, len(ids), percentage, X.shape[1])
    atoms, info = learn_dictionary(X, n_atoms, seed=seed, layout=layout)
    info.update({
        "percentage": float(percentage),
        "n_atoms_rule": "int(np.around(n_normal_videos * percentage / 100)), at least 1 "
                        "(S3R *_dictionary_learning.py)",
        "input": f"per-video mean over crops and {n_segments} resized segments "
                 "(S3R regular features)",
        "n_segments": int(n_segments),
        "store_attrs": {k: v for k, v in store.attrs.items() if k != "videos"},
    })
    atoms_out, info_out = Path(atoms_out), Path(info_out)
    atoms_out.parent.mkdir(parents=True, exist_ok=True)
    info_out.parent.mkdir(parents=True, exist_ok=True)
    with open(atoms_out, "wb") as f:
        np.save(f, atoms)
    info_out.write_text(json.dumps(info, indent=2, sort_keys=True, default=str) + "\n")
    return atoms, info
