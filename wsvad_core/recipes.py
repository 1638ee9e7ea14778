"""Feature recipes: how a feature set is made (backbone, snippet geometry, resize, crops,
scaling, weights). A recipe names only what differs from its backbone's defaults (the backbone
card, ``features/backbones.py``); :func:`normalize_recipe` fills and checks the rest, torch-free,
so a bad recipe stops ``snakemake -n``. The normalised recipe is what jobs receive and what the
store's attributes record; :func:`recipe_fingerprint` identifies the features it makes."""
from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping

from wsvad_core.cards import backbone_card
from wsvad_core.grids import parse_grid

log = logging.getLogger(__name__)

__all__ = ["COMMON_DEFAULTS", "RUNTIME_KEYS", "normalize_recipe", "recipe_fingerprint"]

COMMON_DEFAULTS = {"clip_len": 16, "stride": 16, "crops": "center", "weights": None, "init_seed": 0,
                   "batch_size": 8}
# keys that do not change the features: left out of the fingerprint
RUNTIME_KEYS = ("batch_size", "name")


def normalize_recipe(recipe: Mapping) -> dict:
    """The recipe with the backbone's defaults filled in and checked; adds ``family``."""
    r = dict(recipe)
    if "backbone" not in r:
        raise ValueError(f"feature recipe has no 'backbone' key: {r}")
    card = backbone_card(r["backbone"])
    for k, v in {**COMMON_DEFAULTS, **card.defaults}.items():
        if r.get(k) is None and k != "weights":
            r[k] = v
    r.setdefault("weights", None)
    if r.get("family") not in (None, card.kind):
        raise ValueError(f"feature recipe: family {r['family']!r} does not match backbone "
                         f"{r['backbone']} (family {card.kind!r})")
    r["family"] = card.kind
    for k in ("clip_len", "stride", "frames_per_snippet", "resize", "crop_size", "init_seed", "batch_size"):
        r[k] = int(r[k])
    r["mean"], r["std"] = [float(x) for x in r["mean"]], [float(x) for x in r["std"]]
    problems = []
    if min(r["clip_len"], r["stride"], r["batch_size"], r["crop_size"]) < 1:
        problems.append("clip_len, stride, batch_size and crop_size must be >= 1")
    if not 1 <= r["frames_per_snippet"] <= r["clip_len"]:
        problems.append(f"frames_per_snippet={r['frames_per_snippet']} must be in [1, clip_len={r['clip_len']}]")
    if r["family"].startswith("i3d") and r["frames_per_snippet"] != r["clip_len"]:
        problems.append("i3d backbones take every frame of a snippet: frames_per_snippet must equal clip_len")
    if r["crops"] not in ("center", "ten"):
        problems.append(f"crops must be 'center' or 'ten', got {r['crops']!r}")
    # patch recipes (``*_patch`` backbones): the grid's cells are resized to crop_size, so the
    # crop may exceed the frame; the grid is recorded only where it exists, so the
    # fingerprints of snippet recipes stay what they were
    wants_patches = card.patches
    if wants_patches:
        if r.get("patch_grid") is None:
            problems.append(f"backbone {r['backbone']} extracts patches: the recipe needs "
                            "patch_grid: [rows, cols]")
        else:
            try:
                r["patch_grid"] = list(parse_grid(r["patch_grid"]))
            except ValueError as err:
                problems.append(str(err))
            if r["crops"] != "center":
                problems.append(f"patch features take one view per patch: crops must be 'center', "
                                f"got {r['crops']!r}")
    elif r.get("patch_grid") is not None:
        problems.append(f"patch_grid is set but backbone {r['backbone']} does not extract patches "
                        f"(use {r['backbone']}_patch)")
    else:
        r.pop("patch_grid", None)
    if not wants_patches and r["resize"] < r["crop_size"]:
        problems.append(f"resize (short side {r['resize']}) must be >= crop_size ({r['crop_size']})")
    if len(r["mean"]) != 3 or len(r["std"]) != 3 or min(r["std"]) <= 0:
        problems.append("mean and std need 3 values each, std > 0")
    if problems:
        raise ValueError(f"feature recipe for {r['backbone']}: " + "; ".join(problems))
    if r["stride"] != r["clip_len"]:
        log.warning("recipe stride %d != clip_len %d: ground truth and evaluation assume "
                    "T * clip_len frames per video", r["stride"], r["clip_len"])
    return r


def recipe_fingerprint(recipe: Mapping) -> str:
    """sha256 of the normalised recipe, without keys that do not change the features
    (``batch_size``, ``name``; ``init_seed`` when a weights file is used)."""
    r = normalize_recipe(recipe)
    key = {k: v for k, v in r.items() if k not in RUNTIME_KEYS}
    if key["weights"] is not None:
        key.pop("init_seed")
    text = json.dumps(key, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()
