"""The backbone registry and what every backbone shares: a name -> a frozen feature network with
a known output dimension, built from a local weights file or a fixed random initialisation.

Every backbone takes clips ``(N, 3, F, S, S)`` (normalised float) and returns ``(N, D)``.
Weights come only from a local file named by the recipe (``weights``); nothing is downloaded.
Without a file the network is initialised from ``init_seed``, which is deterministic and
loudly logged as ``RANDOM-INIT``: such features exercise the pipeline but mean nothing.
"""
from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Mapping

import torch
from torch import nn

from wsvad_core.cards import BackboneCard
from wsvad_core.errors import WeightsMismatchError
from wsvad_core.weights import file_sha256, read_state_dict

log = logging.getLogger(__name__)

__all__ = ["Backbone", "register_backbone", "create_backbone", "list_backbones", "backbone_class"]

_REGISTRY: dict[str, type["Backbone"]] = {}


class Backbone(nn.Module):
    """A frozen feature extractor. Subclasses set ``kind`` (what methods accept: a method
    card's ``accepts``), ``dim``, ``defaults`` (the recipe values their pretrained weights
    expect) and ``version`` (bumped when a change alters the features), and implement ``embed``.
    These class attributes are the backbone's card (``wsvad_core/cards.py``)."""

    name: str = ""
    kind: str = ""
    dim: int = 0
    defaults: dict = {}
    # the published feature family its weights file and default recipe reproduce
    family: str = ""
    # the public weights file this backbone reads as it is distributed: name, source, sha256
    weights_file: dict = {}
    version: str = "1"

    @classmethod
    def card(cls) -> BackboneCard:
        return BackboneCard(name=cls.name, kind=cls.kind, dim=int(cls.dim), family=cls.family or cls.name,
                            defaults=dict(cls.defaults), weights_file=dict(cls.weights_file),
                            version=str(cls.version))

    def __init__(self, recipe: Mapping, state_dict: Mapping[str, torch.Tensor] | None = None,
                 weights_path: str | None = None):
        super().__init__()
        self.recipe = dict(recipe)
        self.provenance: dict = {}

    def embed(self, clips: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        return self.embed(clips)

    def _check_clips(self, clips: torch.Tensor) -> None:
        if clips.ndim != 5 or clips.shape[1] != 3:
            raise ValueError(f"backbone {self.name}: expected clips (N, 3, F, S, S), got {tuple(clips.shape)}")


def register_backbone(name: str):
    """Class decorator adding a Backbone subclass to the registry under ``name``."""
    def add(cls: type[Backbone]) -> type[Backbone]:
        if name in _REGISTRY:
            raise ValueError(f"backbone {name!r} is already registered ({_REGISTRY[name].__qualname__})")
        if not (isinstance(cls, type) and issubclass(cls, Backbone)):
            raise TypeError(f"backbone {name!r}: {cls!r} is not a Backbone subclass")
        cls.name = name
        _REGISTRY[name] = cls
        return cls
    return add


def list_backbones() -> list[str]:
    return sorted(_REGISTRY)


def backbone_class(name: str) -> type[Backbone]:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown backbone {name!r}; registered: {list_backbones()}") from None


def create_backbone(name: str, recipe: Mapping) -> Backbone:
    """Build backbone ``name`` in eval mode with frozen parameters, weights from
    ``recipe['weights']`` (a local file) or from ``recipe['init_seed']`` (RANDOM-INIT)."""
    cls = backbone_class(name)
    weights = recipe.get("weights")
    seed = int(recipe.get("init_seed") or 0)
    state_dict = read_state_dict(weights) if weights is not None else None
    # fork_rng: building consumes the global RNG; a seeded, forked one makes random-init
    # reproducible and leaves the caller's RNG stream untouched
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = cls(recipe, state_dict, None if weights is None else str(weights))
    if weights is None:
        model.provenance = {"weights": "random-init", "init_seed": seed}
        log.warning(
            "RANDOM-INIT: backbone %s has no weights file (recipe weights: null) and is initialised "
            "from init_seed=%d. Its features carry no pretrained knowledge; results computed from "
            "them are NOT comparable to published numbers.", name, seed)
    else:
        model.provenance = {"weights": str(weights), "sha256": file_sha256(weights)}
        log.info("backbone %s: weights %s (sha256 %s)", name, weights, model.provenance["sha256"])
        published = cls.weights_file.get("sha256")
        if published and published != model.provenance["sha256"]:
            model.provenance["published_sha256"] = published
            log.warning("backbone %s: %s loads, but it is not the published %s (sha256 %s, this file %s): "
                        "its features are not the %s family's", name, weights, cls.weights_file["name"],
                        published, model.provenance["sha256"], cls.family)
    model.eval()
    model.requires_grad_(False)
    return model


def check_weights(recipe: Mapping, out, key: str = "weights") -> dict:
    """The ``check_weights`` rule: build the recipe's backbone from its weights file (strict
    loading) and write the file's provenance; a file that does not fit raises an error that
    names the config ``key`` as well as the file and the key differences."""
    from wsvad_core.io import write_json

    try:
        model = create_backbone(recipe["backbone"], recipe)
    except WeightsMismatchError as err:
        raise WeightsMismatchError(err.path, f"(config {key}) {err.problem}", err.missing, err.unexpected,
                                   err.mismatched) from err
    provenance = {**model.provenance, "backbone": recipe["backbone"], "config_key": key}
    write_json(out, provenance)
    return provenance


@contextlib.contextmanager
def _quiet_library_noise():
    """Hide import/creation chatter that would mislead a log reader: pytorchvideo's jit
    deprecation warning and open_clip's 'initialized randomly' (weights are loaded after)."""
    root = logging.getLogger()
    drop = lambda record: not str(record.msg).startswith("No pretrained weights loaded")  # noqa: E731
    root.addFilter(drop)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            yield
    finally:
        root.removeFilter(drop)
