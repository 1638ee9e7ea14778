"""Method and backbone cards: the facts the workflow needs about each method and backbone, read
without importing torch.

Each method module states its facts once, next to its code: its ``MethodSpec`` (accepted
feature kinds, dictionary, patches, paper or official code, a code ``version``) and its
hyper-parameter dataclass, whose fields carry their type, official default and valid range
(:func:`hp`). Each backbone class states its kind, dimension and recipe defaults. This module
turns both into plain records (:class:`MethodCard`, :class:`BackboneCard`) and checks config
values against them (:func:`check_hparams`) — with the same code at ``snakemake -n`` and when a
job builds the model.

Reading the cards needs the registries, i.e. torch (about 2 s). The DAG is built often (every dry
run, every cluster job), so :func:`cards` keeps them as JSON in a cache keyed by the sha256 of the
source files that define them: the first DAG build after a change to a method or backbone file
imports the registries once, in a child process; every later one reads the JSON.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import os
import subprocess
import sys
import tempfile
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["hp", "HParam", "MethodCard", "BackboneCard", "Cards", "ConfigValueError", "hparam_specs",
           "check_hparams", "check_value", "cards", "method_card", "backbone_card"]

PACKAGE = Path(__file__).resolve().parent
# the files whose declarations are the cards (any change invalidates the cache)
CARD_SOURCES = ("methods", "features/backbones", "cards.py")


class ConfigValueError(ValueError):
    """A config value of the wrong type or out of range, or an unknown key; the message names the
    full config key, the value and what is allowed."""


# --------------------------------------------------------------------------- hyper-parameters

def hp(default: Any, *, ge: float | None = None, gt: float | None = None, le: float | None = None,
       lt: float | None = None, choices: tuple | None = None) -> Any:
    """A dataclass field with its valid range: ``lr: float = hp(1e-3, gt=0)``. For tuples the
    bounds apply to every element. Bounds of a field declared without ``hp`` are inherited from
    the base class's declaration of that name (``TrainHParams``)."""
    meta = {k: v for k, v in dict(ge=ge, gt=gt, le=le, lt=lt, choices=choices).items() if v is not None}
    if isinstance(default, (list, dict, set)):
        raise TypeError("hp(): mutable defaults are not allowed; use a tuple")
    return field(default=default, metadata={"bounds": meta})


@dataclass(frozen=True)
class HParam:
    """One hyper-parameter: its type (``int``, ``float``, ``bool``, ``str``, ``tuple``), element
    type and length for tuples, official default and valid range."""

    name: str
    type: str
    default: Any
    items: str | None = None      # element type of a tuple ("int", "float", "str", "any")
    length: int | None = None     # fixed tuple length, None for any length
    nullable: bool = False        # None allowed (it then means "derived": see the field's comment)
    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    choices: tuple | None = None

    def describe(self) -> str:
        kind = self.type if self.type != "tuple" else (
            f"list of {self.items}" + (f" (length {self.length})" if self.length else ""))
        parts = []
        if self.choices:
            parts.append("one of " + ", ".join(map(repr, self.choices)))
        for op, sym in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")):
            if getattr(self, op) is not None:
                parts.append(f"{sym} {getattr(self, op):g}")
        kind += f" {' and '.join(parts)}" if parts else ""
        return kind + (" or null" if self.nullable else "")


_SCALARS = {int: "int", float: "float", bool: "bool", str: "str"}


def _type_of(tp) -> tuple[str, str | None, int | None, bool]:
    args = typing.get_args(tp)
    if type(None) in args and len(args) == 2:  # X | None
        return (*_type_of(next(a for a in args if a is not type(None)))[:3], True)
    if tp in _SCALARS:
        return _SCALARS[tp], None, None, False
    return (*_tuple_type(tp), False)


def _tuple_type(tp) -> tuple[str, str | None, int | None]:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is tuple or origin is tuple:
        if not args:
            return "tuple", "any", None
        if len(args) == 2 and args[1] is Ellipsis:
            return "tuple", _SCALARS.get(args[0], "any"), None
        if len(set(args)) == 1:
            return "tuple", _SCALARS.get(args[0], "any"), len(args)
        return "tuple", "any", len(args)
    raise TypeError(f"hyper-parameter type {tp!r} is not supported (int, float, bool, str, tuple)")


