"""pytorchvideo's I3D-R50 (its ``i3d_r50`` hub architecture): a good 3D backbone, but not the
network behind the field's published I3D-R50 features (that is Tushar-N's ``I3Res50``,
``i3res50.py``: other strides and pools, another function of the same weights)."""
from __future__ import annotations

import torch
from torch import nn

from wsvad_core.weights import load_state_dict_strict

from .base import Backbone, _quiet_library_noise, register_backbone


@register_backbone("pytorchvideo_i3d_r50")
class PytorchvideoI3DR50(Backbone):
    """pytorchvideo's I3D-R50 (Kinetics-400 8x8 layout; weights: pytorchvideo's ``I3D_8x8_R50.pyth``
    or any ``i3d_r50`` state dict). Feature: the 2048-d output of the last res stage averaged over
    T, H and W (the head's pooled, pre-projection vector; the head's fixed 4x7x7 pool assumes
    8x224x224 input, a global mean works at any clip length and crop size)."""

    kind = "i3d"
    dim = 2048
    family = "pytorchvideo_i3d_r50"
    # pytorchvideo's Kinetics recipe: mean/std on [0, 1] RGB
    defaults = {"clip_len": 16, "frames_per_snippet": 16, "resize": 256, "crop_size": 224,
                "mean": [0.45, 0.45, 0.45], "std": [0.225, 0.225, 0.225]}
    weights_file = {"name": "I3D_8x8_R50.pyth", "source": "pytorchvideo model zoo (Kinetics-400)"}
    HEAD_KEYS = ("blocks.6.proj.weight", "blocks.6.proj.bias")

    def __init__(self, recipe, state_dict=None, weights_path=None):
        super().__init__(recipe)
        with _quiet_library_noise():
            from pytorchvideo.models.hub.resnet import i3d_r50

            net = i3d_r50(pretrained=False)
        if state_dict is not None:
            # the Kinetics classifier head may be absent from a trunk-only file
            load_state_dict_strict(net, state_dict, weights_path,
                                   "backbone pytorchvideo_i3d_r50 (pytorchvideo I3D-R50)",
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
