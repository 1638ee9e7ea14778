"""Zarr v3 feature store: one group per (dataset, feature set), one array per video.

Layout of ``X.zarr/``::

    zarr.json          root group: recipe, provenance, video list, consolidated metadata.
                       Written only by ``finalize_store`` (the merge step), so its presence
                       means the store is complete; shard jobs never touch it.
    <video_id>/        array (crops, T, D) of the recipe's store_dtype (float16 by default,
                       float32 exact to the extractor), chunked along T, attributes
                       n_frames, fps, label, split (+ whatever the extractor passes)
    .tmp/              arrays being written; renamed into place when complete

A crash mid-write leaves at most an entry under ``.tmp/``, never a partial array under its
final name (``os.replace`` of a directory is atomic on one filesystem).
"""
from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import warnings
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

import numpy as np
import zarr

from wsvad_core.errors import WRITE_ERRNOS, FeatureError, StorageError
from wsvad_core.io import json_default

log = logging.getLogger(__name__)

__all__ = ["write_video_array", "finalize_store", "write_shard_marker", "finalize_from_shards", "open_store",
           "FeatureStore", "check_video_features", "list_written_videos", "TMP_DIR", "CHUNK_T"]

TMP_DIR = ".tmp"
CHUNK_T = 128  # snippets per chunk: ~5 MB for 10 crops x 2048-d float16
_RESERVED = {"zarr.json", TMP_DIR}


def _check_video_id(video_id: str) -> str:
    vid = str(video_id)
    if not vid or "/" in vid or "\\" in vid or vid.startswith(".") or vid in _RESERVED:
        raise FeatureError(f"video id {vid!r} cannot name an array in the feature store "
                           "(empty, contains a path separator, or starts with '.')")
    return vid


def _jsonable(obj) -> dict:
    """Attributes as plain JSON (numpy scalars, tuples and paths show up in recipes)."""
    return json.loads(json.dumps(dict(obj), default=json_default, allow_nan=False))


def _fill(z, data: np.ndarray, chunk_t: int) -> None:
    # chunk by chunk: bounded memory for the encoder, and a natural place for a crash test
    for t0 in range(0, data.shape[1], chunk_t):
        z[:, t0:t0 + chunk_t] = data[:, t0:t0 + chunk_t]


STORE_DTYPES = ("float16", "float32")


def write_video_array(store_dir: str | os.PathLike, video_id: str, array, attrs: Mapping,
                      dtype: str = "float16") -> Path:
    """Write one video's features ``(crops, T, D)`` as ``dtype`` (float16, half the bytes, or
    float32, exact to the extractor) under ``store_dir/video_id``, atomically; an older array of
    that id is replaced. NaN/inf (also after the float16 cast, i.e. |x| > 65504) raise
    ``FeatureError`` and nothing is written."""
    store_dir = Path(store_dir)
    vid = _check_video_id(video_id)
    data = np.asarray(array)
    where = f"feature store {store_dir}, video {vid!r}"
    if data.ndim != 3 or min(data.shape) < 1:
        raise FeatureError(f"{where}: expected a non-empty (crops, T, D) array, got shape {data.shape}")
    bad = int(np.size(data) - np.count_nonzero(np.isfinite(data)))
    if bad:
        raise FeatureError(f"{where}: {bad} NaN/inf values in the features (shape {data.shape}); "
                           "not written")
    if dtype not in STORE_DTYPES:
        raise ValueError(f"store dtype {dtype!r}: expected one of {STORE_DTYPES}")
    with np.errstate(over="ignore"):  # overflow is reported below, with the video's name
        stored = data.astype(dtype)
    bad = int(np.size(stored) - np.count_nonzero(np.isfinite(stored)))
    if bad:
        raise FeatureError(f"{where}: {bad} values overflow float16 (|x| > 65504, max |x| = "
                           f"{float(np.abs(data).max()):.4g}); not written")
    crops, t, d = stored.shape
    chunk_t = min(t, CHUNK_T)
    tmp_root = store_dir / TMP_DIR
    tmp_root.mkdir(parents=True, exist_ok=True)
    tmp = tmp_root / f"{vid}.{os.getpid()}.{secrets.token_hex(4)}"
    final = store_dir / vid
    try:
        z = zarr.create_array(store=str(tmp), shape=stored.shape, chunks=(crops, chunk_t, d),
                              dtype=dtype, fill_value=0.0, zarr_format=3,
                              attributes=_jsonable(attrs))
        _fill(z, stored, chunk_t)
        if final.exists():
            # a directory cannot be renamed onto a non-empty one: move the old array aside
            # first; in between, the id is absent (never partial)
            old = tmp_root / f"{vid}.old.{os.getpid()}.{secrets.token_hex(4)}"
            os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
    except OSError as err:
        shutil.rmtree(tmp, ignore_errors=True)
        if err.errno not in WRITE_ERRNOS:
            raise
        raise StorageError(f"the features of video {vid!r} into the feature store {store_dir}", store_dir,
                           err) from err
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def _read_node(path: Path) -> dict | None:
    meta = path / "zarr.json"
    if not meta.is_file():
        return None
    try:
        return json.loads(meta.read_text())
    except (OSError, ValueError):
        return None


