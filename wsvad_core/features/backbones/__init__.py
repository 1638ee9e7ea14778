"""Feature backbones: one module per network, each registering itself (``base.register_backbone``)
with its card (kind, dimension, family, recipe defaults, public weights file)."""
# self-registration
from . import clip, i3res50, inception_i3d, pytorchvideo_i3d, timesformer  # noqa: E402,F401
from .base import Backbone, backbone_class, check_weights, create_backbone, list_backbones, register_backbone

__all__ = ["Backbone", "backbone_class", "check_weights", "create_backbone", "list_backbones",
           "register_backbone"]
