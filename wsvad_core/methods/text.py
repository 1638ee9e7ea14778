"""The CLIP text side shared by the text-prompt methods (VadCLIP, TPWNG).

* :class:`ClipTextEncoder`: open_clip's text tower (``ViT-B-16`` config: 12 layers, width 512,
  8 heads, 77 tokens, 49408-token vocabulary, QuickGELU as OpenAI's CLIP) that encodes *token
  embeddings* (so learnable prompt vectors can replace some of them) and pools the EOT position.
  Weights come from the local file the CLIP feature set names (its text keys), else a seeded
  random init, logged loudly as ``RANDOM-INIT``. The tower is frozen; frozen tensors are left
  out of ``state_dict()`` (a checkpoint stays small, and a rebuild restores them from the same
  file or seed), while an official checkpoint that carries them still loads them.
* :func:`class_names_from_manifest`, :func:`prepare_text_overrides`: the dataset's class names
  (``Normal`` first, as the official label maps) and the weights path, filled into a run's
  overrides by ``training/run.py`` for methods that declare ``prepare_overrides``.
"""

from __future__ import annotations

import logging
from typing import Any, Mapping

import torch
from torch import Tensor, nn

__all__ = ["ClipTextEncoder", "tokenize", "class_names_from_manifest", "prepare_text_overrides",
           "read_text_weights", "check_class_names", "TEXT_PROMPT_SPEC", "NORMAL",
           "UCF_CRIME_CLASSES"]

log = logging.getLogger(__name__)

NORMAL = "Normal"
# VadCLIP ucf_train.py label map order (Normal first, then alphabetical)
UCF_CRIME_CLASSES = ("Normal", "Abuse", "Arrest", "Arson", "Assault", "Burglary", "Explosion",
                     "Fighting", "RoadAccidents", "Robbery", "Shooting", "Shoplifting", "Stealing",
                     "Vandalism")
_TEXT_PREFIXES = ("token_embedding.", "positional_embedding", "transformer.", "ln_final.",
                  "text_projection")


def tokenize(texts: list[str] | tuple[str, ...], context_length: int = 77) -> Tensor:
    """CLIP BPE tokens (SOT ... EOT, zero padded), as OpenAI's ``clip.tokenize``."""
    import open_clip

    return open_clip.tokenize(list(texts), context_length=context_length)


def check_class_names(method: str, names) -> None:
    """Class-aware methods index ``class_names`` as the official label maps: ``Normal`` first,
    then at least one anomaly class."""
    if len(names) < 2 or names[0] != NORMAL:
        raise ValueError(f"{method}: class_names must start with {NORMAL!r} and name at least one "
                         f"anomaly class, got {names!r}")


def class_names_from_manifest(manifest) -> tuple[str, ...]:
    """``Normal`` then the other values of the manifest's ``class`` column, sorted (the order of
    the official UCF-Crime label map)."""
    if "class" not in manifest.columns:
        raise ValueError("manifest has no 'class' column; class-aware methods need it")
    names = sorted({str(c) for c in manifest["class"].dropna()} - {NORMAL})
    if not names:
        raise ValueError("manifest 'class' column names no anomaly class (only 'Normal')")
    return (NORMAL, *names)


def prepare_text_overrides(overrides: dict, store_attrs: Mapping, manifest) -> dict:
    """Fill ``class_names`` from the manifest and ``text_weights`` from the feature store's
    provenance (the CLIP weights file of the feature set) unless the config sets them."""
    out = dict(overrides)
    if "class_names" not in out:
        out["class_names"] = list(class_names_from_manifest(manifest))
    if "text_weights" not in out:
        weights = (store_attrs.get("provenance") or {}).get("weights")
        out["text_weights"] = None if weights in (None, "random-init") else str(weights)
    return out


# The MethodSpec fields every text-prompt method shares: CLIP features, VadCLIP's 256-snippet
# pad / mean-pool, the abnormal videos' classes, class names and CLIP weights from the data
TEXT_PROMPT_SPEC = dict(segment_policy="pad_pool", accepts=("clip",), needs_class_labels=True,
                        prepare_overrides=prepare_text_overrides)


def read_text_weights(path: str) -> dict[str, Tensor] | None:
    """The text-tower tensors of a CLIP weights file (open_clip / OpenAI state dict or TorchScript
    archive, optionally under ``clipmodel.``), or None when it only holds an image tower."""
    from wsvad_core.weights import read_state_dict

    sd = read_state_dict(path)
    out = {}
    for k, v in sd.items():
        k = k.removeprefix("clipmodel.")
        if k.startswith(_TEXT_PREFIXES):
            out[k] = v
    return out or None