def list_written_videos(store_dir: str | os.PathLike) -> dict[str, dict]:
    """video_id -> array metadata (zarr.json) of every complete array in the directory."""
    store_dir = Path(store_dir)
    out = {}
    if not store_dir.is_dir():
        return out
    for p in sorted(store_dir.iterdir()):
        if p.name.startswith(".") or not p.is_dir():
            continue
        node = _read_node(p)
        if node is not None and node.get("node_type") == "array":
            out[p.name] = node
    return out


def finalize_store(store_dir: str | os.PathLike, attrs: Mapping,
                   video_ids: Iterable[str] | None = None) -> Path:
    """The merge step: keep exactly ``video_ids`` (all must be present; default: every
    complete array), drop leftovers of crashed writes, write the root group ``zarr.json`` with
    ``attrs`` plus ``videos``, ``dim`` and ``crops``, and consolidate the metadata."""
    store_dir = Path(store_dir)
    if not store_dir.is_dir():
        raise FeatureError(f"feature store {store_dir} does not exist; no shard wrote into it")
    shutil.rmtree(store_dir / TMP_DIR, ignore_errors=True)
    written = list_written_videos(store_dir)
    if video_ids is None:
        videos = list(written)
    else:
        videos = [_check_video_id(v) for v in video_ids]
        missing = [v for v in videos if v not in written]
        if missing:
            raise FeatureError(f"feature store {store_dir}: {len(missing)} videos have no complete "
                               f"array: {missing[:10]}")
        for stale in sorted(set(written) - set(videos)):
            log.info("feature store %s: removing array %r (not in the video list)", store_dir, stale)
            shutil.rmtree(store_dir / stale)
    shapes = {v: tuple(written[v]["shape"]) for v in videos}
    dims = {s[2] for s in shapes.values()}
    crops = {s[0] for s in shapes.values()}
    dtypes = {written[v].get("data_type") for v in videos}
    if len(dims) > 1 or len(crops) > 1 or len(dtypes) > 1 or dtypes - set(STORE_DTYPES):
        raise FeatureError(f"feature store {store_dir}: arrays disagree (crops {sorted(crops)}, "
                           f"dims {sorted(dims)}, dtypes {sorted(map(str, dtypes))}); "
                           "they come from different recipes - re-extract the store")
    root_attrs = _jsonable({**attrs, "videos": videos,
                            "dim": dims.pop() if dims else None,
                            "crops": crops.pop() if crops else None})
    root_meta = store_dir / "zarr.json"
    if root_meta.exists():
        root_meta.unlink()  # never create_group(overwrite=True): it would delete the arrays
    zarr.create_group(store=str(store_dir), attributes=root_attrs, zarr_format=3)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*[Cc]onsolidated metadata.*")
        warnings.filterwarnings("ignore", message=".*not recognized as a component of a Zarr hierarchy")
        zarr.consolidate_metadata(str(store_dir))
    return root_meta


def write_shard_marker(path: str | os.PathLike, *, videos: list[str], fingerprint: str,
                       provenance: Mapping, store_attrs: Mapping, **info) -> dict:
    """What a shard job (extraction or import) leaves when all its arrays are written: the
    videos it wrote, the fingerprint of what made them, their provenance and the root
    attributes of the store; ``info`` (timing, summaries) is for people."""
    from wsvad_core.io import write_json

    marker = {"videos": list(videos), "recipe_fingerprint": fingerprint, "provenance": dict(provenance),
              "store_attrs": dict(store_attrs), **info}
    write_json(path, marker)
    return marker


def finalize_from_shards(shard_markers: Iterable[str | os.PathLike], zarr_json_out: str | os.PathLike) -> Path:
    """The ``finalize_store`` rule, for extracted and imported stores alike: check that every
    shard was made the same way (fingerprint, provenance), then finalise the store with the
    shards' videos and root attributes."""
    videos: list[str] = []
    first = None
    for path in shard_markers:
        m = json.loads(Path(path).read_text())
        if first is None:
            first = (path, m)
        else:
            for key, what in (("recipe_fingerprint", "recipe"), ("provenance", "weights provenance")):
                if m.get(key) != first[1].get(key):
                    raise FeatureError(f"shard marker {path}: made with another {what} ({m.get(key)}) than "
                                       f"{first[0]} ({first[1].get(key)}); re-run the shards")
        videos += m["videos"]
    if first is None:
        raise FeatureError(f"{zarr_json_out}: no shard markers to finalise the store from")
    dup = sorted({v for v in videos if videos.count(v) > 1}) if len(set(videos)) != len(videos) else []
    if dup:
        raise FeatureError(f"videos claimed by more than one shard: {dup[:10]}")
    m = first[1]
    attrs = {**m["store_attrs"], "recipe_fingerprint": m["recipe_fingerprint"], "provenance": m["provenance"]}
    return finalize_store(Path(zarr_json_out).parent, attrs, videos)


