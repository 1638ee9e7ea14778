"""Tushar-N's ``I3Res50`` (pytorch-resnet3d ``models/resnet.py``, no non-local blocks): the network
behind the RTFM / S3R / MGFN / SSRL ten-crop I3D-ResNet50 features, composed here from
pytorchvideo's ResNet builders with I3Res50's own strides and pools.

What differs from pytorchvideo's ``i3d_r50`` (``pytorchvideo_i3d.py``) although the parameter
shapes are the same: the stem conv (5, 7, 7) has stride (2, 2, 2); the stem max-pool (2, 3, 3)
has stride (2, 2, 2) and no padding; a (2, 1, 1) max-pool follows the first stage; the
temporal kernels of the first 1x1 convs alternate per block as ``temp_conv`` does there
([1,1,1], [1,0,1,0], [1,0,1,0,1,0], [0,1,0]: 3 = (3,1,1), 0 = (1,1,1)). On 16x224x224 the stem
gives 64x4x55x55 and the last stage 2048x2x7x7; the feature is their mean (``AdaptiveAvgPool3d(1)``
after ``layer4``). BatchNorm eps 1e-5.

Weights: ``i3d_r50_kinetics.pth`` as Tushar-N's ``utils/convert_weights.py`` writes it (keys
``conv1.*``, ``bn1.*``, ``layerL.B.{conv,bn}{1,2,3}.*``, ``layerL.0.downsample.{0,1}.*``, ``fc.*``;
no ``num_batches_tracked``), read as it is and renamed here to the pytorchvideo modules.
"""
from __future__ import annotations

import re

import torch
from torch import nn

from wsvad_core.weights import load_state_dict_as

from .base import Backbone, _quiet_library_noise, register_backbone

# temporal kernel of conv_a per block of each stage (models/resnet.py: temp_conv)
TEMP_CONV = ((1, 1, 1), (1, 0, 1, 0), (1, 0, 1, 0, 1, 0), (0, 1, 0))
_NAMES = {"conv_a": "conv1", "norm_a": "bn1", "conv_b": "conv2", "norm_b": "bn2", "conv_c": "conv3",
          "norm_c": "bn3", "branch1_conv": "downsample.0", "branch1_norm": "downsample.1"}
# I3Res50 layer of each pytorchvideo block (block 2 is the pool after layer1)
_BLOCK_LAYER = {1: 1, 3: 2, 4: 3, 5: 4}


def official_key(key: str) -> str:
    """This module's key -> its name in ``i3d_r50_kinetics.pth``."""
    parts = key.split(".")
    if parts[:2] == ["blocks", "0"]:
        return {"conv": "conv1", "norm": "bn1"}[parts[2]] + "." + ".".join(parts[3:])
    m = re.fullmatch(r"blocks\.(\d)\.res_blocks\.(\d+)\.(?:branch2\.)?(\w+)\.(\w+)", key)
    if not m:
        raise KeyError(key)
    block, index, name, rest = m.groups()
    return f"layer{_BLOCK_LAYER[int(block)]}.{index}.{_NAMES[name]}.{rest}"


@register_backbone("i3res50")
class I3Res50(Backbone):
    """Tushar-N's I3Res50 (RTFM family), 2048-d."""

    kind = "i3d"
    dim = 2048
    family = "rtfm_i3d_r50"
    # Tushar-N's Kinetics recipe (utils/util.py): short side 256, 0..255 with mean 114.75 and
    # std 57.375 = [0, 1] with 0.45 / 0.225; the extractors of the field use other recipes
    # (config/feature_sets.yaml)
    defaults = {"clip_len": 16, "frames_per_snippet": 16, "resize": 256, "crop_size": 224,
                "mean": [0.45, 0.45, 0.45], "std": [0.225, 0.225, 0.225]}
    weights_file = {"name": "i3d_r50_kinetics.pth",
                    "source": "Tushar-N/pytorch-resnet3d: utils/convert_weights.py on the video-nonlocal "
                              "caffe2 file i3d_baseline_32x2_IN_pretrain_400k.pkl (no fixed sha256: made locally)"}

    def __init__(self, recipe, state_dict=None, weights_path=None):
        super().__init__(recipe)
        with _quiet_library_noise():
            from pytorchvideo.models.resnet import create_bottleneck_block, create_res_basic_stem, create_res_stage

        blocks = [create_res_basic_stem(in_channels=3, out_channels=64, conv_kernel_size=(5, 7, 7),
                                        conv_stride=(2, 2, 2), conv_padding=(2, 3, 3),
                                        pool=nn.MaxPool3d, pool_kernel_size=(2, 3, 3),
                                        pool_stride=(2, 2, 2), pool_padding=(0, 0, 0))]
        dim_in = 64
        for stage, (temp, depth) in enumerate(zip(TEMP_CONV, (3, 4, 6, 3))):
            inner = 64 * 2**stage
            kernels = [(3, 1, 1) if t else (1, 1, 1) for t in temp]
            blocks.append(create_res_stage(
                depth=depth, dim_in=dim_in, dim_inner=inner, dim_out=inner * 4, bottleneck=create_bottleneck_block,
                conv_a_kernel_size=kernels, conv_a_stride=(1, 1, 1),
                conv_a_padding=[[k[0] // 2, 0, 0] for k in kernels],
                conv_b_kernel_size=(1, 3, 3), conv_b_stride=(1, 1 if stage == 0 else 2, 1 if stage == 0 else 2),
                conv_b_padding=(0, 1, 1)))
            dim_in = inner * 4
            if stage == 0:
                blocks.append(nn.MaxPool3d(kernel_size=(2, 1, 1), stride=(2, 1, 1)))  # maxpool2
        self.blocks = nn.ModuleList(blocks)
        if state_dict is not None:
            load_state_dict_as(self, state_dict, weights_path,
                               "backbone i3res50 (Tushar-N I3Res50, the layout of i3d_r50_kinetics.pth)",
                               official_key, ignore=("fc.",))

    def embed(self, clips: torch.Tensor) -> torch.Tensor:
        self._check_clips(clips)
        x = clips
        for block in self.blocks:
            x = block(x)
        return x.mean(dim=(2, 3, 4))