def _bounds(cls: type, name: str) -> dict:
    """The bounds of ``name`` declared nearest to ``cls`` in its MRO."""
    for klass in cls.__mro__:
        fields = getattr(klass, "__dataclass_fields__", {})
        if name in fields and fields[name].metadata.get("bounds") is not None:
            return dict(fields[name].metadata["bounds"])
    return {}


def hparam_specs(cls: type) -> dict[str, HParam]:
    """The :class:`HParam` of every field of a hyper-parameter dataclass."""
    hints = typing.get_type_hints(cls)
    out = {}
    for f in dataclasses.fields(cls):
        kind, items, length, nullable = _type_of(hints[f.name])
        default = f.default
        if isinstance(default, tuple):
            default = list(default)
        b = _bounds(cls, f.name)
        if "choices" in b:
            b["choices"] = tuple(b["choices"])
        out[f.name] = HParam(f.name, kind, default, items, length, nullable, **b)
    return out


def _scalar(kind: str, value: Any) -> Any:
    """``value`` as ``kind``; YAML reads ``1e-3`` as a string and ``2`` where a float is meant."""
    if kind == "any":
        return value
    if kind == "bool":
        if isinstance(value, bool):
            return value
        raise TypeError
    if kind == "str":
        if isinstance(value, str):
            return value
        raise TypeError
    if isinstance(value, bool):
        raise TypeError
    if isinstance(value, str):
        value = float(value)
    if not isinstance(value, (int, float)):
        raise TypeError
    if kind == "int":
        if isinstance(value, float) and not value.is_integer():
            raise TypeError
        return int(value)
    value = float(value)
    if not math.isfinite(value):
        raise TypeError
    return value


def check_value(spec: HParam, value: Any, where: str) -> Any:
    """``value`` converted to the spec's type, or :class:`ConfigValueError` naming ``where`` (the
    full config key), the value and what is allowed."""
    def fail(why: str = "") -> ConfigValueError:
        return ConfigValueError(f"{where}: {value!r} is not valid{why}; expected {spec.describe()}")

    if value is None and spec.nullable:
        return None
    if spec.type == "tuple" and isinstance(value, (list, tuple)) and spec.length not in (None, len(value)):
        raise fail(f" (length {len(value)})")
    try:
        if spec.type == "tuple":
            if not isinstance(value, (list, tuple)):
                raise TypeError
            out = tuple(_scalar(spec.items or "any", v) for v in value)
            scalars = out
        else:
            out = _scalar(spec.type, value)
            scalars = (out,)
    except (TypeError, ValueError):
        raise fail() from None
    for v in scalars:
        if spec.choices is not None and v not in spec.choices:
            raise fail()
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            if ((spec.ge is not None and v < spec.ge) or (spec.gt is not None and v <= spec.gt)
                    or (spec.le is not None and v > spec.le) or (spec.lt is not None and v >= spec.lt)):
                raise fail()
    return out


def check_hparams(specs: Mapping[str, HParam], values: Mapping[str, Any], where: str) -> dict:
    """Every value of ``values`` checked against ``specs`` (unknown keys name the valid ones);
    returns them converted (tuples for lists)."""
    unknown = [k for k in values if k not in specs]
    if unknown:
        raise ConfigValueError(f"{where}: unknown hyper-parameter(s) {', '.join(map(repr, unknown))}; "
                               f"valid: {', '.join(specs)}")
    return {k: check_value(specs[k], v, f"{where}.{k}") for k, v in values.items()}


# ---------------------------------------------------------------------------------- cards

@dataclass(frozen=True)
class MethodCard:
    name: str
    paper: str
    official_code: str | None     # repository URL; None: built from the paper alone
    accepts: tuple[str, ...]      # feature kinds the method trains on ("i3d", "clip", ...)
    needs_dictionary: bool        # S3R's dictionary (rules/dictionary.smk)
    reads_patches: bool           # patch feature sets beside the snippet features
    version: str                  # bumped when the method's code changes its results
    hparams: dict[str, HParam]

    @property
    def paper_only(self) -> bool:
        return self.official_code is None


