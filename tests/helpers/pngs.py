"""Reading the PNGs the plots write: pixels, and where the ground-truth shade is."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.image import imread

GT_RGB = np.array([0xE4, 0x57, 0x2E]) / 255 * 0.22 + (1 - 0.22)  # the GT shade on white


def png(path: Path) -> np.ndarray:
    """RGB pixels of a PNG file (asserting it is one)."""
    assert Path(path).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", path
    return imread(path)[..., :3]


def shaded_columns(img: np.ndarray) -> np.ndarray:
    """Columns where a third or more of the pixels have the ground-truth shade."""
    close = np.abs(img - GT_RGB).max(axis=-1) < 0.02
    return np.flatnonzero(close.mean(axis=0) > 0.3)
