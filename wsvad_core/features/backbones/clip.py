"""CLIP ViT-B/16 image towers (open_clip): one embedding per frame, averaged over the frames
a recipe samples from each snippet (``frames_per_snippet``; 1 frame per snippet with
``clip_len: 1`` gives VadCLIP's per-frame features)."""
from __future__ import annotations

import torch

from wsvad_core.errors import WeightsMismatchError
from wsvad_core.weights import load_state_dict_strict

from .base import Backbone, _quiet_library_noise, register_backbone

CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]
# entries of OpenAI's TorchScript files that are not weights (build_model drops them)
_OPENAI_META_KEYS = ("input_resolution", "context_length", "vocab_size")


class _ClipTower(Backbone):
    defaults = {"clip_len": 16, "frames_per_snippet": 16, "resize": 224, "crop_size": 224,
                "mean": CLIP_MEAN, "std": CLIP_STD}

    def embed(self, clips: torch.Tensor) -> torch.Tensor:
        self._check_clips(clips)
        n, c, f, h, w = clips.shape
        frames = clips.transpose(1, 2).reshape(n * f, c, h, w)
        return self.visual(frames).reshape(n, f, -1).mean(dim=1)


@register_backbone("openai_clip_vitb16")
class OpenAIClipViTB16(_ClipTower):
    """OpenAI's CLIP ViT-B/16 (QuickGELU), the image tower VadCLIP, CLIP-TSA and TPWNG use
    (``clip.load("ViT-B/16")``), read from OpenAI's ``ViT-B-16.pt`` as distributed (a TorchScript
    archive) or from a plain state dict in that layout, built by open_clip's
    ``build_model_from_openai_state_dict``; fp32 (VadCLIP's bundled ``build_model`` leaves
    ``convert_weights`` out). A file of another CLIP size is refused."""

    kind = "clip"
    dim = 512
    family = "vadclip_vitb16"
    weights_file = {"name": "ViT-B-16.pt", "source": "OpenAI CLIP (openai/CLIP clip/clip.py _MODELS)",
                    "sha256": "5806e77cd80f8b59890b7e101eabd078d9fb84e6937f9e85e4ecb61988df416f"}
    # what build_model infers from a ViT-B/16 file
    ARCH = {"visual.conv1.weight": (768, 3, 16, 16), "visual.proj": (768, 512)}

    def __init__(self, recipe, state_dict=None, weights_path=None):
        super().__init__(recipe)
        size = int(recipe.get("crop_size") or 224)
        with _quiet_library_noise():
            import open_clip
            from open_clip.model import build_model_from_openai_state_dict

            if state_dict is None:
                model = open_clip.create_model("ViT-B-16", pretrained=None, quick_gelu=True,
                                               **({} if size == 224 else {"force_image_size": size}))
            else:
                sd = {k: v for k, v in state_dict.items() if k not in _OPENAI_META_KEYS}
                shapes = {k: tuple(sd[k].shape) if k in sd else None for k in self.ARCH}
                if shapes != self.ARCH:
                    raise WeightsMismatchError(weights_path, "is not an OpenAI-layout CLIP ViT-B/16 file: "
                                               f"expected shapes {self.ARCH}, found {shapes}")
                px = int(round((sd["visual.positional_embedding"].shape[0] - 1) ** 0.5)) * 16
                if px != size:
                    raise WeightsMismatchError(weights_path, f"is a {px} px model; set the recipe's "
                                               f"crop_size to {px}")
                try:
                    model = build_model_from_openai_state_dict(dict(sd), quick_gelu=True, cast_dtype=None)
                except (RuntimeError, KeyError) as err:
                    raise WeightsMismatchError(weights_path, f"does not fit OpenAI's CLIP layout: {err}") from err
        self.visual = model.visual.float()


@register_backbone("openclip_vitb16")
class OpenClipViTB16(_ClipTower):
    """open_clip's own ``ViT-B-16`` (``nn.GELU``; the architecture of open_clip's LAION-trained
    checkpoints, which are open_clip state dicts). Not OpenAI's ViT-B/16, which uses QuickGELU
    (``openai_clip_vitb16``): on the same weights the two differ by ~2e-2."""

    kind = "clip"
    dim = 512
    family = "openclip_vitb16"
    weights_file = {"name": "open_clip_pytorch_model.bin",
                    "source": "an open_clip ViT-B-16 checkpoint (e.g. laion2b_s34b_b88k)"}

    def __init__(self, recipe, state_dict=None, weights_path=None):
        super().__init__(recipe)
        size = int(recipe.get("crop_size") or 224)
        with _quiet_library_noise():
            import open_clip

            # force_image_size resizes the positional embedding so small demo crops work
            model = open_clip.create_model("ViT-B-16", pretrained=None,
                                           **({} if size == 224 else {"force_image_size": size}))
        if state_dict is not None:
            sd = {k: v for k, v in state_dict.items() if k not in _OPENAI_META_KEYS}
            has_visual = [k.startswith("visual.") for k in sd]
            what = "backbone openclip_vitb16 (open_clip ViT-B-16"
            if all(has_visual):   # only the image tower, saved with its prefix
                load_state_dict_strict(model.visual, {k[len("visual."):]: v for k, v in sd.items()},
                                       weights_path, what + " image tower)")
            elif any(has_visual):  # a full CLIP state dict
                load_state_dict_strict(model, sd, weights_path, what + ")")
            else:                  # model.visual.state_dict()
                load_state_dict_strict(model.visual, sd, weights_path, what + " image tower)")
        # the text tower is not needed: keeping only the image tower saves ~250 MB
        self.visual = model.visual
