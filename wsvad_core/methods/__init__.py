"""WSVAD methods: one registry; importing this package registers every method module."""

# self-registration (order = listing order in docs only; list_methods() sorts)
from . import (  # noqa: E402,F401
    bnwvad,
    cliptsa,
    dsanet,
    gsmoe,
    mgfn,
    mil,
    pel4vad,
    rtfm,
    s3r,
    ssrl,
    timesformer_mil,
    tpwng,
    urdmu,
    urdmu_patch,
    vadclip,
)
from .base import MethodSpec, TrainHParams, WSVADModel, hparams_to_dict, load_official, make_optimizer
from .registry import create_method, get_method, list_methods, register, resolve_hparams

__all__ = [
    "MethodSpec",
    "TrainHParams",
    "WSVADModel",
    "hparams_to_dict",
    "load_official",
    "make_optimizer",
    "create_method",
    "get_method",
    "list_methods",
    "register",
    "resolve_hparams",
]