class FeatureStore:
    """Read-only view of a finalised store; ``store[video_id]`` is an ndarray (C, T, D) of the
    store's dtype (float16 or float32)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        if not (self.path / "zarr.json").is_file():
            raise FeatureError(f"feature store {self.path}: no zarr.json; the store does not exist or "
                               "was not finalised (the merge step writes it last)")
        try:
            self._group = zarr.open_group(str(self.path), mode="r")
        except Exception as err:
            raise FeatureError(f"feature store {self.path}: cannot be opened as a Zarr group: {err}") from err
        self.attrs: dict = dict(self._group.attrs)
        videos = self.attrs.get("videos")
        if not isinstance(videos, list) or "dim" not in self.attrs:
            raise FeatureError(f"{self.path}: a Zarr group, but not a wsvad feature store (its root "
                               "attributes lack the video list and feature dim that the finalize "
                               "step writes)")
        self.video_ids: list[str] = list(videos)
        self._ids = set(self.video_ids)

    def _array(self, video_id: str):
        try:
            arr = self._group[str(video_id)]
        except KeyError:
            raise KeyError(f"feature store {self.path} has no video {video_id!r}") from None
        if len(arr.shape) != 3:
            raise FeatureError(f"feature store {self.path}, video {video_id!r}: an array of shape "
                               f"{tuple(arr.shape)}, not (crops, T, D); not written by wsvad")
        return arr

    def __getitem__(self, video_id: str) -> np.ndarray:
        return np.asarray(self._array(video_id)[...])

    def __contains__(self, video_id) -> bool:
        return str(video_id) in self._ids

    def __len__(self) -> int:
        return len(self.video_ids)

    def __iter__(self) -> Iterator[str]:
        return iter(self.video_ids)

    def shape(self, video_id: str) -> tuple[int, int, int]:
        return tuple(self._array(video_id).shape)

    def n_snippets(self, video_id: str) -> int:
        return self.shape(video_id)[1]

    def video_attrs(self, video_id: str) -> dict:
        return dict(self._array(video_id).attrs)

    @property
    def dim(self) -> int:
        d = self.attrs.get("dim")
        if d is None:
            if not self.video_ids:
                raise FeatureError(f"feature store {self.path} holds no videos")
            d = self.shape(self.video_ids[0])[2]
        return int(d)

    @property
    def crops(self) -> int:
        c = self.attrs.get("crops")
        return int(c) if c is not None else self.shape(self.video_ids[0])[0]

    def view_indices(self, names) -> list[int]:
        """The crop indices of the named views (``features/transforms.py``), in that order."""
        views = self.attrs.get("views")
        if not views:
            raise FeatureError(f"feature store {self.path} does not name its views (made before views "
                               "had names): re-extract or re-import it")
        bad = [v for v in names if v not in views]
        if bad:
            raise FeatureError(f"feature store {self.path} has no view {bad} (its views: {views})")
        return [views.index(v) for v in names]

    def __repr__(self) -> str:
        return f"FeatureStore({str(self.path)!r}, {len(self)} videos)"


def open_store(store_dir: str | os.PathLike) -> FeatureStore:
    """Open a finalised store read-only. ``store_dir`` may also be its ``zarr.json``."""
    p = Path(store_dir)
    if p.name == "zarr.json":
        p = p.parent
    return FeatureStore(p)


def check_video_features(store, video_id: str, feats: np.ndarray, dim: int | None = None,
                         crops: int | None = None) -> None:
    """Check features read from a store before a model sees them: (crops, T, D), the expected
    crops and dim, no NaN/inf. ``write_video_array`` refuses such arrays, but a store written by
    other tools or damaged on disk would otherwise surface as a NaN loss or a broadcast error
    that names neither the store nor the video."""
    where = f"feature store {getattr(store, 'path', store)}, video {video_id!r}"
    shape = tuple(np.shape(feats))
    if len(shape) != 3:
        raise FeatureError(f"{where}: expected (crops, T, D), got shape {shape}")
    if dim is not None and shape[2] != dim:
        raise FeatureError(f"{where}: feature dim D={shape[2]}, expected {dim} (shape {shape})")
    if crops is not None and shape[0] != crops:
        raise FeatureError(f"{where}: {shape[0]} crops, expected {crops} (shape {shape})")
    bad = int(np.size(feats) - np.count_nonzero(np.isfinite(feats)))
    if bad:
        raise FeatureError(f"{where}: {bad} NaN/inf values; re-extract (or re-import) this video")
