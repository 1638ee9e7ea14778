"""Training input: wsvad's once-loaded segments against the official per-item .npy loader.

wsvad (``wsvad_core.training.data``): every training video is read from the Zarr store once,
reduced to the method's S segments and held as one float16 tensor per class; a step indexes it
with the paired sampler and casts the batch to float32.

Naive baseline (RTFM's dataset.py / main.py): two DataLoaders (normal, abnormal; batch 32,
shuffle, num_workers=0, drop_last) over a Dataset whose ``__getitem__`` ``np.load``s one
``(T, crops, D)`` float32 .npy, copies it to float32, and mean-pools every crop to 32 segments
with a Python loop over segments; this runs for every item of every step.

Both feed the same RTFM model, optimiser and step (official batch 32 + 32, 10 crops, 2048-d,
32 segments by default). The fixture is one batch per class of synthetic features whose lengths
are drawn from the real UCF-Crime training videos (mean ~490 snippets, ~40 MB per .npy), so
every step reads as much as a UCF-Crime step does. Each side runs in its own process, so peak
RSS is per side. ``--cold`` evicts the .npy files from the page cache before every baseline
step (what happens when the 65 GB of UCF-Crime .npy features do not fit in RAM).

    .venv/bin/python benchmarks/training_input.py --steps 3
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import common
import numpy as np
import torch

UCF_TRAIN_VIDEOS = 1610
UCF_MEAN_SNIPPETS = 492  # mean ceil(n_frames / 16) over the 1610 training videos


def snippet_lengths(n: int, seed: int, ucf_list: Path | None) -> np.ndarray:
    """n video lengths in snippets, drawn from UCF-Crime's training videos when the list is
    available, else all equal to its mean."""
    if ucf_list is not None and ucf_list.is_file():
        print(f"snippet lengths drawn from {ucf_list}", flush=True)
        frames = np.array([int(line.split()[1]) for line in ucf_list.read_text().splitlines() if line.strip()])
        t = -(-frames // 16)
        return np.random.default_rng(seed).choice(t, size=n, replace=False)
    print(f"{ucf_list} not found: every video has UCF-Crime's mean length, {UCF_MEAN_SNIPPETS} snippets",
          flush=True)
    return np.full(n, UCF_MEAN_SNIPPETS)


def make_fixture(root: Path, n_per_class: int, crops: int, dim: int, ucf_list: Path | None) -> dict:
    """The same features twice: official .npy files (T, crops, D) float32 and a wsvad store."""
    import pandas as pd

    from wsvad_core.features.store import finalize_store, write_video_array

    lengths = snippet_lengths(2 * n_per_class, 0, ucf_list)
    rng = np.random.default_rng(1)
    rows, npy = [], {"normal": [], "abnormal": []}
    (root / "npy").mkdir(parents=True)
    for i, t in enumerate(lengths):
        label = int(i >= n_per_class)
        vid = f"{'abnormal' if label else 'normal'}{i:03d}"
        feats = rng.standard_normal((int(t), crops, dim), dtype=np.float32)
        # the official features are float32; the store keeps float16: compare like with like
        feats = feats.astype(np.float16).astype(np.float32)
        path = root / "npy" / f"{vid}.npy"
        np.save(path, feats)
        npy["abnormal" if label else "normal"].append(str(path))
        write_video_array(root / "store.zarr", vid, feats.transpose(1, 0, 2),
                          {"n_frames": int(t) * 16, "fps": 30.0, "label": label, "split": "train"})
        rows.append({"video_id": vid, "split": "train", "label": label})
    finalize_store(root / "store.zarr", {"recipe": {"family": "i3d"}}, [r["video_id"] for r in rows])
    pd.DataFrame(rows).to_csv(root / "manifest.csv", index=False)
    (root / "lists.json").write_text(json.dumps(npy))
    return {"snippets": lengths.tolist(), "npy_bytes": int(sum(os.path.getsize(p) for v in npy.values() for p in v))}


# -- the naive baseline -------------------------------------------------------------------------

def official_process_feat(feat: np.ndarray, length: int) -> np.ndarray:
    """RTFM utils.process_feat: mean over floor(linspace) ranges, one segment at a time."""
    new_feat = np.zeros((length, feat.shape[1]), dtype=np.float32)
    r = np.linspace(0, len(feat), length + 1).astype(np.int64)
    for i in range(length):
        if r[i] != r[i + 1]:
            new_feat[i, :] = np.mean(feat[r[i]:r[i + 1], :], 0)
        else:
            new_feat[i, :] = feat[r[i], :]
    return new_feat


class OfficialStyleDataset(torch.utils.data.Dataset):
    """RTFM dataset.py: one np.load and one pooling per item, every time it is drawn."""

    def __init__(self, files: list[str], label: float, segments: int):
        self.files, self.label, self.segments = files, label, segments

    def __len__(self):
        return len(self.files)

    def __getitem__(self, index):
        features = np.load(self.files[index], allow_pickle=True)
        features = np.array(features, dtype=np.float32)
        features = features.transpose(1, 0, 2)  # (crops, T, D)
        divided = [official_process_feat(f, self.segments) for f in features]
        return np.array(divided, dtype=np.float32), torch.tensor(self.label)


def evict(files: list[str]) -> None:
    """Drop these files' pages from the page cache (only ours; needs no privileges)."""
    for f in files:
        fd = os.open(f, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


# -- one side, in its own process ---------------------------------------------------------------

def run_side(args) -> dict:
    from wsvad_core.methods import create_method, get_method, make_optimizer

    root = Path(args.fixture)
    torch.manual_seed(0)
    model, hp = create_method(args.method, args.dim, dictionary=np.zeros((4, args.dim), np.float32)
                              if get_method(args.method).needs_dictionary else None,
                              batch_size=args.batch)
    opt = make_optimizer(model, hp)
    S = hp.n_segments
    out = {"side": args.side, "rss_before_data_mb": common.current_rss_mb()}
    lists = json.loads((root / "lists.json").read_text())

    if args.side == "naive":
        loaders = [torch.utils.data.DataLoader(OfficialStyleDataset(lists[k], float(k == "abnormal"), S),
                                               batch_size=args.batch, shuffle=True, num_workers=0,
                                               pin_memory=False, drop_last=True)
                   for k in ("normal", "abnormal")]
        iters = [iter(loader) for loader in loaders]
        files = lists["normal"] + lists["abnormal"]

        def next_batch():
            if args.cold:
                evict(files)
            t0 = time.perf_counter()
            batch = []
            for k in range(2):
                try:
                    x, _ = next(iters[k])
                except StopIteration:
                    iters[k] = iter(loaders[k])
                    x, _ = next(iters[k])
                batch.append(x)
            return batch, time.perf_counter() - t0
    else:
        import pandas as pd

        from wsvad_core.features.store import open_store
        from wsvad_core.training.data import PairedSampler, load_training_set

        t0 = time.perf_counter()
        data = load_training_set(open_store(root / "store.zarr"), pd.read_csv(root / "manifest.csv"),
                                 get_method(args.method).segment_policy, S, progress=False)
        out["load_once_s"] = time.perf_counter() - t0
        out["resident_mb"] = data.nbytes / 2**20
        sampler = PairedSampler(len(data.normal), len(data.abnormal), args.batch, 0)

        def next_batch():
            t0 = time.perf_counter()
            n_idx, a_idx = sampler.next()
            batch = [data.normal[n_idx].to(torch.float32), data.abnormal[a_idx].to(torch.float32)]
            return batch, time.perf_counter() - t0

    out["rss_after_data_mb"] = common.current_rss_mb()
    # input only: many draws, no model
    inputs = [next_batch()[1] for _ in range(args.input_repeats)]
    out["input_s"] = inputs
    b, _ = next_batch()
    out["batch_shape"] = list(b[0].shape)
    out["batch_checksum"] = [float(b[0].double().sum()), float(b[1].double().sum())]

    def step():
        (normal, abnormal), t_in = next_batch()
        t0 = time.perf_counter()
        loss = model.loss(normal, abnormal)["loss"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return t_in, time.perf_counter() - t0

    step()  # warm-up: allocator and oneDNN primitives
    steps = [step() for _ in range(args.steps)]
    out["step_input_s"] = [s[0] for s in steps]
    out["step_compute_s"] = [s[1] for s in steps]
    out["step_total_s"] = [s[0] + s[1] for s in steps]
    out["peak_rss_mb"] = common.peak_rss_mb()
    return out


def equivalence(root: Path, method: str, segments: int) -> float:
    """Max abs difference between the official pooling of each .npy and wsvad's segments."""
    import pandas as pd

    from wsvad_core.features.store import open_store
    from wsvad_core.methods import get_method
    from wsvad_core.training.data import load_training_set

    data = load_training_set(open_store(root / "store.zarr"), pd.read_csv(root / "manifest.csv"),
                             get_method(method).segment_policy, segments, progress=False)
    lists = json.loads((root / "lists.json").read_text())
    diff = 0.0
    for k, tensor in (("normal", data.normal), ("abnormal", data.abnormal)):
        ds = OfficialStyleDataset(lists[k], 0.0, segments)
        for i in range(len(ds)):
            diff = max(diff, float(np.abs(ds[i][0] - tensor[i].float().numpy()).max()))
    return diff


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--method", default="rtfm")
    p.add_argument("--batch", type=int, default=32, help="videos per class per step (official: 32)")
    p.add_argument("--videos-per-class", type=int, default=None, help="default: --batch")
    p.add_argument("--crops", type=int, default=10)
    p.add_argument("--dim", type=int, default=2048)
    p.add_argument("--steps", type=int, default=2, help="timed training steps per side and round")
    p.add_argument("--rounds", type=int, default=2, help="alternating naive/wsvad rounds (median over all)")
    p.add_argument("--input-repeats", type=int, default=5, help="timed batch draws without the model")
    p.add_argument("--cold", action="store_true", help="evict the baseline's .npy files before each step")
    p.add_argument("--ucf-list", type=Path, default=common.UCF_TRAIN_ANNOTATION,
                   help="UCF-Crime training frame counts (default: all videos of the mean length)")
    p.add_argument("--keep", type=Path, default=None, help="build the fixture here and keep it")
    p.add_argument("--side", choices=["naive", "wsvad"], help=argparse.SUPPRESS)
    p.add_argument("--fixture", help=argparse.SUPPRESS)
    common.add_common_args(p)
    args = p.parse_args()
    if args.side:  # child process: one side, JSON on stdout's last line
        if args.threads:
            torch.set_num_threads(args.threads)
        print(json.dumps(run_side(args)))
        return
    info = common.setup(args)
    n = args.videos_per_class or args.batch
    root = args.keep or Path(tempfile.mkdtemp(prefix="wsvad-bench-train-"))
    try:
        if not (root / "lists.json").exists():
            t0 = time.perf_counter()
            fixture = make_fixture(root, n, args.crops, args.dim, args.ucf_list)
            print(f"fixture: {2 * n} videos, {fixture['npy_bytes'] / 2**30:.2f} GB of .npy, mean T "
                  f"{np.mean(fixture['snippets']):.0f} snippets, built in {time.perf_counter() - t0:.0f} s",
                  flush=True)
        else:
            fixture = {"npy_bytes": sum(p.stat().st_size for p in (root / "npy").glob("*.npy"))}
        from wsvad_core.methods import get_method, resolve_hparams
        S = resolve_hparams(args.method).n_segments
        diff = equivalence(root, args.method, S) if get_method(args.method).segment_policy == "meanpool" else None
        # the sides alternate (naive, wsvad, naive, ...): load drifts on a shared machine then
        # hits both alike; lists of timings are pooled over the rounds
        sides: dict[str, dict] = {}
        for rnd in range(args.rounds):
            for side in ("naive", "wsvad"):
                cmd = [sys.executable, __file__, "--side", side, "--fixture", str(root), "--method", args.method,
                       "--batch", str(args.batch), "--dim", str(args.dim), "--steps", str(args.steps),
                       "--input-repeats", str(args.input_repeats)] + (["--cold"] if args.cold else []) \
                    + (["--threads", str(args.threads)] if args.threads else [])
                res = subprocess.run(cmd, capture_output=True, text=True)
                if res.returncode:
                    sys.exit(f"{side} side failed:\n{res.stderr[-3000:]}")
                one = json.loads(res.stdout.strip().splitlines()[-1])
                acc = sides.setdefault(side, {"rounds": []})
                acc["rounds"].append(one)
                for k, v in one.items():
                    if isinstance(v, list) and k.endswith("_s"):
                        acc.setdefault(k, []).extend(v)
                acc["peak_rss_mb"] = max(acc.get("peak_rss_mb", 0.0), one["peak_rss_mb"])
                for k in ("load_once_s", "resident_mb"):
                    if k in one:
                        acc.setdefault(k + "_all", []).append(one[k])
                        acc[k] = float(np.median(acc[k + "_all"]))
                print(f"round {rnd + 1}/{args.rounds}, {side}: done (load {os.getloadavg()[0]:.1f})", flush=True)
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)

    import statistics as st
    w, b = sides["wsvad"], sides["naive"]
    med = lambda xs: st.median(xs)  # noqa: E731
    cache = "cold page cache" if args.cold else "warm page cache"
    t = common.Table(f"Training input, {args.method} at batch {args.batch}+{args.batch}, {args.crops} crops x "
                     f"{args.dim}-d, {2 * n} videos ({fixture['npy_bytes'] / 2**30:.1f} GB of .npy, {cache}), "
                     f"median of {args.rounds} x {args.steps} steps per side, sides alternating")
    t.add("training step, s (input + forward/backward/update)", med(w["step_total_s"]), med(b["step_total_s"]),
          higher_is_better=False)
    t.add("  of which input (batch ready for the model), s", med(w["step_input_s"]), med(b["step_input_s"]),
          higher_is_better=False)
    t.add("  of which forward/backward/update, s", med(w["step_compute_s"]), med(b["step_compute_s"]),
          higher_is_better=False, note="same model and code on both sides: a difference is load noise")
    t.add(f"input only, s per batch (median of {args.input_repeats})", med(w["input_s"]), med(b["input_s"]),
          higher_is_better=False)
    t.add("one-time load of the training set, s", w["load_once_s"], 0.0,
          note="wsvad reads every video once per run; the baseline reads 2 x batch videos per step")
    t.add("peak RSS, MB", w["peak_rss_mb"], b["peak_rss_mb"], higher_is_better=False)
    full = UCF_TRAIN_VIDEOS * args.crops * S * args.dim * 2 / 2**20
    t.add(f"resident training set, MB (full UCF-Crime: {UCF_TRAIN_VIDEOS} videos -> {full:,.0f} MB)",
          w["resident_mb"], None, note="float16 segments; the baseline holds one batch")
    if diff is not None:
        t.add("max abs diff, official process_feat vs wsvad segments", diff, None,
              note="wsvad holds segments in float16: rounding of the means (<= 2^-11 relative)")
    common.finish([t], info, args.json, {"sides": sides})


if __name__ == "__main__":
    main()
