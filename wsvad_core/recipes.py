"""Feature recipes: how a feature set is made (backbone, snippet geometry, resize, crops,
scaling, weights). A recipe names only what differs from its backbone's defaults (the backbone
card, ``features/backbones/``); :func:`normalize_recipe` fills and checks the rest, torch-free,
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

__all__ = ["COMMON_DEFAULTS", "RUNTIME_KEYS", "VIEWS", "VIEW_PRESETS", "resolve_views", "normalize_recipe",
           "recipe_fingerprint"]

COMMON_DEFAULTS = {"clip_len": 16, "stride": 16, "crops": "center", "weights": None, "init_seed": 0,
                   "batch_size": 8, "t_rule": "ceil_loop", "interpolation": "bilinear", "jpeg": None,
                   "store_dtype": "float16"}
# keys that do not change the features: left out of the fingerprint
RUNTIME_KEYS = ("batch_size", "name", "notes")
INTERPOLATIONS = ("bilinear", "bicubic", "pil_lanczos", "pil_bilinear", "pil_bicubic", "cv2_linear", "cv2_area")
T_RULES = ("ceil_loop", "ceil_last", "floor")
STORE_DTYPES = ("float16", "float32")
JPEG_ENCODERS = ("opencv",)


REGIONS = ("tl", "tr", "bl", "br", "center")
VIEWS = REGIONS + tuple(f"flip_{r}" for r in REGIONS)
# crops: <preset> in a recipe; "ten" is Gowtham's (and UR-DMU's) oversample order
VIEW_PRESETS = {
    "center": ("center",),
    "ten": ("tl", "tr", "center", "bl", "br", "flip_tr", "flip_tl", "flip_center", "flip_br", "flip_bl"),
}

def resolve_views(crops) -> list[str]:
    """A recipe's ``crops`` (a preset name or a list of view names) as view names."""
    names = list(VIEW_PRESETS[crops]) if isinstance(crops, str) and crops in VIEW_PRESETS else crops
    if isinstance(names, str) or not names:
        raise ValueError(f"crops must be one of {sorted(VIEW_PRESETS)} or a list of views {list(VIEWS)}, "
                         f"got {crops!r}")
    bad = [v for v in names if v not in VIEWS]
    if bad or len(set(names)) != len(names):
        raise ValueError(f"crops {list(names)}: views must be distinct names of {list(VIEWS)}"
                         + (f" ({bad} unknown)" if bad else ""))
    return list(names)


def normalize_recipe(recipe: Mapping) -> dict:
    """The recipe with the backbone's defaults filled in and checked; adds ``kind`` (what
    methods accept; ``<kind>_patch`` for a patch grid), ``family`` (the published family it
    belongs to: the backbone's unless the recipe names one) and ``views`` (the name of every
    crop index, ``features/transforms.py``)."""
    r = dict(recipe)
    if "backbone" not in r:
        raise ValueError(f"feature recipe has no 'backbone' key: {r}")
    card = backbone_card(r["backbone"])
    for k, v in {**COMMON_DEFAULTS, **card.defaults}.items():
        if r.get(k) is None and k not in ("weights", "jpeg"):
            r[k] = v
    r.setdefault("weights", None)
    r.setdefault("jpeg", None)
    patches = r.get("patch_grid") is not None
    r["kind"] = card.kind + ("_patch" if patches else "")
    r["family"] = r.get("family") or card.family
    for k in ("clip_len", "stride", "frames_per_snippet", "crop_size", "init_seed", "batch_size"):
        r[k] = int(r[k])
    r["resize"] = [int(x) for x in r["resize"]] if isinstance(r["resize"], (list, tuple)) else int(r["resize"])
    r["mean"], r["std"] = [float(x) for x in r["mean"]], [float(x) for x in r["std"]]
    problems = []
    if min(r["clip_len"], r["stride"], r["batch_size"], r["crop_size"]) < 1:
        problems.append("clip_len, stride, batch_size and crop_size must be >= 1")
    if not 1 <= r["frames_per_snippet"] <= r["clip_len"]:
        problems.append(f"frames_per_snippet={r['frames_per_snippet']} must be in [1, clip_len={r['clip_len']}]")
    if card.kind == "i3d" and r["frames_per_snippet"] != r["clip_len"]:
        problems.append("i3d backbones take every frame of a snippet: frames_per_snippet must equal clip_len")
    for key, allowed in (("t_rule", T_RULES), ("interpolation", INTERPOLATIONS), ("store_dtype", STORE_DTYPES)):
        if r[key] not in allowed:
            problems.append(f"{key} must be one of {list(allowed)}, got {r[key]!r}")
    if r["jpeg"] is not None:
        j = dict(r["jpeg"])
        if j.get("encoder") not in JPEG_ENCODERS or not 1 <= int(j.get("quality", 0)) <= 100:
            problems.append(f"jpeg must be {{encoder: opencv, quality: 1..100}}, got {r['jpeg']!r}")
        else:
            r["jpeg"] = {"encoder": j["encoder"], "quality": int(j["quality"])}
    short = min(r["resize"]) if isinstance(r["resize"], list) else r["resize"]
    if patches:
        # the grid's cells are resized to crop_size, so a cell may be smaller than the crop; the
        # views are the cells, raster order
        try:
            r["patch_grid"] = list(parse_grid(r["patch_grid"]))
            rows, cols = r["patch_grid"]
            r["views"] = [f"cell_{i}_{j}" for i in range(rows) for j in range(cols)]
        except ValueError as err:
            problems.append(str(err))
        if r["crops"] != "center":
            problems.append(f"patch features take one view per patch: crops must be 'center', got {r['crops']!r}")
    else:
        r.pop("patch_grid", None)
        try:
            r["views"] = resolve_views(r["crops"])
        except ValueError as err:
            problems.append(str(err))
        if short < r["crop_size"]:
            problems.append(f"resize {r['resize']} must be at least crop_size ({r['crop_size']})")
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
    (``batch_size``, ``name``, ``notes``; ``init_seed`` when a weights file is used)."""
    r = normalize_recipe(recipe)
    key = {k: v for k, v in r.items() if k not in RUNTIME_KEYS}
    if key["weights"] is not None:
        key.pop("init_seed")
    text = json.dumps(key, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()