class ClipTextEncoder(nn.Module):
    """Frozen open_clip text tower that encodes token embeddings.

    ``width``/``heads``/``layers`` (when given) override the model config (small towers for tests and the
    official-equivalence fixtures); ``embed_dim`` is the projection output (= the visual feature
    dim). ``train_projection`` leaves ``text_projection`` trainable (TPWNG fine-tunes it).
    """

    def __init__(self, model: str = "ViT-B-16", weights: str | None = None, embed_dim: int | None = None,
                 width: int | None = None, heads: int | None = None, layers: int | None = None,
                 quick_gelu: bool = True,
                 train_projection: bool = False):
        super().__init__()
        import open_clip
        from open_clip.model import _build_text_tower

        cfg = open_clip.get_model_config(model)
        if cfg is None:
            raise ValueError(f"text_model: open_clip has no model config {model!r}")
        text_cfg = dict(cfg["text_cfg"])
        for key, value in (("width", width), ("heads", heads), ("layers", layers)):
            if value:
                text_cfg[key] = int(value)
        embed_dim = int(embed_dim or cfg["embed_dim"])
        # the text tower alone: the same TextTransformer create_model() builds inside CLIP,
        # without the image tower this method never uses
        tower = _build_text_tower(embed_dim, text_cfg, quick_gelu=quick_gelu)
        self.context_length = int(text_cfg["context_length"])
        self.token_embedding = tower.token_embedding
        self.positional_embedding = tower.positional_embedding
        self.transformer = _sequence_first(tower.transformer)
        self.ln_final = tower.ln_final
        self.text_projection = tower.text_projection
        self.register_buffer("attn_mask", tower.attn_mask, persistent=False)
        self.provenance = self._load(weights, model)
        self.requires_grad_(False)
        if train_projection:
            self.text_projection.requires_grad_(True)
        self.register_state_dict_post_hook(_drop_frozen)
        self.register_load_state_dict_pre_hook(_fill_frozen)

    def _load(self, weights: str | None, model: str) -> dict[str, Any]:
        sd = read_text_weights(weights) if weights else None
        if sd is None:
            why = (f"the weights file {weights} holds no text tower" if weights
                   else "no CLIP weights file is configured")
            log.warning("RANDOM-INIT: CLIP text encoder (%s) is randomly initialised: %s. Text "
                        "prompts then carry no language knowledge; results are NOT comparable to "
                        "published numbers.", model, why)
            return {"text_weights": "random-init"}
        own = {k for k, _ in self.named_parameters()}
        missing = sorted(own - set(sd))
        bad = [f"{k} (file {tuple(sd[k].shape)}, model {tuple(p.shape)})"
               for k, p in self.named_parameters() if k in sd and sd[k].shape != p.shape]
        if missing or bad:
            raise ValueError(f"text_weights {weights}: does not fit the {model} text tower: "
                             f"missing {missing[:5]}, shape mismatch {bad[:5]}")
        with torch.no_grad():
            for k, p in self.named_parameters():
                p.copy_(sd[k].to(p.dtype))
        return {"text_weights": str(weights)}

    def embed_tokens(self, tokens: Tensor) -> Tensor:
        return self.token_embedding(tokens.to(self.token_embedding.weight.device))

    def forward(self, embeddings: Tensor, eot_index: Tensor) -> Tensor:
        """(N, L, width) token embeddings (prompt vectors included), (N,) EOT positions ->
        (N, embed_dim) text features (positional embedding, causal transformer, final LayerNorm,
        the EOT token projected), as OpenAI CLIP ``encode_text``.

        The attention is causal, so the slots after the last EOT cannot reach any EOT output:
        they are cut before the transformer (the same result, 3-7x less work for 77 slots)."""
        n = int(eot_index.max()) + 1
        x = embeddings[:, :n] + self.positional_embedding[:n].to(embeddings.dtype)
        x = self.transformer(x, attn_mask=self.attn_mask[:n, :n])
        x = self.ln_final(x)
        x = x[torch.arange(x.shape[0], device=x.device), eot_index.to(x.device)]
        proj = self.text_projection
        return proj(x) if isinstance(proj, nn.Linear) else x @ proj


def _sequence_first(transformer: nn.Module) -> nn.Module:
    """Run open_clip's text blocks on (L, N, W) activations (the layout of OpenAI's CLIP).
    A batch-first ``nn.MultiheadAttention`` transposes its input to (L, N, W) and projects that
    strided view, which torch runs as a batched matmul against a per-token copy of the weight:
    with gradients flowing through the frozen tower to the prompts, 2.8x slower than the plain
    matrix product it gets from a contiguous (L, N, W) input. The arithmetic is the same."""
    transformer.batch_first = False  # Transformer.forward transposes once in and once out
    for block in transformer.resblocks:
        block.attn.batch_first = False
    return transformer


def _drop_frozen(module: nn.Module, state_dict: dict, prefix: str, local_metadata) -> None:
    for name, p in module.named_parameters():
        if not p.requires_grad:
            state_dict.pop(prefix + name, None)


def _fill_frozen(module: nn.Module, state_dict: dict, prefix: str, local_metadata, strict,
                 missing_keys, unexpected_keys, error_msgs) -> None:
    for name, p in module.named_parameters():
        if not p.requires_grad and prefix + name not in state_dict:
            state_dict[prefix + name] = p.detach()
