"""Deterministic random weights in the key layout of an official checkpoint.

The official-extractor fixtures (tests/fixtures/extractors/<name>/) were made by running the
official feature-extraction code with weights built here from that folder's ``layout.json`` and
seed, so a test can rebuild exactly the same weights (full-size checkpoints are far too big to
commit) and compare wsvad's extraction with the official output.

    layout = load_layout(folder / "layout.json")
    state = seeded_state_dict(layout, layout["seed"])

Each key gets its own ``torch.Generator`` seeded from ``(seed, zlib.crc32(key))``, so a value
does not depend on the other keys or their order. Values are drawn in float32 and then cast to
the key's dtype. Scales are chosen from the key name and shape so that activations stay O(1)
through deep conv nets and transformers (the fixtures' features are then of magnitude ~0.1-10,
where an absolute tolerance of 1e-4 in float32 means something):

- integer tensors (``num_batches_tracked``, CLIP's ``input_resolution`` ...): zeros, or the value
  given in the layout's ``"constants"``;
- BatchNorm (a ``weight``/``bias`` whose module also has ``running_mean``): weight U(0.5, 1),
  bias N(0, 0.1), running_mean N(0, 0.1), running_var U(0.5, 1.5);
- other 1-d ``weight`` (LayerNorm): 1 + N(0, 0.05); other 1-d tensors (biases): N(0, 0.02);
- keys with ``embedding`` in their name (CLIP's class/positional/token embeddings): N(0, 0.02);
- conv weights (ndim >= 3): N(0, CONV_GAIN^2 / fan_in), fan_in = prod(shape[1:]); CONV_GAIN is
  He's sqrt(2) for the ReLU, divided by sqrt(E[w^2] E[1/var]) of the BatchNorm above (every conv
  in these nets is followed by one), so that a conv-BN-ReLU layer keeps the mean square;
- linear weights (ndim == 2): N(0, 1 / fan_in), fan_in = shape[1], or shape[0] for CLIP's
  ``proj`` / ``text_projection`` (used as ``x @ W``);
- 0-d floats (CLIP's ``logit_scale``): N(0, 1).

A layout given as a dict (what ``load_layout`` returns) may override these scales in its
``"init"`` entry, e.g. ``{"conv_gain": 1.2, "bn_weight": [0.1, 0.3], "bn_weight_keys": "bn3"}``
(see ``DEFAULT_INIT``). Changing anything here changes the weights and invalidates the fixtures
made with ``RULES_VERSION``.
"""

from __future__ import annotations

import json
import math
import zlib
from pathlib import Path

import torch

__all__ = ["RULES_VERSION", "DEFAULT_INIT", "seeded_state_dict", "layout_of", "save_layout",
           "load_layout", "key_seed"]

RULES_VERSION = 1

_BN_W = (0.5, 1.0)
_BN_VAR = (0.5, 1.5)
# E[w^2] for w ~ U(a, b) is (a^2 + ab + b^2) / 3; E[1/v] for v ~ U(a, b) is ln(b/a) / (b - a)
_BN_GAIN2 = ((_BN_W[0] ** 2 + _BN_W[0] * _BN_W[1] + _BN_W[1] ** 2) / 3
             * math.log(_BN_VAR[1] / _BN_VAR[0]) / (_BN_VAR[1] - _BN_VAR[0]))

DEFAULT_INIT = {
    "conv_gain": math.sqrt(2.0 / _BN_GAIN2),
    "linear_gain": 1.0,
    "bn_weight": list(_BN_W),
    "bn_bias_std": 0.1,
    "bn_mean_std": 0.1,
    "bn_var": list(_BN_VAR),
    "norm_weight_std": 0.05,
    "bias_std": 0.02,
    "embedding_std": 0.02,
    "scalar_std": 1.0,
    # optional: BatchNorm weights of the modules whose last name part is listed here get
    # "bn_weight_small" instead of "bn_weight" (e.g. a ResNet's last BN in each block)
    "bn_weight_keys": [],
    "bn_weight_small": [0.5, 1.0],
}

_DTYPES = {name: getattr(torch, name) for name in (
    "float64", "float32", "float16", "bfloat16", "int64", "int32", "int16", "int8", "uint8",
    "bool")}


def key_seed(seed: int, key: str) -> int:
    """The generator seed of one key: the run seed in the high 32 bits, crc32(key) below."""
    return ((int(seed) & 0xFFFFFFFF) << 32) | zlib.crc32(key.encode("utf-8"))


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _entries(layout) -> tuple[list[tuple[str, list[int], str]], dict, dict]:
    if isinstance(layout, dict):
        entries = layout["keys"]
        init = layout.get("init") or {}
        constants = layout.get("constants") or {}
    else:
        entries, init, constants = layout, {}, {}
    unknown = set(init) - set(DEFAULT_INIT)
    if unknown:
        raise ValueError(f"unknown init setting(s): {sorted(unknown)}")
    return [(str(k), [int(s) for s in shape], str(dt)) for k, shape, dt in entries], \
        {**DEFAULT_INIT, **init}, dict(constants)


