"""Import published snippet features (.npy) into the Zarr store contract, one shard at a time.

Three layouts are in use:

* ``rtfm`` (RTFM, S3R, MGFN; UCF-Crime and ShanghaiTech): one file per video,
  ``{video}_i3d.npy`` of shape ``(T, 10, 2048)`` (I3D-ResNet50, ten crops).
* ``urdmu`` (DeepMIL/XDVioDet features used by UR-DMU, BN-WVAD): one file per crop,
  ``{video}__{k}.npy`` of shape ``(T, 1024)`` (Kinetics I3D); 10 crops on UCF-Crime, 5 on
  XD-Violence.
* ``vadclip`` (VadCLIP): one file per crop, ``{video}__{k}.npy`` of shape ``(T, 512)`` (CLIP
  ViT-B/16); VadCLIP tests on one crop (``__5`` UCF-Crime, ``__0`` XD-Violence).

Where the files are is a template per split relative to the feature root, with ``{video}``,
``{crop}`` and ``{folder}`` (the class folder of the official list path). Every video becomes
one float16 array ``(crops, T, D)``; a missing file, a wrong shape or crops of different lengths
raise an error naming the files. Imports are CPU-only and read with ``mmap_mode="r"`` so a
shard holds one video at a time.

This module imports neither torch nor zarr at load time: the workflow calls
``video_feature_paths`` while it builds the DAG.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from wsvad_core.errors import FeatureError

log = logging.getLogger(__name__)

__all__ = ["IMPORT_LAYOUTS", "normalize_import_spec", "video_feature_files", "video_feature_paths",
           "missing_feature_files",
           "load_video_features", "import_videos", "import_shard", "import_fingerprint"]

# file layout -> feature dim, one file per crop?, crops in the files, feature kind and family, and
# the view of each file crop index (features/transforms.py names; what the sources say of them)
IMPORT_LAYOUTS = {
    "rtfm": {"dim": 2048, "per_crop": False, "crops": 10, "kind": "i3d", "family": "rtfm_i3d_r50",
             "source": "RTFM (Tian et al., ICCV 2021) ten-crop I3D-ResNet50 features",
             # RTFM#2/#7: "the Pytorch official 10-crop function" = torchvision TenCrop's order
             "views": ["tl", "tr", "bl", "br", "center", "flip_tr", "flip_tl", "flip_br", "flip_bl", "flip_center"]},
    "urdmu": {"dim": 1024, "per_crop": True, "crops": 10, "kind": "i3d", "family": "kinetics_i3d",
              "source": "DeepMIL / XDVioDet (Wu et al.) Kinetics I3D features, as used by UR-DMU",
              # DeepMIL's script is unreleased: UR-DMU's own extractor's (oversample) order, assumed
              "views": ["tl", "tr", "center", "bl", "br", "flip_tr", "flip_tl", "flip_center", "flip_br", "flip_bl"]},
    "vadclip": {"dim": 512, "per_crop": True, "crops": 10, "kind": "clip", "family": "vadclip_vitb16",
                "source": "VadCLIP (Wu et al., AAAI 2024) CLIP ViT-B/16 features",
                # src/crop.py, confirmed by the author (VadCLIP#2): __5 is the mirrored centre
                "views": ["center", "tl", "tr", "bl", "br", "flip_center", "flip_tl", "flip_tr", "flip_bl", "flip_br"]},
}
SPEC_KEYS = {"file_layout", "root", "train", "test", "crops", "views", "dim", "source", "notes"}


def normalize_import_spec(spec: Mapping, where: str = "import_features") -> dict:
    """Fill the layout's defaults and check an ``import_features.<feature set>`` entry."""
    s = dict(spec)
    for derived in ("per_crop", "kind", "family"):  # an already normalised spec passes again
        s.pop(derived, None)
    unknown = sorted(set(s) - SPEC_KEYS)
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; valid: {sorted(SPEC_KEYS)}")
    layout = s.get("file_layout")
    if layout not in IMPORT_LAYOUTS:
        raise ValueError(f"{where}.file_layout: {layout!r} is not one of {sorted(IMPORT_LAYOUTS)}")
    d = IMPORT_LAYOUTS[layout]
    for k in ("root", "train", "test"):
        if not s.get(k):
            raise ValueError(f"{where}.{k}: missing (feature root folder / per-split file template)")
    crops = s.get("crops", d["crops"])
    crops = list(range(crops)) if isinstance(crops, int) else [int(c) for c in crops]
    if not crops or len(set(crops)) != len(crops) or min(crops) < 0:
        raise ValueError(f"{where}.crops: {crops} must be distinct non-negative crop indices")
    from wsvad_core.recipes import VIEWS

    file_views = list(s.get("views") or d["views"])
    if len(file_views) < max(crops) + 1 or len(set(file_views)) != len(file_views) or set(file_views) - set(VIEWS):
        raise ValueError(f"{where}.views: {file_views} must name every crop index of the files "
                         f"(distinct names of {list(VIEWS)})")
    for split in ("train", "test"):
        t = str(s[split])
        if "{video}" not in t or (d["per_crop"] and "{crop}" not in t):
            need = "{video} and {crop}" if d["per_crop"] else "{video}"
            raise ValueError(f"{where}.{split}: template {t!r} must contain {need}")
    return {"file_layout": layout, "root": str(s["root"]), "train": str(s["train"]),
            "test": str(s["test"]), "crops": crops, "views": file_views,
            "dim": int(s.get("dim", d["dim"])), "per_crop": d["per_crop"], "kind": d["kind"],
            "family": d["family"], "source": str(s.get("source") or d["source"]),
            "notes": str(s.get("notes") or "")}


