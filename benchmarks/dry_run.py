"""Dry-run time of the shipped benchmark configurations (UCF-Crime, ShanghaiTech, XD-Violence),
built from published features.

The benchmarks' feature folders are the user's, so this script writes, in a temporary folder, a
tree of tiny valid .npy files with the official names of every published file the shipped
config imports (RTFM ``{video}_i3d.npy``, UR-DMU/DeepMIL/XDVioDet ``{video}__{crop}.npy``,
VadCLIP ``{video}__{crop}.npy``: ~69,000 files for the three), points each import ``root`` at it
with a ``--configfile`` on top of the shipped config (nothing else changes), and times
``snakemake -n results/tables/<benchmark>.md`` (a) from scratch and (b) once the manifest exists.
Target: < 5 s each. Every published file is checked at DAG-build time (a missing one fails the
dry run, naming its video), so the full tree is what a user's dry run sees.

``--slice`` keeps only as many videos as the largest training batch needs (and two test videos
per label), with the list files cut to them: the same DAG in a few hundred files, for the test
(tests/integration/test_benchmark_dry_runs.py). ``--json`` writes the figures and every planned
training run (method, feature set, seed) per benchmark.

    .venv/bin/python benchmarks/dry_run.py [--benchmarks ucf_crime ...] [--repeat 3] [--slice]
        [--fresh-only] [--keep DIR] [--json PATH]
"""
from __future__ import annotations

import argparse
import io
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import common  # noqa: F401  (puts the repository on sys.path)
import numpy as np
import yaml

from wsvad_core.config import anchor_annotation_dirs, import_specs, method_overrides, runs
from wsvad_core.data.benchmarks import benchmark_videos, dataset_files
from wsvad_core.features.importers import video_feature_files

ROOT = common.ROOT
SNAKEMAKE = str(ROOT / ".venv" / "bin" / "snakemake")
BENCHMARKS = ("ucf_crime", "shanghaitech", "xd_violence")
TARGET_S = 5.0
TEST_PER_LABEL = 2  # test videos per label kept by --slice


def shipped_config() -> dict:
    """The config files the Snakefile's ``configfile:`` lines name, merged in that order as
    Snakemake merges them (read from the Snakefile, not restated here)."""
    from snakemake.utils import update_config

    names = re.findall(r'^configfile:.*?"([^"]+\.ya?ml)"', (ROOT / "Snakefile").read_text(), flags=re.M)
    if not names:
        raise SystemExit(f"{ROOT / 'Snakefile'}: no configfile: lines found")
    cfg: dict = {}
    for name in names:
        update_config(cfg, yaml.safe_load((ROOT / name).read_text()) or {})
    anchor_annotation_dirs(cfg, ROOT)
    return cfg


def tiny_npy() -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.zeros((1, 1), np.float16))
    return buf.getvalue()


def _mentions(line: str, ids: set[str]) -> bool:
    # a whole id (Normal_Videos_01 is not Normal_Videos_010): bounded by a separator or a suffix
    return any(re.search(rf"(^|[/\\\s,]){re.escape(v)}(_i3d|__\d|\.mp4|[\s,.]|$)", line) for v in ids)


def cut_lists(ds: dict, keep: set[str], dest: Path) -> None:
    """Copies of the dataset's list files holding only the videos ``keep`` (header lines kept),
    under ``dest``; the dataset entry then reads them."""
    dest.mkdir(parents=True, exist_ok=True)
    for path in dataset_files(ds).values():
        if path.is_dir():  # ShanghaiTech's per-video mask folder
            (dest / path.name).mkdir(exist_ok=True)
            for f in path.iterdir():
                if f.stem in keep:
                    shutil.copyfile(f, dest / path.name / f.name)
            continue
        lines = [ln for ln in path.read_text().splitlines() if ln.strip()]
        header = lines[:1] if lines and "," in lines[0] and not _mentions(lines[0], keep) else []
        (dest / path.name).write_text("\n".join(header + [ln for ln in lines if _mentions(ln, keep)]) + "\n")
    ds["annotation_dir"] = str(dest)


def largest_batch(cfg: dict, name: str) -> int:
    from wsvad_core.cards import method_card

    return max(int(method_overrides(cfg, name, m).get("batch_size", method_card(m).hparams["batch_size"].default))
               for m in {m for m, _, _ in runs(cfg, name)})


def build_tree(work: Path, cfg: dict, name: str, sliced: bool) -> tuple[dict, int]:
    """The overlay config entry of one benchmark (its import roots under ``work``, and with
    ``sliced`` its cut lists) and the number of feature files written."""
    ds = json.loads(json.dumps(cfg["datasets"][name]))
    videos = benchmark_videos(ds["layout"], dataset_files(ds))
    overlay: dict = {"import_features": {}}
    if sliced:
        per_train = largest_batch(cfg, name)
        keep = set()
        for split, label in (("train", 0), ("train", 1), ("test", 0), ("test", 1)):
            group = [v.video_id for v in videos if (v.split, v.label) == (split, label)]
            keep |= set(group[:per_train if split == "train" else TEST_PER_LABEL])
        cut_lists(ds, keep, work / name / "lists")
        videos = benchmark_videos(ds["layout"], dataset_files(ds))
        if {v.video_id for v in videos} != keep:
            raise SystemExit(f"{name}: the cut lists give {len(videos)} videos, expected {len(keep)}")
        overlay["annotation_dir"] = ds["annotation_dir"]
    blob, n = tiny_npy(), 0
    specs = import_specs({**cfg, "datasets": {**cfg["datasets"], name: ds}}, name)
    for fs, spec in specs.items():
        root = work / name / "features" / fs
        spec = {**spec, "root": str(root)}
        for v in videos:
            for f in video_feature_files(v.as_row(), spec):
                os.makedirs(os.path.dirname(f), exist_ok=True)
                with open(f, "wb") as fh:
                    fh.write(blob)
                n += 1
        overlay["import_features"][fs] = {"root": str(root)}
    return overlay, n


