"""Evaluation: frame metrics over UCF-Crime's 1.1 M test frames, and scoring all test videos.

1. Metrics: wsvad's ``evaluate_scores`` (snippet -> frame expansion per video, then AUC, AP two
   ways, AUC on abnormal videos, false-alarm rate) against the official test code's
   ``np.repeat`` + ``roc_curve(list(gt), pred)`` + ``precision_recall_curve(list(gt), pred)``
   (RTFM test_10crop.py, which computes only AUC and AP). Same synthetic scores, 290 videos,
   1,114,144 frames; the AUCs must agree.
2. Scoring: a UCF-Crime-sized test set (290 videos with the real test lengths, 10 crops x
   2048-d by default) scored by MIL: wsvad's ``score_videos`` (store read one video ahead,
   snippet-independent models batched over videos), the same one forward per video, and the
   official way (DataLoader with batch 1 over one float32 .npy per video, one forward each).
   ``--rtfm N`` adds RTFM on N videos: crops one at a time (as ``RTFMModel`` scores now) vs all
   10 crops in one forward (the official test).

    .venv/bin/python benchmarks/evaluation.py
"""
from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import common
import numpy as np
import torch

UCF_TEST_LIST = common.ROOT / "data" / "benchmarks" / "ucf_crime" / "UCF_Annotation.txt"
UCF_TEST_FRAMES = 1_114_144


