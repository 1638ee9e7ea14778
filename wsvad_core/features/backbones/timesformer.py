"""TimeSformer-Base from Hugging Face ``transformers``."""
from __future__ import annotations

import torch

from wsvad_core.errors import WeightsMismatchError
from wsvad_core.weights import load_state_dict_strict

from .base import Backbone, register_backbone


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
    family = "timesformer"
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
