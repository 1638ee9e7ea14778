"""The one method registry: ``register``, ``get_method``, ``list_methods``, ``create_method``.

Method modules call :func:`register` at import; importing ``wsvad_core.methods`` imports them all.
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Any

import numpy as np
import torch

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


def _coerce(cls: type, name: str, value: Any, default: Any) -> Any:
    """Convert a config value to the field's type (YAML reads ``1e-3`` as a string, lists for
    tuples, ints for floats)."""
    hints = typing.get_type_hints(cls)
    tp = hints.get(name, type(default))
    try:
        if tp is bool:
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.lower() in ("true", "false"):
                return value.lower() == "true"
            raise TypeError
        if tp is int:
            if isinstance(value, bool):
                raise TypeError
            f = float(value)
            if not f.is_integer():
                raise TypeError
            return int(f)
        if tp is float:
            if isinstance(value, bool):
                raise TypeError
            return float(value)
        if tp is str:
            if not isinstance(value, str):
                raise TypeError
            return value
        if isinstance(default, tuple):
            return tuple(value)
    except (TypeError, ValueError):
        raise ValueError(f"{cls.__name__}.{name}: cannot use {value!r} "
                         f"(expected {getattr(tp, '__name__', tp)})") from None
    return value


def resolve_hparams(name: str, **overrides: Any) -> TrainHParams:
    """The method's official hyper-parameters with ``overrides`` applied (unknown keys raise)."""
    spec = get_method(name)
    hp = spec.hparams()
    valid = [f.name for f in dataclasses.fields(hp)]
    unknown = [k for k in overrides if k not in valid]
    if unknown:
        raise ValueError(f"method {name!r}: unknown hyper-parameter(s) {', '.join(map(repr, unknown))}; "
                         f"valid: {', '.join(valid)}")
    coerced = {k: _coerce(type(hp), k, v, getattr(hp, k)) for k, v in overrides.items()}
    return dataclasses.replace(hp, **coerced)


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