def store_views(spec: Mapping) -> list[str]:
    """The view of each crop index of the store an import spec makes (the imported file crops)."""
    return [spec["views"][c] for c in spec["crops"]]


def video_feature_files(video: Mapping, spec: Mapping) -> list[str]:
    """The published files of one video (``video`` has video_id, split, folder), as strings:
    the DAG builds 40,000 of them for UCF-Crime, where ``Path`` objects cost seconds."""
    template = os.path.join(spec["root"], spec[video["split"]])
    fields = {"video": video["video_id"], "folder": video.get("folder") or ""}
    if not spec["per_crop"]:
        return [os.path.normpath(template.format(**fields))]
    return [os.path.normpath(template.format(crop=k, **fields)) for k in spec["crops"]]


def video_feature_paths(video: Mapping, spec: Mapping) -> list[Path]:
    return [Path(f) for f in video_feature_files(video, spec)]


def missing_feature_files(videos: Iterable[Mapping], spec: Mapping,
                          files: Mapping[str, list[str]] | None = None) -> dict[str, list[Path]]:
    """video_id -> its missing files (only videos with at least one); ``files`` (video_id ->
    files) when the caller has them already. One directory listing per folder instead of a stat
    per file: UCF-Crime has 19,000 crop files in ~16 folders."""
    listings: dict[str, set[str]] = {}

    def exists(f: str) -> bool:
        folder, name = os.path.split(f)
        if folder not in listings:
            try:
                listings[folder] = {e.name for e in os.scandir(folder or ".") if not e.is_dir()}
            except (FileNotFoundError, NotADirectoryError):
                listings[folder] = set()
        return name in listings[folder]

    out = {}
    for v in videos:
        fs = files[v["video_id"]] if files is not None else video_feature_files(v, spec)
        miss = [Path(f) for f in fs if not exists(f)]
        if miss:
            out[v["video_id"]] = miss
    return out


def _describe_missing(missing: Mapping[str, list[Path]], spec: Mapping) -> str:
    sample = "; ".join(f"{v}: {', '.join(p.name for p in ps[:3])}{' ...' if len(ps) > 3 else ''}"
                       for v, ps in list(missing.items())[:10])
    more = f" (+{len(missing) - 10} more videos)" if len(missing) > 10 else ""
    return (f"{len(missing)} videos have missing feature files under {spec['root']} "
            f"(layout {spec['file_layout']}): {sample}{more}")


def load_video_features(video_id: str, paths: Sequence[Path], spec: Mapping):
    """float32/float16 ndarray ``(crops, T, D)`` of one video from its published files."""
    import numpy as np

    d = spec["dim"]
    if not spec["per_crop"]:
        (path,) = paths
        a = _load(path)
        if a.ndim != 3 or a.shape[2] != d or a.shape[0] < 1:
            raise FeatureError(f"{path}: video {video_id!r} has shape {a.shape}; file layout "
                               f"{spec['file_layout']} expects (T, crops, {d})")
        if max(spec["crops"]) >= a.shape[1]:
            raise FeatureError(f"{path}: video {video_id!r} has {a.shape[1]} crops (shape "
                               f"{a.shape}); crops {spec['crops']} were asked for")
        return np.ascontiguousarray(np.asarray(a[:, spec["crops"]]).transpose(1, 0, 2))
    arrays = []
    for path in paths:
        a = _load(path)
        if a.ndim == 3 and a.shape[1] == 1:  # (T, 1, D) as some extractors save
            a = a[:, 0]
        if a.ndim != 2 or a.shape[1] != d or a.shape[0] < 1:
            raise FeatureError(f"{path}: video {video_id!r} has shape {a.shape}; file layout "
                               f"{spec['file_layout']} expects (T, {d}) per crop file")
        arrays.append(a)
    lengths = {p.name: a.shape[0] for p, a in zip(paths, arrays)}
    if len(set(lengths.values())) > 1:
        raise FeatureError(f"video {video_id!r}: its crop files have different lengths T "
                           f"{lengths} (under {paths[0].parent})")
    return np.stack([np.asarray(a) for a in arrays])


