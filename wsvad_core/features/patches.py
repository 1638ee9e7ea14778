"""Patch-level features: a backbone run on a grid of spatial patches of every frame (SSRL's
multi-scale patches, the patch stage of two-stage methods), and a view that serves several
stores as one.

Extraction (``features/transforms.py: preprocess(..., patch_grid=(rows, cols))``): the decoded
frame is resized so that its short side is the recipe's ``resize`` (aspect kept, as for every
feature set), cut into ``rows x cols`` non-overlapping cells whose borders are
``floor(i * H / rows)`` and ``floor(j * W / cols)`` (so the cells tile the frame exactly, with no
overlap and no remainder), and every cell is resized (bilinear, antialiased) to
``crop_size x crop_size`` and embedded on its own, one view per cell (no ten-crop). SSRL's grids
are 2x3, 3x5 and 4x7 (its code names them 23, 35, 47: ``rows = n // 10, cols = n % 10``).

Store layout (the same Zarr contract as every feature set, so ``FeatureStore`` and every reader
work unchanged): one float16 array per video of shape ``(rows * cols, T, D)``, i.e. the crop axis
holds the patches in raster order, row-major: patch ``r * cols + c`` is row ``r`` (top = 0),
column ``c`` (left = 0); this is the order SSRL's model assumes when it folds the patch axis
back into a ``(rows, cols)`` map. A patch store's recipe names its grid (``patch_grid: [rows,
cols]``, also the per-video attribute ``patch_grid``), which makes its kind ``<kind>_patch`` (e.g.
``i3d_patch``); its family is its backbone's. Because their kind differs from the snippet features', the DAG never
trains a method on a patch store directly; methods that read patches get them beside their
snippet store (``rules/train.smk``).

:class:`StackedStore` concatenates the snippet store and the patch stores of one run along the
crop axis, ``(C + sum(rows * cols), T, D)``, so the shared training data loader, the segment
policies and ``score_videos`` see one ordinary store; the method splits the crop axis again by
its grids.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from wsvad_core.errors import FeatureError
from wsvad_core.grids import grid_code, parse_grid

__all__ = ["cell_bounds", "grid_patches", "store_grid", "StackedStore",
           "select_patch_stores", "PATCH_SUFFIX"]

PATCH_SUFFIX = "_patch"  # kind of patch stores = kind of the backbone's snippet features + this


def cell_bounds(size: int, n: int) -> list[tuple[int, int]]:
    """``n`` consecutive ``[start, stop)`` ranges tiling ``range(size)`` at ``floor(i*size/n)``."""
    if n > size:
        raise ValueError(f"cannot cut {size} pixels into {n} patches; raise the recipe's resize")
    edges = [(i * size) // n for i in range(n + 1)]
    return list(zip(edges[:-1], edges[1:]))


def grid_patches(x: torch.Tensor, grid, size: int, antialias: bool = True) -> torch.Tensor:
    """``(..., C, H, W)`` float -> ``(..., rows*cols, C, size, size)``: the grid's cells in
    raster order, each resized (bilinear) to ``size x size``."""
    rows, cols = parse_grid(grid)
    if x.ndim < 3:
        raise ValueError(f"expected a (..., C, H, W) tensor, got shape {tuple(x.shape)}")
    lead, (c, h, w) = x.shape[:-3], x.shape[-3:]
    flat = x.reshape(-1, c, h, w)
    cells = []
    for top, bottom in cell_bounds(h, rows):
        for left, right in cell_bounds(w, cols):
            cell = flat[..., top:bottom, left:right]
            if cell.shape[-2:] != (size, size):
                cell = F.interpolate(cell, size=(size, size), mode="bilinear", align_corners=False,
                                     antialias=antialias)
            cells.append(cell)
    out = torch.stack(cells, dim=1)  # (N, P, C, size, size)
    return out.reshape(*lead, rows * cols, c, size, size)


def store_grid(store) -> tuple[int, int] | None:
    """The patch grid of a feature store (from its recipe), or None for snippet features."""
    grid = (store.attrs.get("recipe") or {}).get("patch_grid")
    return None if grid is None else parse_grid(grid)


def select_patch_stores(patch_stores: Sequence, grids: Sequence, kind: str | None,
                        family: str | None = None) -> list:
    """The stores holding ``grids``, in that order. Each must be a patch store of ``kind +
    '_patch'`` and of the same ``family`` (when known); a grid without a store, or with two, is
    an error naming them."""
    by_grid: dict[tuple[int, int], list] = {}
    for s in patch_stores:
        g = store_grid(s)
        if g is None:
            raise FeatureError(f"feature store {s.path} is not a patch store (its recipe has no "
                               "patch_grid)")
        r = s.attrs.get("recipe") or {}
        if kind and r.get("kind") and r["kind"] != kind + PATCH_SUFFIX:
            raise FeatureError(f"patch store {s.path} holds {r['kind']!r} features; this run needs "
                               f"{kind + PATCH_SUFFIX!r} (patches of the same backbone as the "
                               "snippet features)")
        if family and r.get("family") and r["family"] != family:
            raise FeatureError(f"patch store {s.path} holds features of family {r['family']!r}, the "
                               f"snippet store of family {family!r}: the two must come from the same "
                               "network and weights")
        by_grid.setdefault(g, []).append(s)
    out = []
    for g in (parse_grid(x) for x in grids):
        found = by_grid.get(g, [])
        have = ", ".join(f"{grid_code(k)} ({v[0].path})" for k, v in sorted(by_grid.items())) or "none"
        if not found:
            raise FeatureError(f"no patch feature set with patch_grid {list(g)} was given; patch "
                               f"stores available: {have}. Add a feature set with backbone "
                               f"'*_patch' and patch_grid: {list(g)} to the dataset's feature_sets")
        if len(found) > 1:
            raise FeatureError(f"{len(found)} patch stores have patch_grid {list(g)}: "
                               f"{[str(s.path) for s in found]}; keep one")
        out.append(found[0])
    return out


class StackedStore:
    """Read-only view of several stores concatenated along the crop axis, video by video.

    ``store[video_id]`` is ``np.concatenate([s[video_id] for s in stores], axis=0)``; every store
    must hold the video with the same number of snippets T and the same dim D. ``attrs``,
    ``path`` and ``video_ids`` are the first (snippet) store's, ``parts`` the crops per store.
    """

    def __init__(self, stores: Sequence):
        if not stores:
            raise ValueError("StackedStore needs at least one store")
        self.stores = list(stores)
        self.primary = self.stores[0]
        self.path = self.primary.path
        self.attrs = dict(self.primary.attrs)
        self.attrs["stacked"] = [{"path": str(s.path), "crops": s.crops,
                                  "patch_grid": (list(store_grid(s)) if store_grid(s) else None)}
                                 for s in self.stores]
        self.video_ids = list(self.primary.video_ids)
        dims = {s.dim for s in self.stores}
        if len(dims) > 1:
            raise FeatureError(f"stores to stack have different feature dims "
                               f"{[(str(s.path), s.dim) for s in self.stores]}")
        for s in self.stores[1:]:
            missing = [v for v in self.video_ids if v not in s]
            if missing:
                raise FeatureError(f"feature store {s.path} lacks {len(missing)} videos of "
                                   f"{self.path}: {missing[:5]}")

    def view_indices(self, names) -> list[int]:
        raise FeatureError(f"{self}: a method that reads patches scores every view (no test_views)")

    @property
    def parts(self) -> list[int]:
        return [s.crops for s in self.stores]

    @property
    def dim(self) -> int:
        return self.primary.dim

    @property
    def crops(self) -> int:
        return sum(self.parts)

    def __getitem__(self, video_id: str) -> np.ndarray:
        arrays = [np.asarray(s[video_id]) for s in self.stores]
        ts = {a.shape[1] for a in arrays}
        if len(ts) > 1:
            raise FeatureError(f"video {video_id!r}: the stores to stack have different snippet "
                               f"counts {[(str(s.path), a.shape[1]) for s, a in zip(self.stores, arrays)]}"
                               "; they must be extracted with the same clip_len and stride")
        return np.concatenate(arrays, axis=0)

    def __contains__(self, video_id) -> bool:
        return all(video_id in s for s in self.stores)

    def __len__(self) -> int:
        return len(self.video_ids)

    def __iter__(self) -> Iterator[str]:
        return iter(self.video_ids)

    def shape(self, video_id: str) -> tuple[int, int, int]:
        shapes = [s.shape(video_id) for s in self.stores]
        return (sum(s[0] for s in shapes), shapes[0][1], shapes[0][2])

    def n_snippets(self, video_id: str) -> int:
        return self.primary.n_snippets(video_id)

    def video_attrs(self, video_id: str) -> dict:
        return self.primary.video_attrs(video_id)

    def __repr__(self) -> str:
        return f"StackedStore({[str(s.path) for s in self.stores]})"
