"""Peak RAM of the training input at UCF-Crime scale, against the float16 bytes it holds.

``wsvad_core.training.data.load_training_set`` reads every training video once, reduces it to
the method's segments and keeps them as float16. Target: peak RSS growth while loading
<= ~1.2x the float16 bytes of the selected segments (an eager float32 load of UCF-Crime's
features takes ~13 GB; official loops re-read .npy per item instead).

The store is synthetic but has UCF-Crime's shape: the 1,610 training videos with T = ceil(n/16)
from their frame counts (ekosman's ``Train_Annotation.txt``, ``--ucf-list``; without it lengths
drawn to the same mean), 10 crops, 2048-d; each read returns a fresh float16 array, as a Zarr
read does. Peak RSS is read from /proc (VmHWM, reset just before the load), in a child process.

    .venv/bin/python benchmarks/train_memory.py [--videos 1610] [--policy meanpool] [--segments 32]
"""
from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# not shipped (benchmarks/common.py UCF_TRAIN_ANNOTATION); --ucf-list names a copy
TRAIN_ANNOTATION = ROOT / "data" / "benchmarks" / "ucf_crime" / "Train_Annotation.txt"
TARGET = 1.2


def train_lengths(n_videos: int, seed: int = 0, annotation: Path = TRAIN_ANNOTATION) -> list[tuple[str, int, int]]:
    """(video_id, label, T) of UCF-Crime's training videos (or synthetic ones of its size)."""
    import numpy as np

    rows = []
    if annotation.is_file():
        for line in annotation.read_text().splitlines():
            parts = line.split()
            if len(parts) >= 2:
                vid = Path(parts[0]).stem
                rows.append((vid, 0 if "Normal" in parts[0] else 1, math.ceil(int(parts[1]) / 16)))
    else:
        rng = np.random.default_rng(seed)
        t = rng.lognormal(mean=5.7, sigma=0.9, size=1610).astype(int) + 2
        rows = [(f"v{i:04d}", int(i < 810), int(x)) for i, x in enumerate(t)]
    if n_videos >= len(rows):
        return rows
    # a subset keeps both classes (training needs normal and abnormal videos)
    return ([r for r in rows if r[1] == 0][:n_videos // 2]
            + [r for r in rows if r[1] == 1][:n_videos - n_videos // 2])


class _LazyArray:
    """A zarr array's read behaviour: every slice is decoded into a fresh float16 ndarray."""

    def __init__(self, shape):
        self.shape = shape

    def __getitem__(self, key):
        import numpy as np

        return np.full(np.empty(self.shape, dtype=np.bool_)[key].shape, 0.5, dtype=np.float16)


class SyntheticStore:
    """The FeatureStore interface load_training_set uses (``in``, ``[id]``, ``shape``, the
    sliceable ``_array``), with (crops, T, D) float16 arrays made on each read."""

    def __init__(self, lengths: dict[str, int], crops: int, dim: int):
        self.lengths, self.crops, self.dim, self.path = lengths, crops, dim, Path("<synthetic>")

    def __contains__(self, vid) -> bool:
        return vid in self.lengths

    def shape(self, vid) -> tuple[int, int, int]:
        return (self.crops, self.lengths[vid], self.dim)

    def _array(self, vid) -> _LazyArray:
        return _LazyArray(self.shape(vid))

    def __getitem__(self, vid):
        return self._array(vid)[...]


def _vm(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"/proc/self/status has no {field}")


def child(args) -> dict:
    import pandas as pd

    sys.path.insert(0, str(ROOT))
    from wsvad_core.training.data import load_training_set

    rows = train_lengths(args.videos, annotation=args.ucf_list)
    manifest = pd.DataFrame({"video_id": [r[0] for r in rows], "split": "train",
                             "label": [r[1] for r in rows]})
    store = SyntheticStore({r[0]: r[2] for r in rows}, args.crops, args.dim)
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM: the peak from here on
    base = _vm("VmRSS")
    t0 = time.perf_counter()
    data = load_training_set(store, manifest, args.policy, args.segments, progress=False)
    seconds = time.perf_counter() - t0
    peak = _vm("VmHWM")
    t_values = [r[2] for r in rows]
    return {"videos": len(rows), "mean_T": sum(t_values) / len(rows), "max_T": max(t_values),
            "segments_f16_mb": data.nbytes / 2**20, "peak_growth_mb": (peak - base) / 2**20,
            "ratio": (peak - base) / data.nbytes, "load_s": seconds,
            "eager_f32_gb": sum(t_values) * args.crops * args.dim * 4 / 2**30}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--videos", type=int, default=1610)
    ap.add_argument("--crops", type=int, default=10)
    ap.add_argument("--dim", type=int, default=2048)
    ap.add_argument("--policy", default="meanpool")
    ap.add_argument("--segments", type=int, default=32)
    ap.add_argument("--ucf-list", type=Path, default=TRAIN_ANNOTATION,
                    help="UCF-Crime training frame counts (default: lengths drawn to its mean)")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args)))
        return
    cmd = [sys.executable, __file__, "--child", *sys.argv[1:]]
    out = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True).stdout
    r = json.loads(out.strip().splitlines()[-1])
    source = args.ucf_list if args.ucf_list.is_file() else "synthetic lengths (no --ucf-list file)"
    print(f"load average {os.getloadavg()[0]:.1f}; {r['videos']} training videos ({source}), mean T "
          f"{r['mean_T']:.0f}, max T {r['max_T']}, {args.crops} crops x {args.dim}-d, policy "
          f"{args.policy} to {args.segments} segments")
    print(f"  float16 segments held      {r['segments_f16_mb']:9.1f} MB")
    print(f"  peak RSS growth while load {r['peak_growth_mb']:9.1f} MB  ({r['ratio']:.3f}x)")
    print(f"  eager float32 load would be {r['eager_f32_gb']:8.1f} GB")
    print(f"  load time                  {r['load_s']:9.1f} s")
    print(f"target <= {TARGET}x: {'PASS' if r['ratio'] <= TARGET else 'FAIL'}")


if __name__ == "__main__":
    main()
