"""One snippet's frames -> its features -> its score, with bounded temporal context.

:class:`SnippetEmbedder` makes a snippet's features as the offline extractor makes them for a
finished file (``features/extract.py``: the recipe's preprocessing and views, the backbone's
forward, then the store's float dtype, float16 for the field's recipes), so that a run scores a
stream with the features it was evaluated on.

:class:`ContextScorer` gives the run's model its context. A causal method
(``WSVADModel.causal``: MIL's per-snippet MLP) scores each snippet alone. Any other method mixes
snippets along time (temporal convolutions, attention, non-local blocks): it scores the last W
snippets, a ring buffer of fixed size, and the newest snippet's score is kept. That snippet sits
at the window's right edge with no future context, which is the accuracy cost of scoring live
(``benchmarks/live.py`` measures it against whole-video scoring). :func:`windowed_scores` is the
same scoring of a finished video's features, snippet after snippet.
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch

from wsvad_core.errors import FeatureError

__all__ = ["SnippetEmbedder", "ContextScorer", "windowed_scores"]


class SnippetEmbedder:
    """uint8 frames ``(frames_per_snippet, H, W, 3)`` (after the recipe's host transform) ->
    features ``(views, D)`` float32, rounded through the recipe's store dtype."""

    def __init__(self, recipe: Mapping, device: str | torch.device = "cpu", backbone=None, views=None):
        from wsvad_core.features.backbones import create_backbone
        from wsvad_core.features.extract import _has_conv3d
        from wsvad_core.recipes import normalize_recipe

        self.recipe = r = normalize_recipe(recipe)
        self.device = torch.device(device)
        self.backbone = backbone if backbone is not None else create_backbone(r["backbone"], r)
        self.backbone.to(self.device)
        # the extractor's choices, so that the numbers are the offline ones
        self.channels_last = _has_conv3d(self.backbone)
        if self.channels_last:
            self.backbone.to(memory_format=torch.channels_last_3d)
        self.use_amp = self.device.type == "cuda"
        # the views the run's protocol scores (None: all), as indices into the recipe's views
        self.view_index = None if not views else [r["views"].index(v) for v in views]

    @property
    def provenance(self) -> dict:
        return dict(getattr(self.backbone, "provenance", {}) or {})

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        from wsvad_core.features.extract import _embed

        with torch.inference_mode():
            y = _embed(self.backbone, torch.from_numpy(np.ascontiguousarray(frames))[None], self.recipe,
                       self.device, self.use_amp, self.channels_last)[0].numpy()  # (views, D)
        with np.errstate(over="ignore"):
            stored = y.astype(self.recipe["store_dtype"])
        if not np.isfinite(stored).all():
            raise FeatureError(f"backbone {self.recipe['backbone']}: non-finite features for a snippet "
                               f"(max |x| {float(np.nanmax(np.abs(y))):.4g}; float16 overflows above 65504)")
        if self.view_index is not None:
            stored = stored[self.view_index]
        return stored.astype(np.float32)


class ContextScorer:
    """``push(features (views, D)) -> score`` of that snippet, from it alone (causal methods) or
    from the last ``window`` snippets (default: the method's ``live_window()``)."""

    def __init__(self, model, window: int | None = None):
        self.model = model.eval()
        self.causal = bool(getattr(model, "causal", False))
        self.window = 1 if self.causal else int(window or model.live_window())
        if self.window < 1:
            raise ValueError(f"window must be >= 1 snippet, got {window}")
        self._ring: np.ndarray | None = None  # (views, window, D), allocated on the first push
        self._n = 0

    def push(self, feats: np.ndarray) -> float:
        feats = np.asarray(feats, dtype=np.float32)
        if self._ring is None:
            self._ring = np.zeros((feats.shape[0], self.window, feats.shape[1]), dtype=np.float32)
        self._ring[:, self._n % self.window] = feats
        self._n += 1
        k = min(self._n, self.window)
        order = (np.arange(self._n - k, self._n)) % self.window  # oldest first
        x = torch.from_numpy(self._ring[:, order])[None]
        with torch.inference_mode():
            return float(self.model.score(x)[0, -1])

    def reset(self) -> None:
        self._n = 0


def windowed_scores(model, feats: np.ndarray, window: int | None = None) -> np.ndarray:
    """Scores ``(T,)`` of a finished video's features ``(views, T, D)`` as live scoring gives
    them: snippet t from snippets ``max(0, t - W + 1) .. t`` (t alone for a causal method)."""
    scorer = ContextScorer(model, window)
    feats = np.asarray(feats, dtype=np.float32)
    return np.array([scorer.push(feats[:, t]) for t in range(feats.shape[1])], dtype=np.float32)
