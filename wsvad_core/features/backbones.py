"""Backbone registry: a name -> a frozen feature network with a known output dimension.

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
from wsvad_core.weights import file_sha256, load_state_dict_strict, read_state_dict

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
    patches: bool = False  # runs on a grid of patches of every frame (features/patches.py)
    version: str = "1"

    @classmethod
    def card(cls) -> BackboneCard:
        return BackboneCard(name=cls.name, kind=cls.kind, dim=int(cls.dim), patches=bool(cls.patches),
                            defaults=dict(cls.defaults), version=str(cls.version))

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


@register_backbone("i3d_r50")
class I3DR50(Backbone):
    """pytorchvideo's I3D-R50 (the ``i3d_r50`` hub architecture, Kinetics-400 8x8 layout).
    Feature: the 2048-d output of the last res stage averaged over T, H and W (the head's
    pooled, pre-projection vector; the head's fixed 4x7x7 pool assumes 8x224x224 input, a
    global mean works at any clip length and crop size)."""

    kind = "i3d"
    dim = 2048
    # pytorchvideo's Kinetics recipe: mean/std on [0, 1] RGB
    defaults = {"clip_len": 16, "frames_per_snippet": 16, "resize": 256, "crop_size": 224,
                "mean": [0.45, 0.45, 0.45], "std": [0.225, 0.225, 0.225]}
    HEAD_KEYS = ("blocks.6.proj.weight", "blocks.6.proj.bias")

    def __init__(self, recipe, state_dict=None, weights_path=None):
        super().__init__(recipe)
        with _quiet_library_noise():
            from pytorchvideo.models.hub.resnet import i3d_r50

            net = i3d_r50(pretrained=False)
        if state_dict is not None:
            # the Kinetics classifier head may be absent from a trunk-only file
            load_state_dict_strict(net, state_dict, weights_path, "backbone i3d_r50 (pytorchvideo I3D-R50)",
                                   may_be_missing=self.HEAD_KEYS)
        # same key names as pytorchvideo's net ("blocks.N..."), so this module's own
        # state_dict() is a valid weights file too
        self.blocks = nn.ModuleList(list(net.blocks)[:-1])

    def embed(self, clips: torch.Tensor) -> torch.Tensor:
        self._check_clips(clips)
        x = clips
        for block in self.blocks:
            x = block(x)
        return x.mean(dim=(2, 3, 4))


@register_backbone("clip_vitb16")
class ClipViTB16(Backbone):
    """open_clip ViT-B/16 image tower: ``encode_image`` (unnormalised 512-d embedding) of each
    sampled frame, averaged over the frames of a snippet."""

    kind = "clip"
    dim = 512
    defaults = {"clip_len": 16, "frames_per_snippet": 16, "resize": 224, "crop_size": 224,
                "mean": [0.48145466, 0.4578275, 0.40821073], "std": [0.26862954, 0.26130258, 0.27577711]}
    _OPENAI_META_KEYS = ("input_resolution", "context_length", "vocab_size")

    def __init__(self, recipe, state_dict=None, weights_path=None):
        super().__init__(recipe)
        size = int(recipe.get("crop_size") or 224)
        with _quiet_library_noise():
            import open_clip

            # force_image_size resizes the positional embedding so small demo crops work
            model = open_clip.create_model("ViT-B-16", pretrained=None,
                                           **({} if size == 224 else {"force_image_size": size}))
        if state_dict is not None:
            sd = {k: v for k, v in state_dict.items() if k not in self._OPENAI_META_KEYS}
            has_visual = [k.startswith("visual.") for k in sd]
            what = "backbone clip_vitb16 (open_clip ViT-B-16"
            if all(has_visual):   # only the image tower, saved with its prefix
                load_state_dict_strict(model.visual, {k[len("visual."):]: v for k, v in sd.items()},
                                       weights_path, what + " image tower)")
            elif any(has_visual):  # a full CLIP state dict
                load_state_dict_strict(model, sd, weights_path, what + ")")
            else:                  # model.visual.state_dict()
                load_state_dict_strict(model.visual, sd, weights_path, what + " image tower)")
        # the text tower is not needed: keeping only the image tower saves ~250 MB
        self.visual = model.visual

    def embed(self, clips: torch.Tensor) -> torch.Tensor:
        self._check_clips(clips)
        n, c, f, h, w = clips.shape
        frames = clips.transpose(1, 2).reshape(n * f, c, h, w)
        return self.visual(frames).reshape(n, f, -1).mean(dim=1)


@register_backbone("i3d_r50_patch")
class I3DR50Patch(I3DR50):
    """The same I3D-R50 (same weights files) run on every cell of a grid of spatial patches
    (recipe key ``patch_grid: [rows, cols]``; ``features/patches.py``): store ``(rows*cols, T,
    2048)``, kind ``i3d_patch`` (SSRL's multi-scale patch features)."""

    kind = "i3d_patch"
    patches = True


@register_backbone("timesformer")
class TimeSformer(Backbone):
    """Hugging Face ``transformers`` TimeSformer-Base (divided space-time attention, patch 16,
    12 layers, 768-d): the final-layer-normed CLS token of each snippet.

    Frames: the model takes a fixed number of frames (``num_frames``, 8 for the Kinetics-400
    checkpoints); the recipe's ``frames_per_snippet`` (default 8) frames are sampled from each
    16-frame snippet at the centres of equal sub-windows (offsets 1, 3, ..., 15, i.e. every second
    frame; ``features/decode.py``). Mean/std as ``facebook/timesformer-base-finetuned-k400``'s
    processor (0.45 / 0.225). Weights: a local ``TimesformerModel`` or
    ``TimesformerForVideoClassification`` state dict (``.safetensors`` or torch file); its
    ``timesformer.`` prefix and classifier are dropped. Without a file: random init (loud)."""

    kind = "timesformer"
    dim = 768
    defaults = {"clip_len": 16, "frames_per_snippet": 8, "resize": 224, "crop_size": 224,
                "mean": [0.45, 0.45, 0.45], "std": [0.225, 0.225, 0.225]}
    PATCH = 16
    # TimeSformer-Base; the tests shrink the depth to keep the suite fast
    ARCH = {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12,
            "intermediate_size": 3072}

    def __init__(self, recipe, state_dict=None, weights_path=None):
        super().__init__(recipe)
        from transformers import TimesformerConfig, TimesformerModel

        size = int(recipe.get("crop_size") or 224)
        frames = int(recipe.get("frames_per_snippet") or 8)
        if size % self.PATCH:
            raise ValueError(f"backbone timesformer: crop_size {size} must be a multiple of the "
                             f"patch size {self.PATCH}")
        sd = None
        image_size = size
        if state_dict is not None:
            sd = {k.removeprefix("timesformer."): v for k, v in state_dict.items()
                  if not k.startswith("classifier.")}
            pos = sd.get("embeddings.position_embeddings")
            time = sd.get("embeddings.time_embeddings")
            if pos is not None:  # the weights' own resolution; other crops interpolate (HF code)
                image_size = int(round((pos.shape[1] - 1) ** 0.5)) * self.PATCH
            if time is not None and time.shape[1] != frames:
                raise WeightsMismatchError(weights_path, f"expects {time.shape[1]} frames per clip; "
                                           f"set the recipe's frames_per_snippet to {time.shape[1]}")
        config = TimesformerConfig(image_size=image_size, num_frames=frames, patch_size=self.PATCH,
                                   attention_type="divided_space_time", **self.ARCH)
        self.model = TimesformerModel(config)
        if sd is not None:
            load_state_dict_strict(self.model, sd, weights_path,
                                   "backbone timesformer (transformers TimesformerModel)")

    def embed(self, clips: torch.Tensor) -> torch.Tensor:
        self._check_clips(clips)
        # (N, 3, F, S, S) -> the (N, F, 3, S, S) pixel_values transformers expects
        out = self.model(pixel_values=clips.transpose(1, 2)).last_hidden_state
        return out[:, 0]


@register_backbone("i3d_kinetics")
class I3DKinetics(Backbone):
    """Kinetics I3D (InceptionV1), 1024-d: the UR-DMU / XD-Violence family, imported from the
    published features (no extractor yet)."""

    kind = "i3d"
    dim = 1024
    defaults = {"clip_len": 16, "frames_per_snippet": 16, "resize": 256, "crop_size": 224,
                "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]}

    def __init__(self, recipe, state_dict=None, weights_path=None):
        raise NotImplementedError("backbone i3d_kinetics: features of this family are imported "
                                  "(datasets.<d>.import_features), not extracted")
