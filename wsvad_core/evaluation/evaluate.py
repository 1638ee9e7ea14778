"""Score the test videos with a trained model and compute frame-level metrics."""
from __future__ import annotations

import contextlib
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from wsvad_core.evaluation.metrics import frame_metrics, snippet_to_frame
from wsvad_core.features.store import check_video_features


@torch.inference_mode()
def score_videos(model, store, video_ids: list[str], device: torch.device,
                 progress: bool = True, crops: list[int] | None = None,
                 batch_videos: bool | None = None) -> dict[str, np.ndarray]:
    """Snippet scores (T,) per test video. One forward per video for methods that mix
    information along the whole sequence (non-local blocks, attention: padding videos into one
    batch would change their scores); models marked ``snippet_independent`` score up to
    ``MAX_BATCH_ELEMENTS`` features of many videos per forward. A background thread reads the
    next ``READ_AHEAD`` videos from the store while the model runs. ``crops`` picks the test
    crops of the store's arrays (VadCLIP tests on one crop); None scores all of them (the model
    averages over crops). ``batch_videos`` None: batch on CUDA only (on the CPU, one forward
    per video measured faster: it overlaps better with the read-ahead thread)."""
    model.eval()
    out: dict[str, np.ndarray] = {}
    # A model whose scores are per snippet (``snippet_independent``, e.g. MIL's MLP) scores many
    # videos in one forward: their snippets are concatenated along time, then split back.
    if batch_videos is None:
        batch_videos = device.type == "cuda"
    batched = batch_videos and bool(getattr(model, "snippet_independent", False))
    group: list[tuple[str, np.ndarray]] = []

    def flush() -> None:
        x = torch.from_numpy(np.concatenate([f for _, f in group], axis=1))[None].to(device)
        scores = model.score(x)[0].float().cpu().numpy()
        bounds = np.cumsum([f.shape[1] for _, f in group])[:-1]
        out.update({v: s for (v, _), s in zip(group, np.split(scores, bounds))})
        group.clear()

    reads = _read_ahead(store, video_ids, crops, getattr(model, "feat_dim", None))
    # one scoring pass: a method with random test-time draws (CLIP-TSA) takes them from one
    # seeded stream across the videos (methods.base.WSVADModel.scoring_pass)
    with getattr(model, "scoring_pass", contextlib.nullcontext)():
        for vid, feats in tqdm(reads, total=len(video_ids), desc="score", disable=not progress, leave=False):
            if not batched:
                out[vid] = model.score(torch.from_numpy(feats)[None].to(device))[0].float().cpu().numpy()
                continue
            if group and (sum(f.shape[1] for _, f in group) + feats.shape[1]) * feats.shape[0] * feats.shape[2] \
                    > MAX_BATCH_ELEMENTS:
                flush()
            group.append((vid, feats))
        if group:
            flush()
    return {vid: out[vid] for vid in video_ids}


def test_crop_indices(store, protocol: dict) -> list[int] | None:
    """The crops the protocol's ``test_views`` name (VadCLIP tests UCF-Crime on ``flip_center``);
    None: every crop (the model averages them)."""
    views = protocol.get("test_views")
    return None if not views else store.view_indices(views)


READ_AHEAD = 2  # videos read from the store ahead of the model (bounded memory)
# Features per batched forward: 16 MB of float32. Batching pays for short videos (per-forward
# overhead, GPU launches); a long video already fills a forward on its own.
MAX_BATCH_ELEMENTS = 2**22


def _read_ahead(store, video_ids: list[str], crops, dim):
    """(video_id, float32 (C, T, D)) in order; a background thread reads, decompresses and
    checks the next videos while the model scores the current one."""
    def read(vid: str) -> np.ndarray:
        feats = store[vid]
        if crops is not None:
            feats = feats[list(crops)]
        # torch's vectorised float16 -> float32 cast: 3-10x faster than numpy's here
        feats = torch.from_numpy(np.ascontiguousarray(feats)).float().numpy()
        check_video_features(store, vid, feats, dim=dim)
        return feats

    ids = iter(video_ids)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="wsvad-read") as pool:
        pending: deque = deque()
        try:
            for vid in ids:
                pending.append((vid, pool.submit(read, vid)))
                if len(pending) > READ_AHEAD:
                    v, fut = pending.popleft()
                    yield v, fut.result()
            while pending:
                v, fut = pending.popleft()
                yield v, fut.result()
        finally:
            for _, fut in pending:  # an error or an early stop: drop what was read ahead
                fut.cancel()


def evaluate_scores(snippet_scores: dict[str, np.ndarray], gt: dict[str, np.ndarray],
                    video_labels: dict[str, int], clip_len: int,
                    far_threshold: float = 0.5) -> tuple[dict, dict[str, np.ndarray]]:
    """Repeat snippet scores ``clip_len`` times, fit each to its GT length, compute metrics."""
    missing = sorted(set(gt) - set(snippet_scores))
    if missing:
        raise KeyError(f"no scores for {len(missing)} test videos with ground truth: {missing[:5]}")
    frame_scores = {vid: snippet_to_frame(snippet_scores[vid], clip_len, len(gt[vid])) for vid in gt}
    metrics = frame_metrics(frame_scores, gt, {vid: video_labels[vid] for vid in gt},
                            far_threshold=far_threshold)
    return metrics, frame_scores


def save_scores(path: str | Path, snippet_scores: dict[str, np.ndarray],
                frame_scores: dict[str, np.ndarray]) -> None:
    from wsvad_core.io import atomic_path

    arrays = {"__order__": np.array(list(frame_scores))}
    arrays.update({f"snippet/{k}": v for k, v in snippet_scores.items()})
    arrays.update({f"frame/{k}": v.astype(np.float32) for k, v in frame_scores.items()})
    with atomic_path(path, suffix=".npz") as tmp:
        np.savez_compressed(tmp, **arrays)