def smk(work: Path, *args: str) -> list[str]:
    return [SNAKEMAKE, "--snakefile", str(ROOT / "Snakefile"), "--directory", str(work),
            "--configfile", str(work / "overlay.yaml"), *args]


def dry_run(work: Path, target: str) -> tuple[float, float, str]:
    """(wall s, CPU s of the snakemake process, its output) of ``snakemake -n target``."""
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    res = subprocess.run(smk(work, "-n", "--", target), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         text=True, cwd=work)
    seconds = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    if res.returncode != 0:
        raise SystemExit(f"dry run of {target} failed:\n{res.stdout[-4000:]}")
    return seconds, (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime), res.stdout


def job_count(out: str) -> int:
    m = re.findall(r"^total\s+(\d+)", out, flags=re.M)
    return int(m[-1]) if m else -1


def planned_runs(out: str, name: str) -> list[tuple[str, str, int]]:
    """(method, feature set, seed) of every training job the dry run planned."""
    found = re.findall(rf"results/{name}/runs/([a-z0-9_]+)/([A-Za-z0-9_]+)/seed(\d+)/checkpoint\.pt", out)
    return sorted({(m, fs, int(s)) for m, fs, s in found})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--benchmarks", nargs="+", default=list(BENCHMARKS), choices=BENCHMARKS)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--slice", action="store_true", help="only the videos the largest batch needs")
    ap.add_argument("--fresh-only", action="store_true", help="only (a), no manifest built")
    ap.add_argument("--keep", type=Path, help="build the trees here and keep them")
    ap.add_argument("--json", default=None, help="also write the figures and planned runs here")
    args = ap.parse_args()
    cfg = shipped_config()
    work = args.keep or Path(tempfile.mkdtemp(prefix="wsvad_dry_run_"))
    work.mkdir(parents=True, exist_ok=True)
    out: dict = {"load_avg_start": list(os.getloadavg()), "cores": len(os.sched_getaffinity(0)),
                 "sliced": args.slice, "benchmarks": {}}
    print(f"load average {os.getloadavg()[0]:.1f} on {out['cores']} cores at {time.strftime('%Y-%m-%d %H:%M')}")
    try:
        t0 = time.perf_counter()
        overlay, files = {}, {}
        for name in args.benchmarks:
            overlay[name], files[name] = build_tree(work, cfg, name, args.slice)
        (work / "overlay.yaml").write_text(yaml.safe_dump({"datasets": overlay}))
        print(f"fake trees: {sum(files.values()):,} feature files ({files}), "
              f"{time.perf_counter() - t0:.1f} s to write")
        rows = []
        for name in args.benchmarks:
            target = f"results/tables/{name}.md"
            entry = out["benchmarks"][name] = {"feature_files": files[name]}
            for phase in ("no manifest yet",) if args.fresh_only else ("no manifest yet", "manifest built"):
                if phase == "manifest built":  # the lists alone: no video is read
                    subprocess.run(smk(work, "--cores", "1", "--quiet", "all", "--", f"results/{name}/manifest.csv"),
                                   check=True, cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                walls, cpus, text = [], [], ""
                for _ in range(args.repeat):
                    w, c, text = dry_run(work, target)
                    walls.append(w)
                    cpus.append(c)
                planned = planned_runs(text, name)
                entry[phase] = {"wall_min_s": min(walls), "wall_median_s": statistics.median(walls),
                                "cpu_median_s": statistics.median(cpus), "jobs": job_count(text),
                                "runs": planned}
                rows.append((target, phase, min(walls), statistics.median(walls), statistics.median(cpus),
                             job_count(text), len(planned)))
        print(f"\n{'snakemake -n TARGET':36s} {'':16s} {'min s':>6s} {'median s':>9s} {'CPU s':>6s} "
              f"{'jobs':>5s} {'runs':>5s}")
        for target, phase, lo, med, cpu, jobs, n_runs in rows:
            print(f"{target:36s} {phase:16s} {lo:6.2f} {med:9.2f} {cpu:6.2f} {jobs:5d} {n_runs:5d}")
        # on a shared machine wall time also counts other processes; CPU time is the dry run's
        # own cost (Snakemake plans on one thread), and equals wall time on an idle core
        worst, worst_cpu = max(r[3] for r in rows), max(r[4] for r in rows)
        print(f"target < {TARGET_S:.0f} s: median wall {'PASS' if worst < TARGET_S else 'FAIL'} "
              f"(worst {worst:.2f} s), CPU {'PASS' if worst_cpu < TARGET_S else 'FAIL'} ({worst_cpu:.2f} s)")
        out["load_avg_end"] = list(os.getloadavg())
        print(f"load average at the end {out['load_avg_end'][0]:.1f}")
        if args.json:
            Path(args.json).write_text(json.dumps(out, indent=1))
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
