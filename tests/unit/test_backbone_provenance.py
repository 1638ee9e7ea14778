"""A weights file that loads but is not the published one is said so: its sha256 and the
published one go into the provenance (store attributes) and a warning names both."""
from __future__ import annotations

import logging
from pathlib import Path

import torch

from seeded_weights import load_layout, seeded_state_dict
from wsvad_core.features.backbones import backbone_class, create_backbone
from wsvad_core.recipes import normalize_recipe
from wsvad_core.weights import file_sha256

LAYOUT = Path(__file__).resolve().parents[1] / "fixtures" / "extractors" / "gowtham_i3res50" / "layout.json"


def test_a_file_other_than_the_published_one_is_flagged(tmp_path, monkeypatch, caplog):
    weights = tmp_path / "i3d_r50_kinetics.pth"
    torch.save(seeded_state_dict(load_layout(LAYOUT), 0), weights)
    recipe = normalize_recipe({"backbone": "i3res50", "name": "r", "weights": str(weights)})
    cls = backbone_class("i3res50")
    # as if Tushar-N's file had a fixed published checksum (the OpenAI CLIP file does)
    monkeypatch.setattr(cls, "weights_file", {**cls.weights_file, "sha256": "0" * 64})
    with caplog.at_level(logging.WARNING):
        model = create_backbone("i3res50", recipe)
    assert model.provenance == {"weights": str(weights), "sha256": file_sha256(weights), "published_sha256": "0" * 64}
    assert "not the published i3d_r50_kinetics.pth" in caplog.text and "rtfm_i3d_r50" in caplog.text
    # the same file with its own checksum published: no warning
    caplog.clear()
    monkeypatch.setattr(cls, "weights_file", {**cls.weights_file, "sha256": file_sha256(weights)})
    with caplog.at_level(logging.WARNING):
        model = create_backbone("i3res50", recipe)
    assert "published_sha256" not in model.provenance and "not the published" not in caplog.text
