"""The one method registry: ``register``, ``get_method``, ``list_methods``, ``create_method``.

Method modules call :func:`register` at import; importing ``wsvad_core.methods`` imports them all.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch

from wsvad_core.cards import check_hparams, hparam_specs

from .base import MethodSpec, TrainHParams, WSVADModel

__all__ = ["register", "get_method", "list_methods", "create_method", "resolve_hparams"]

_REGISTRY: dict[str, MethodSpec] = {}


def register(spec: MethodSpec) -> MethodSpec:
    if not isinstance(spec, MethodSpec):
        raise TypeError(f"register() takes a MethodSpec, got {type(spec).__name__}")
    if not (dataclasses.is_dataclass(spec.hparams) and issubclass(spec.hparams, TrainHParams)):
        raise TypeError(f"{spec.name}: hparams must be a TrainHParams dataclass type")
    old = _REGISTRY.get(spec.name)
    if old is not None and old is not spec:
        raise ValueError(f"method {spec.name!r} is already registered")
    _REGISTRY[spec.name] = spec
    return spec


def get_method(name: str) -> MethodSpec:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown method {name!r}; registered: {', '.join(list_methods())}") from None


def list_methods() -> list[str]:
    return sorted(_REGISTRY)


def resolve_hparams(name: str, **overrides: Any) -> TrainHParams:
    """The method's official hyper-parameters with ``overrides`` applied; unknown keys, wrong
    types and out-of-range values raise ``ConfigValueError`` (the same check as ``snakemake -n``,
    ``wsvad_core/cards.py``)."""
    spec = get_method(name)
    values = check_hparams(hparam_specs(spec.hparams), overrides, f"method {name!r}")
    return dataclasses.replace(spec.hparams(), **values)


def create_method(name: str, feat_dim: int, dictionary: np.ndarray | None = None,
                  **overrides: Any) -> tuple[WSVADModel, TrainHParams]:
    """Build method ``name`` for ``feat_dim``-d features; returns ``(model, hparams)``.

    Parameters are initialised from ``hparams.seed`` inside a forked RNG, so the same seed gives
    the same initial weights whatever the caller did with the global RNG before.
    """
    spec = get_method(name)
    hp = resolve_hparams(name, **overrides)
    if spec.needs_dictionary and dictionary is None:
        raise ValueError(f"method {name!r} needs a dictionary (see wsvad_core/dictionary.py)")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(hp.seed)
        if spec.needs_dictionary:
            model = spec.build(hp, int(feat_dim), dictionary=dictionary)
        else:
            model = spec.build(hp, int(feat_dim))
    return model, hp
