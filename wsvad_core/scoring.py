"""What a trained run needs to score new video (``wsvad score`` and ``wsvad watch``): its
checkpoint checked for scoring, the feature recipe new video is extracted with, and the views
and threshold of its evaluation. torch is imported only inside the functions that need it."""
from __future__ import annotations

import json
import os
from pathlib import Path

from wsvad_core.errors import WeightsMismatchError


def load_run(run_dir: str | os.PathLike, checkpoint: str = "checkpoint.pt"):
    """(record, state dict) of a run folder's checkpoint, checked for what scoring needs."""
    from wsvad_core.runs import RunError, load_checkpoint

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RunError(f"{run_dir}: run folder not found")
    path = run_dir / checkpoint
    record, state_dict = load_checkpoint(path)
    if not record.recipe:
        raise RunError(f"{path}: the checkpoint does not record the feature recipe it was trained on")
    if record.patch_stores:
        raise RunError(f"{path}: method {record.method!r} also reads patch features; "
                       "`wsvad score` and `wsvad watch` handle snippet-feature methods only")
    return record, state_dict


def _weights_file_hint(recipe: dict) -> str:
    from wsvad_core.cards import backbone_card

    f = backbone_card(recipe["backbone"]).weights_file
    return f"backbone {recipe['backbone']}, file {f.get('name', '?')} from {f.get('source', '?')}"


def _check_weights(recipe: dict, provenance: dict) -> None:
    """Scoring must see the features training saw: the same weights file, byte for byte."""
    from wsvad_core.weights import file_sha256

    weights = recipe.get("weights")
    if weights is None:
        return
    if not Path(weights).is_file():
        raise FileNotFoundError(f"{weights}: backbone weights file of the run's feature recipe not found")
    want = provenance.get("sha256")
    if want and file_sha256(weights) != want:
        raise WeightsMismatchError(weights, f"sha256 differs from the one the run's features were made "
                                            f"with ({want}); scores would not be comparable")


def scoring_recipe(record, ckpt: str, weights: str | None = None) -> dict:
    """The recipe new video is extracted with to be scored by a run (``wsvad score`` and
    ``wsvad watch``): the run's own, with ``weights`` when given. A run trained on imported
    published features needs that family's extractor weights; otherwise the recipe's weights
    file must be the one the run's features were made with."""
    from wsvad_core.runs import RunError

    recipe, provenance = dict(record.recipe), record.provenance
    imported = str(provenance.get("weights", "")).startswith("published:")
    if weights is not None:
        recipe["weights"] = str(weights)
    elif imported and recipe.get("weights") is None:
        raise RunError(f"{ckpt}: the run was trained on published {record.store_attrs.get('family')} features "
                       f"({provenance.get('source')}); scoring a video needs that family's extractor weights "
                       f"({_weights_file_hint(recipe)}): set feature_sets.{recipe.get('name')}.weights in the "
                       "config or pass --weights FILE")
    if not imported:
        _check_weights(recipe, provenance)
    return recipe


def run_protocol(run_dir: str | os.PathLike) -> tuple[list | None, float]:
    """(test views, decision threshold) of a run's evaluation, from its metrics.json: the views
    its protocol scores (None: every view) and its FAR threshold (0.5 without metrics.json)."""
    path = Path(run_dir) / "metrics.json"
    metrics = json.loads(path.read_text()) if path.is_file() else {}
    return metrics.get("test_views") or None, float(metrics.get("far_threshold", 0.5))
