"""Fabricated published features: random ``.npy`` files in a published layout (RTFM's one file
per video, UR-DMU's and VadCLIP's one file per crop) with the names the official lists use, for
the import tests and the benchmark pipeline test (moved here from
``wsvad_core.features.importers``, which no production code called)."""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np

from wsvad_core.features.importers import IMPORT_LAYOUTS, normalize_import_spec, video_feature_paths


def fabricate_published_features(videos: Iterable[Mapping], spec: Mapping, n_snippets: Mapping[str, int],
                                 seed: int = 0, dtype: str = "float16", n_file_crops: int | None = None,
                                 abnormal_shift: float = 0.0) -> list[Path]:
    """Write random features for ``videos`` (rows with video_id, split, folder, label): one file
    per video (``rtfm``, ``(T, n_file_crops, D)``) or per crop (``(T, D)``), T from
    ``n_snippets``. ``abnormal_shift`` adds a constant to abnormal videos' features so that a
    method can learn something from them. Returns the files written."""
    spec = normalize_import_spec(spec)
    rng = np.random.default_rng(seed)
    written = []
    for v in videos:
        t = int(n_snippets[v["video_id"]])
        shift = abnormal_shift if int(v.get("label", 0)) else 0.0
        paths = video_feature_paths(v, spec)
        if spec["per_crop"]:
            arrays = [rng.standard_normal((t, spec["dim"])) + shift for _ in paths]
        else:
            c = n_file_crops or IMPORT_LAYOUTS[spec["file_layout"]]["crops"]
            arrays = [rng.standard_normal((t, c, spec["dim"])) + shift]
        for p, a in zip(paths, arrays):
            p.parent.mkdir(parents=True, exist_ok=True)
            np.save(p, a.astype(dtype))
            written.append(p)
    return written
