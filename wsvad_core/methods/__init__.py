"""WSVAD methods: one registry; importing this package registers every method module."""

from .base import MethodSpec, TrainHParams, WSVADModel, hparams_to_dict, load_official, make_optimizer
from .registry import create_method, get_method, list_methods, register, resolve_hparams

# self-registration (order = listing order in docs only; list_methods() sorts)
from . import mil, rtfm, s3r, ssrl, timesformer_mil, urdmu_patch  # noqa: E402,F401
from . import bnwvad, mgfn, urdmu  # noqa: E402,F401
from . import cliptsa, gsmoe, tpwng, vadclip  # noqa: E402,F401

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
