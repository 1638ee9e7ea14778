"""Backbone weights files: read a state dict from any of the formats the published weights come
in (``torch.save`` dicts, training checkpoints, TorchScript archives, safetensors), load it
strictly with every key difference named, and record where features came from (file + sha256)."""
from __future__ import annotations

import hashlib
import os
import zipfile
from collections.abc import Iterable, Mapping
from pathlib import Path

import torch
from torch import nn

from wsvad_core.errors import WeightsMismatchError

__all__ = ["file_sha256", "weights_provenance", "read_state_dict", "load_state_dict_strict", "load_state_dict_as"]


def file_sha256(path: str | os.PathLike) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def weights_provenance(recipe: Mapping) -> dict:
    """What the features of ``recipe`` are made from, without building the network."""
    weights = recipe.get("weights")
    if weights is None:
        return {"weights": "random-init", "init_seed": int(recipe.get("init_seed") or 0)}
    if not Path(weights).is_file():
        raise FileNotFoundError(f"backbone weights file {weights} (recipe key 'weights') does not exist")
    return {"weights": str(weights), "sha256": file_sha256(weights)}


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Tensors of a ``torch.save``d state dict, possibly nested under ``state_dict``, ``model``
    or ``model_state`` (pytorchvideo checkpoints); a TorchScript archive (OpenAI's CLIP files)
    is read through ``torch.jit.load``. A ``module.`` prefix (DataParallel) is dropped."""
    path = str(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"backbone weights file {path} (recipe key 'weights') does not exist")
    if path.endswith(".safetensors"):  # Hugging Face checkpoints (TimeSformer)
        try:
            from safetensors.torch import load_file

            return dict(load_file(path, device="cpu"))
        except Exception as err:
            raise WeightsMismatchError(path, f"cannot be read as a safetensors file: {err}") from err
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        if not _is_torchscript(path):
            raise WeightsMismatchError(path, _unreadable_reason(path, err)) from err
        try:
            obj = torch.jit.load(path, map_location="cpu").state_dict()
        except Exception as err2:
            raise WeightsMismatchError(path, f"TorchScript archive cannot be loaded: {err2}") from err2
    for _ in range(4):  # unwrap training checkpoints: {"model_state": {...}, "epoch": ...}
        if isinstance(obj, Mapping) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
            break
        if isinstance(obj, Mapping):
            wrappers = ("state_dict", "model_state", "model")
            inner = next((obj[k] for k in wrappers if isinstance(obj.get(k), Mapping)), None)
            if inner is not None:
                obj = inner
                continue
        keys = list(obj)[:10] if isinstance(obj, Mapping) else type(obj).__name__
        raise WeightsMismatchError(path, f"holds no state dict of tensors (top level: {keys}); "
                                         "expected a dict of tensors, possibly under 'state_dict' or 'model'")
    sd = dict(obj)
    if all(k.startswith("module.") for k in sd):
        sd = {k[len("module."):]: v for k, v in sd.items()}
    return sd


def _unreadable_reason(path: str, err: Exception) -> str:
    """Why ``torch.load`` refused a file, in terms of what the user can do about it."""
    with open(path, "rb") as fh:
        head = fh.read(2)
    if not zipfile.is_zipfile(path) and not head.startswith(b"\x80"):
        return ("is not a PyTorch weights file (neither a torch.save archive nor a pickle; "
                f"first bytes {head!r}); check the path and that the download is complete")
    first = str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__
    return ("holds Python objects besides tensors, which safe loading (torch.load with "
            "weights_only=True) refuses; re-save just the weights, e.g. "
            f"torch.save(torch.load(path, weights_only=False)['state_dict'], out) ({first})")


def _is_torchscript(path: str) -> bool:
    try:
        with zipfile.ZipFile(path) as zf:
            return any(n.endswith("/constants.pkl") or "/code/" in n for n in zf.namelist())
    except zipfile.BadZipFile:
        return False


def load_state_dict_strict(module: nn.Module, state_dict: Mapping[str, torch.Tensor], path: str,
                           what: str, may_be_missing: Iterable[str] = ()) -> None:
    """``load_state_dict(strict=True)`` that reports every problem at once.

    ``may_be_missing`` names keys the features never use (a classifier head); BatchNorm's
    ``num_batches_tracked`` counters may be missing too (older checkpoints, unused in eval)."""
    own = module.state_dict()
    tolerated = set(may_be_missing)
    missing = [k for k in own if k not in state_dict and k not in tolerated
               and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state_dict if k not in own]
    mismatched = [f"{k} (file {tuple(state_dict[k].shape)}, model {tuple(own[k].shape)})"
                  for k in state_dict if k in own and state_dict[k].shape != own[k].shape]
    if missing or unexpected or mismatched:
        hint = ""
        if any("positional_embedding" in m for m in mismatched):
            hint = " (positional embedding size differs: the weights expect another crop_size)"
        raise WeightsMismatchError(path, f"does not fit {what}{hint}", missing, unexpected, mismatched)
    module.load_state_dict({k: v for k, v in state_dict.items()}, strict=False)


def load_state_dict_as(module: nn.Module, state_dict: Mapping[str, torch.Tensor], path: str, what: str,
                       file_key, ignore: Iterable[str] = ()) -> None:
    """Strict loading of a file whose keys are another code's names: ``file_key(own_key)`` is the
    name of each of ``module``'s tensors in the file. Differences are reported in the file's
    names; file keys starting with an ``ignore`` prefix (a classifier the features never use)
    may be there or not."""
    ignore = tuple(ignore)
    own = {k: v for k, v in module.state_dict().items() if not k.endswith("num_batches_tracked")}
    names = {file_key(k): k for k in own}
    missing = [f for f in names if f not in state_dict]
    unexpected = [k for k in state_dict if k not in names and not (ignore and k.startswith(ignore))
                  and not k.endswith("num_batches_tracked")]
    mismatched = [f"{f} (file {tuple(state_dict[f].shape)}, model {tuple(own[k].shape)})"
                  for f, k in names.items() if f in state_dict and state_dict[f].shape != own[k].shape]
    if missing or unexpected or mismatched:
        raise WeightsMismatchError(path, f"does not fit {what}", missing, unexpected, mismatched)
    module.load_state_dict({k: state_dict[f] for f, k in names.items()}, strict=False)