def test_lengths(n: int, ucf_list: Path) -> np.ndarray:
    """Snippets per test video: UCF-Crime's (RTFM features: ceil(frames / 16)) when the list is
    at hand, else random lengths summing to the same 69,634 snippets."""
    if ucf_list.is_file() and n == 290:
        frames = np.array([int(line.split()[1]) for line in ucf_list.read_text().splitlines() if line.strip()])
        return -(-frames // 16)
    t = np.random.default_rng(0).integers(4, 400, size=n)
    t[-1] = max(1, t[-1] + UCF_TEST_FRAMES // 16 - t.sum())
    return t


def synthetic_scores(lengths: np.ndarray):
    rng = np.random.default_rng(0)
    gt, snippets, labels = {}, {}, {}
    for i, t in enumerate(lengths):
        vid = f"v{i:03d}"
        labels[vid] = int(i < 140)
        lab = np.zeros(t * 16, np.uint8)
        if labels[vid]:
            lab[t * 4: t * 10] = 1
        gt[vid] = lab
        snippets[vid] = (rng.random(t) * 0.6 + lab[::16] * 0.3).astype(np.float32)
    return gt, snippets, labels


def official_metrics(snippets: dict, gt: dict) -> dict:
    """RTFM test_10crop.py after the forward passes: repeat, then sklearn on Python lists."""
    from sklearn.metrics import auc, precision_recall_curve, roc_curve

    pred = np.concatenate(list(snippets.values()))
    pred = np.repeat(np.array(list(pred)), 16)
    labels = np.concatenate(list(gt.values()))
    fpr, tpr, _ = roc_curve(list(labels), pred)
    precision, recall, _ = precision_recall_curve(list(labels), pred)
    return {"auc": auc(fpr, tpr), "ap_trapz": auc(recall, precision)}


def bench_metrics(args, table) -> dict:
    from wsvad_core.evaluation.evaluate import evaluate_scores

    lengths = test_lengths(290, args.ucf_list)
    gt, snippets, labels = synthetic_scores(lengths)
    n_frames = int(sum(len(g) for g in gt.values()))
    holder = {}
    w, _ = common.median_time(lambda: holder.update(w=evaluate_scores(snippets, gt, labels, 16)[0]), args.repeats)
    n, _ = common.median_time(lambda: holder.update(n=official_metrics(snippets, gt)), args.repeats)
    table.add(f"frame metrics over {n_frames:,} frames, s (wsvad: AUC, AP x2, AUC-abnormal, FAR; "
              "official: AUC, AP)", w, n, higher_is_better=False)
    table.add("|AUC wsvad - AUC official|", abs(holder["w"]["auc"] - holder["n"]["auc"]), None,
              note=f"AUC {holder['w']['auc']:.6f}")
    return {"frames": n_frames, "wsvad_s": w, "official_s": n}


class NpyTestSet(torch.utils.data.Dataset):
    """RTFM dataset.py in test mode: one float32 (T, crops, D) .npy per item."""

    def __init__(self, files):
        self.files = files

    def __len__(self):
        return len(self.files)

    def __getitem__(self, i):
        return np.array(np.load(self.files[i], allow_pickle=True), dtype=np.float32)


def bench_scoring(args, table) -> dict:
    from wsvad_core.evaluation.evaluate import score_videos
    from wsvad_core.features.store import finalize_store, open_store, write_video_array
    from wsvad_core.methods import create_method

    root = Path(tempfile.mkdtemp(prefix="wsvad-bench-eval-"))
    try:
        lengths = test_lengths(args.videos, args.ucf_list)
        rng = np.random.default_rng(0)
        ids, files = [], []
        t0 = time.perf_counter()
        for i, t in enumerate(lengths):
            vid = f"v{i:03d}"
            f = rng.standard_normal((args.crops, int(t), args.dim), dtype=np.float32).astype(np.float16)
            write_video_array(root / "store.zarr", vid, f, {"n_frames": int(t) * 16, "label": 0, "split": "test"})
            files.append(str(root / f"{vid}.npy"))
            np.save(files[-1], f.astype(np.float32).transpose(1, 0, 2))  # official layout (T, crops, D)
            ids.append(vid)
        finalize_store(root / "store.zarr", {"recipe": {"family": "i3d"}}, ids)
        store = open_store(root / "store.zarr")
        n_snip = int(lengths.sum())
        print(f"test set: {len(ids)} videos, {n_snip:,} snippets x {args.crops} crops x {args.dim}, built in "
              f"{time.perf_counter() - t0:.0f} s", flush=True)
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        model, _ = create_method("mil", args.dim)
        model.to(device).eval()
        res = {}

        def wsvad(batched: bool):
            res["w" if batched else "p"] = score_videos(model, store, ids, device, progress=False,
                                                        batch_videos=batched)

        def official():
            loader = torch.utils.data.DataLoader(NpyTestSet(files), batch_size=1, shuffle=False, num_workers=0)
            preds = []
            with torch.no_grad():
                for x in loader:                                   # (1, T, crops, D)
                    x = x.to(device).permute(0, 2, 1, 3)           # (1, crops, T, D)
                    preds.append(model.score(x)[0])
            res["o"] = torch.cat(preds).cpu().numpy()

        tb, _ = common.median_time(lambda: wsvad(True), args.repeats, warmup=1)
        tp, _ = common.median_time(lambda: wsvad(False), args.repeats, warmup=1)
        to, _ = common.median_time(official, args.repeats, warmup=1)
        diff = float(np.abs(np.concatenate([res["w"][v] for v in ids]) - res["o"]).max())
        diff_p = float(np.abs(np.concatenate([res["w"][v] for v in ids])
                              - np.concatenate([res["p"][v] for v in ids])).max())
        shape = f"{len(ids)} videos, {n_snip:,} snippets, {args.crops} crops, {args.dim}-d, {device.type}"
        table.add(f"score the test set with MIL, s ({shape})", tb, to, higher_is_better=False)
        table.add("  same, one forward per video (wsvad, unbatched)", tp, to, higher_is_better=False)
        table.add("  max abs diff of the scores: batched vs official / vs unbatched", diff, diff_p)
        out = {"batched_s": tb, "per_video_s": tp, "official_s": to, "max_abs_diff": diff}
        if args.rtfm:
            rt, _ = create_method("rtfm", args.dim)
            rt.to(device).eval()
            sub = ids[:args.rtfm]
            xs = [torch.from_numpy(store[v]).float()[None].to(device) for v in sub]
            with torch.inference_mode():
                per_crop, _ = common.median_time(lambda: [rt.score(x) for x in xs], args.repeats, warmup=1)
                together, _ = common.median_time(lambda: [rt.forward(x)[1] for x in xs], args.repeats, warmup=1)
                d = max(float((rt.score(x) - rt.forward(x)[1]).abs().max()) for x in xs)
            table.add(f"RTFM, {len(sub)} videos: crops in one forward vs one forward per crop (now), s",
                      together, per_crop, higher_is_better=False, note=f"max abs diff {d:.1e}")
            out["rtfm"] = {"together_s": together, "per_crop_s": per_crop}
        return out
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--videos", type=int, default=290)
    p.add_argument("--crops", type=int, default=10)
    p.add_argument("--dim", type=int, default=2048)
    p.add_argument("--rtfm", type=int, default=0, help="also time RTFM's crop batching on N videos")
    p.add_argument("--skip-scoring", action="store_true")
    p.add_argument("--ucf-list", type=Path, default=UCF_TEST_LIST)
    common.add_common_args(p)
    args = p.parse_args()
    info = common.setup(args)
    t = common.Table(f"Evaluation (median of {args.repeats})")
    out = {"metrics": bench_metrics(args, t)}
    if not args.skip_scoring:
        out["scoring"] = bench_scoring(args, t)
    common.finish([t], info, args.json, out)


if __name__ == "__main__":
    main()