def _value(key: str, shape: list[int], dtype: torch.dtype, keyset: set[str], cfg: dict,
           g: torch.Generator) -> torch.Tensor:
    def normal(std, mean=0.0):
        return torch.randn(shape, generator=g, dtype=torch.float32) * std + mean

    def uniform(lo, hi):
        return torch.rand(shape, generator=g, dtype=torch.float32) * (hi - lo) + lo

    prefix, _, leaf = key.rpartition(".")
    module = prefix.rpartition(".")[2]
    mod = prefix + "." if prefix else ""
    is_bn = (mod + "running_mean") in keyset
    if leaf == "running_mean":
        return normal(cfg["bn_mean_std"])
    if leaf == "running_var":
        return uniform(*cfg["bn_var"])
    if is_bn and leaf == "weight":
        small = module in cfg["bn_weight_keys"]
        return uniform(*(cfg["bn_weight_small"] if small else cfg["bn_weight"]))
    if is_bn and leaf == "bias":
        return normal(cfg["bn_bias_std"])
    if "embedding" in key:
        return normal(cfg["embedding_std"])
    if len(shape) == 0:
        return normal(cfg["scalar_std"])
    if len(shape) == 1:
        if leaf == "weight":
            return normal(cfg["norm_weight_std"], 1.0)
        return normal(cfg["bias_std"])
    if len(shape) == 2:
        fan_in = shape[0] if leaf in ("proj", "text_projection") else shape[1]
        return normal(cfg["linear_gain"] / math.sqrt(fan_in))
    fan_in = math.prod(shape[1:])
    return normal(cfg["conv_gain"] / math.sqrt(fan_in))


def seeded_state_dict(layout: list[tuple[str, list[int], str]] | dict,
                      seed: int) -> dict[str, torch.Tensor]:
    """Random weights for every key of ``layout`` (``[(key, shape, dtype), ...]``, or the dict
    ``load_layout`` returns), in layout order, each from its own generator (``key_seed``)."""
    entries, cfg, constants = _entries(layout)
    keyset = {k for k, _, _ in entries}
    out: dict[str, torch.Tensor] = {}
    for key, shape, dt in entries:
        dtype = _DTYPES[dt]
        if key in constants:
            out[key] = torch.full(shape, constants[key], dtype=dtype)
        elif not (dtype.is_floating_point or dtype.is_complex):
            out[key] = torch.zeros(shape, dtype=dtype)
        else:
            g = torch.Generator().manual_seed(key_seed(seed, key))
            out[key] = _value(key, shape, dtype, keyset, cfg, g).to(dtype)
    return out


def layout_of(state_dict: dict[str, torch.Tensor]) -> list[list]:
    """``[[key, shape, dtype], ...]`` of a state dict, in its order."""
    return [[k, list(v.shape), _dtype_name(v.dtype)] for k, v in state_dict.items()]


def save_layout(state_dict: dict[str, torch.Tensor] | list, path: str | Path, **meta) -> dict:
    """Write ``layout.json``: ``meta`` (file name, format, seed, ...) and ``"keys"`` (the key
    layout of ``state_dict``, or an already made ``[[key, shape, dtype], ...]`` list)."""
    keys = layout_of(state_dict) if isinstance(state_dict, dict) else [list(e) for e in state_dict]
    doc = {**meta, "rules_version": RULES_VERSION, "keys": keys}
    lines = ",\n".join("    " + json.dumps(e) for e in keys)
    head = json.dumps({k: v for k, v in doc.items() if k != "keys"}, indent=2)
    text = head[:-2] + ',\n  "keys": [\n' + lines + "\n  ]\n}\n" if len(head) > 2 else \
        '{\n  "keys": [\n' + lines + "\n  ]\n}\n"
    Path(path).write_text(text)
    return doc


def load_layout(path: str | Path) -> dict:
    """The dict of ``layout.json``; its ``"keys"`` entries become ``(key, shape, dtype)``."""
    doc = json.loads(Path(path).read_text())
    doc["keys"] = [(k, list(shape), dt) for k, shape, dt in doc["keys"]]
    if doc.get("rules_version", RULES_VERSION) != RULES_VERSION:
        raise ValueError(f"{path}: made with seeded_weights rules_version "
                         f"{doc['rules_version']}, this file has {RULES_VERSION}")
    return doc