def _load(path: Path):
    import numpy as np

    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: feature file not found") from None
    except (ValueError, OSError) as err:
        raise FeatureError(f"{path}: not a readable .npy array ({err})") from err


def import_fingerprint(recipe: Mapping, spec: Mapping) -> str:
    """sha256 of what the arrays depend on (recipe and import spec without the root folder, so
    moving the feature folder does not force a re-import)."""
    # what the extractor would use (weights, batching) does not change published files
    key = {"recipe": {k: v for k, v in recipe.items()
                      if k not in ("batch_size", "name", "weights", "init_seed", "notes")},
           "spec": {k: v for k, v in spec.items() if k not in ("root", "source", "notes")}}
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()


def import_provenance(spec: Mapping) -> dict:
    return {"weights": f"published:{spec['file_layout']}", "source": spec["source"],
            "root": spec["root"], "file_layout": spec["file_layout"]}


def import_videos(videos: Sequence[Mapping], spec: Mapping, store_dir: str | os.PathLike,
                  clip_len: int, fingerprint: str = "", progress: bool = False,
                  dtype: str = "float16") -> list[dict]:
    """Write every video of ``videos`` (rows with video_id, split, label, class, folder,
    n_frames) into ``store_dir``; all files are checked to exist before the first write."""
    from tqdm import tqdm

    from wsvad_core.features.store import write_video_array

    missing = missing_feature_files(videos, spec)
    if missing:
        raise FileNotFoundError(_describe_missing(missing, spec))
    summaries = []
    for v in tqdm(videos, desc=f"import {spec['file_layout']}", unit="video", disable=not progress):
        paths = video_feature_paths(v, spec)
        feats = load_video_features(v["video_id"], paths, spec)
        n_frames = int(v.get("n_frames", -1))
        t = int(feats.shape[1])
        if n_frames > 0 and abs(t * clip_len - n_frames) > 2 * clip_len:
            log.warning("%s: %d snippets x %d = %d frames, the annotation says %d frames",
                        v["video_id"], t, clip_len, t * clip_len, n_frames)
        attrs = {"n_frames": n_frames, "fps": None, "label": int(v["label"]), "split": v["split"],
                 "class": v.get("class", v.get("cls")), "n_snippets": t, "clip_len": clip_len,
                 "stride": clip_len, "recipe_fingerprint": fingerprint,
                 "source_files": [str(p) for p in paths]}
        try:
            write_video_array(store_dir, v["video_id"], feats, attrs, dtype=dtype)
        except FeatureError as err:  # NaN/inf or overflow: name the published file(s) it came from
            raise FeatureError(f"{', '.join(map(str, paths))}: {err}") from err
        summaries.append({"video_id": v["video_id"], "shape": list(feats.shape)})
    return summaries


def import_shard(videos: Sequence[Mapping], spec: Mapping, recipe: Mapping,
                 store_dir: str | os.PathLike, marker_out: str | os.PathLike, progress: bool = True) -> dict:
    """The ``import_shard`` rule: import this shard's videos (given by the DAG) and write its
    marker last (``features/store.py: write_shard_marker``)."""
    from wsvad_core.features.store import write_shard_marker

    # this shard replaces arrays: the store is incomplete until it is finalised again
    Path(store_dir, "zarr.json").unlink(missing_ok=True)
    fp = import_fingerprint(recipe, spec)
    t0 = time.perf_counter()
    summaries = import_videos(videos, spec, store_dir, int(recipe.get("clip_len", 16)), fp, progress,
                              dtype=recipe.get("store_dtype", "float16"))
    marker = write_shard_marker(
        marker_out, videos=[s["video_id"] for s in summaries], fingerprint=fp,
        provenance=import_provenance(spec),
        store_attrs={"recipe": dict(recipe), "backbone": recipe.get("backbone"), "kind": spec["kind"],
                     "family": spec["family"], "views": store_views(spec), "import": dict(spec)},
        summaries=summaries, seconds=round(time.perf_counter() - t0, 2))
    log.info("import shard %s: %d videos in %.1f s", marker_out, len(summaries), marker["seconds"])
    return marker