@dataclass(frozen=True)
class BackboneCard:
    name: str
    kind: str                     # what methods accept ("i3d", "clip", "timesformer")
    dim: int
    family: str                   # the published feature family its default recipe reproduces
    defaults: dict                # recipe values its weights expect
    weights_file: dict            # the public weights file it reads: name, source, sha256
    version: str


@dataclass(frozen=True)
class Cards:
    methods: dict[str, MethodCard]
    backbones: dict[str, BackboneCard]


def _card_json(c) -> dict:
    d = dataclasses.asdict(c)
    if "hparams" in d:
        d["hparams"] = {k: {kk: (list(vv) if isinstance(vv, tuple) else vv) for kk, vv in h.items()}
                        for k, h in d["hparams"].items()}
    return d


def _from_json(data: dict) -> Cards:
    methods = {}
    for name, m in data["methods"].items():
        hps = {k: HParam(**{**h, "choices": tuple(h["choices"]) if h.get("choices") is not None else None})
               for k, h in m["hparams"].items()}
        methods[name] = MethodCard(**{**m, "accepts": tuple(m["accepts"]), "hparams": hps})
    backbones = {name: BackboneCard(**b) for name, b in data["backbones"].items()}
    return Cards(methods, backbones)


def build_cards() -> Cards:
    """The cards from the registries themselves (imports torch)."""
    from wsvad_core.features.backbones import backbone_class, list_backbones
    from wsvad_core.methods import get_method, list_methods

    methods = {n: get_method(n).card() for n in list_methods()}
    backbones = {n: backbone_class(n).card() for n in list_backbones()}
    return Cards(methods, backbones)


def _source_files() -> list[Path]:
    files = []
    for rel in CARD_SOURCES:
        p = PACKAGE / rel
        files += sorted(p.rglob("*.py")) if p.is_dir() else [p]
    return files


def _cache_dir() -> Path:
    env = os.environ.get("WSVAD_CACHE_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "wsvad"


def _fingerprint() -> str:
    h = hashlib.sha256()
    for p in _source_files():
        h.update(str(p.relative_to(PACKAGE)).encode())
        h.update(p.read_bytes())
    return h.hexdigest()[:20]


def _write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh)
    os.replace(tmp, path)


@functools.cache
def cards() -> Cards:
    """Every method and backbone card; in a process that has torch already the registries are
    read directly, elsewhere (the DAG) from the cache, filled by a child process when stale."""
    if "torch" in sys.modules:
        return build_cards()
    cache = _cache_dir() / f"cards-{_fingerprint()}.json"
    try:
        return _from_json(json.loads(cache.read_text()))
    except (OSError, ValueError, KeyError, TypeError):
        pass
    target = cache
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
    except OSError:  # no writable cache: a temporary file, read once
        target = Path(tempfile.mkdtemp(prefix="wsvad-cards-")) / cache.name
    res = subprocess.run([sys.executable, "-m", "wsvad_core.cards", str(target)], capture_output=True,
                         text=True, env={**os.environ, "PYTHONPATH": os.pathsep.join(
                             [str(PACKAGE.parent), os.environ.get("PYTHONPATH", "")])})
    if res.returncode != 0:
        raise RuntimeError(f"reading the method and backbone cards failed (python -m wsvad_core.cards):\n"
                           f"{res.stderr.strip()[-3000:]}")
    return _from_json(json.loads(target.read_text()))


def method_card(name: str) -> MethodCard:
    if "torch" in sys.modules:  # the registry is at hand: no need for the other cards
        from wsvad_core.methods import get_method

        return get_method(name).card()
    try:
        return cards().methods[name]
    except KeyError:
        raise KeyError(f"unknown method {name!r}; known: {', '.join(sorted(cards().methods))}") from None


def backbone_card(name: str) -> BackboneCard:
    if "torch" in sys.modules:
        from wsvad_core.features.backbones import backbone_class

        return backbone_class(name).card()
    try:
        return cards().backbones[name]
    except KeyError:
        raise KeyError(f"unknown backbone {name!r}; known: {', '.join(sorted(cards().backbones))}") from None


if __name__ == "__main__":  # python -m wsvad_core.cards OUT.json: write the cards (the cache)
    built = build_cards()
    _write_json(Path(sys.argv[1]), {"methods": {n: _card_json(c) for n, c in built.methods.items()},
                                    "backbones": {n: _card_json(c) for n, c in built.backbones.items()}})
