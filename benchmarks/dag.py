"""Snakemake overhead: dry-run time and DAG size of a UCF-Crime-sized configuration, how the DAG
grows with the number of videos, and the fixed cost of one job.

1. Dry run (``snakemake -n``) of a dataset in the UCF-Crime layout with UCF-Crime's 1,900 videos
   (the lists shipped in data/benchmarks/ucf_crime; empty placeholder video files; the manifest
   checkpoint already built), features extracted from the videos, 16 shards, rtfm_i3d_r50 +
   vadclip_vitb16, MIL + RTFM + S3R x 3 seeds: wall time and job count, against the same
   configuration with one extraction job per video (n_shards = number of videos: the O(videos)
   DAG a per-video rule would give). The dataset is added with a ``--configfile`` on top of the
   shipped config.
2. Scaling: the same with a tenth of the videos; the job count must not change.
3. Per-job overhead: a Snakefile of N trivial jobs run one at a time, (a) through ``script:``
   with the glue every wsvad rule runs (``wsvad_core.workflow.setup_job`` and torch imported),
   (b) ``shell: "touch"``; (T(N) - T(1)) / (N - 1) per job.

    .venv/bin/python benchmarks/dag.py
"""
from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import common
import yaml

UCF = common.ROOT / "data" / "benchmarks" / "ucf_crime"
SNAKEMAKE = str(common.ROOT / ".venv" / "bin" / "snakemake")


def ucf_videos(fraction: float) -> tuple[list[tuple[str, str]], list[str], list[str]]:
    """(relative path, class) of the videos, the train list lines, the annotation lines."""
    train = [line.strip() for line in (UCF / "Anomaly_Train.txt").read_text().splitlines() if line.strip()]
    ann = [line.split() for line in (UCF / "Temporal_Anomaly_Annotation.txt").read_text().splitlines()
           if line.strip()]
    step = max(1, round(1 / fraction))
    train, ann = train[::step], ann[::step]
    videos = [(p, p.split("/")[0]) for p in train]
    for a in ann:
        folder = "Testing_Normal_Videos_Anomaly" if a[1] == "Normal" else a[1]
        videos.append((f"{folder}/{a[0]}", a[1]))
    return videos, train, ["  ".join(a) for a in ann]


def make_workdir(path: Path, fraction: float, n_shards: int | None) -> tuple[Path, int]:
    import pandas as pd

    videos, train, ann = ucf_videos(fraction)
    data = path / "data"
    for rel, _ in videos:
        (data / rel).parent.mkdir(parents=True, exist_ok=True)
        (data / rel).touch()
    (data / "Anomaly_Train.txt").write_text("\n".join(train) + "\n")
    (data / "Temporal_Anomaly_Annotation.txt").write_text("\n".join(ann) + "\n")
    train_set = set(train)
    rows = [{"video_id": Path(rel).stem, "path": str(data / rel), "split": "train" if rel in train_set else "test",
             "label": int(cls != "Normal" and not rel.startswith("Training_Normal")), "class": cls,
             "n_frames": 4000, "fps": 30.0} for rel, cls in videos]
    # on top of the shipped config: one more dataset, the only one the default target builds
    cfg = {"run_datasets": ["ucf_bench"], "datasets": {"ucf_bench": {
        "layout": "ucf_crime", "root": str(data), "train_list": "Anomaly_Train.txt",
        "test_annotation": "Temporal_Anomaly_Annotation.txt", "n_shards": n_shards or len(videos),
        "feature_sets": ["rtfm_i3d_r50", "vadclip_vitb16"], "methods": ["mil", "rtfm", "s3r"],
        "seeds": [0, 1, 2]}}}
    (path / "overlay.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    manifest = path / "results" / "ucf_bench" / "manifest.csv"
    manifest.parent.mkdir(parents=True)
    time.sleep(0.01)  # the manifest is newer than the lists: the checkpoint counts as done
    pd.DataFrame(rows).to_csv(manifest, index=False)
    return path, len(videos)


def dry_run(workdir: Path) -> tuple[float, int, str]:
    # the README's command (profiles/local) with -n
    cmd = [SNAKEMAKE, "--snakefile", str(common.ROOT / "Snakefile"), "--directory", str(workdir),
           "--profile", str(common.ROOT / "profiles" / "local"), "--configfile", str(workdir / "overlay.yaml"),
           "-n"]
    t0 = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=common.ROOT)
    seconds = time.perf_counter() - t0
    out = res.stdout + res.stderr
    if res.returncode:
        raise SystemExit(f"dry run in {workdir} failed:\n{out[-3000:]}")
    m = re.findall(r"^total\s+(\d+)", out, flags=re.M)
    return seconds, int(m[-1]) if m else -1, out


JOB_SNAKEFILE = """
N = int(config["njobs"])
rule all:
    input: expand("out/{{kind}}/{{i}}.txt", i=range(N), kind=config["kind"])
rule script_job:
    output: "out/script/{{i}}.txt"
    log: "logs/script/{{i}}.log"
    script: "job.py"
rule shell_job:
    output: "out/shell/{{i}}.txt"
    shell: "touch {{output}}"
"""
JOB_SCRIPT = """import sys
sys.path.insert(0, {root!r})
from wsvad_core.workflow import setup_job  # what every workflow_scripts/*.py does first
setup_job(snakemake)
import torch  # noqa: F401,E402  every stage's library imports it
open(snakemake.output[0], "w").write("done")
"""


def per_job(tmp: Path, kind: str, n: int) -> float:
    d = tmp / f"jobs-{kind}-{n}"
    d.mkdir()
    (d / "Snakefile").write_text(JOB_SNAKEFILE.format())
    (d / "job.py").write_text(JOB_SCRIPT.format(root=str(common.ROOT)))
    t0 = time.perf_counter()
    # run from d: no workflow profile is picked up from the repository
    res = subprocess.run([SNAKEMAKE, "--snakefile", "Snakefile", "--cores", "1", "--quiet", "all",
                          "--config", f"njobs={n}", f"kind={kind}"], capture_output=True, text=True, cwd=d)
    if res.returncode:
        raise SystemExit(f"per-job benchmark failed:\n{(res.stdout + res.stderr)[-2000:]}")
    return time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--shards", type=int, default=16)
    p.add_argument("--jobs", type=int, default=10, help="trivial jobs for the per-job overhead")
    common.add_common_args(p)
    args = p.parse_args()
    info = common.setup(args)
    tmp = Path(tempfile.mkdtemp(prefix="wsvad-bench-dag-"))
    t = common.Table(f"Snakemake DAG and job overhead (median of {args.repeats})")
    out = {}
    try:
        full, n_full = make_workdir(tmp / "full", 1.0, args.shards)
        per_video, _ = make_workdir(tmp / "per_video", 1.0, None)
        tenth, n_tenth = make_workdir(tmp / "tenth", 0.1, args.shards)
        runs = {}
        for name, wd in (("full", full), ("per_video", per_video), ("tenth", tenth)):
            res = [dry_run(wd) for _ in range(args.repeats)]
            runs[name] = (sorted(r[0] for r in res)[len(res) // 2], res[0][1])
            print(f"{name}: {runs[name][1]} jobs, {runs[name][0]:.1f} s", flush=True)
        t.add(f"dry run, UCF-Crime layout ({n_full:,} videos, {args.shards} shards, 2 feature sets, "
              "3 methods x 3 seeds), s", runs["full"][0], runs["per_video"][0], higher_is_better=False,
              note="baseline: one extraction job per video")
        t.add("  jobs in the DAG", runs["full"][1], runs["per_video"][1], higher_is_better=False)
        t.add(f"  jobs with {n_tenth} videos (a tenth): O(shards + runs), not O(videos)", runs["tenth"][1],
              runs["full"][1], note=f"dry run {runs['tenth'][0]:.1f} s")
        out["dry_run"] = {k: {"seconds": v[0], "jobs": v[1]} for k, v in runs.items()}

        over = {}
        for kind in ("script", "shell"):
            ones, ns = [], []
            for r in range(args.repeats):
                sub = tmp / f"{kind}{r}"
                sub.mkdir()
                ones.append(per_job(sub, kind, 1))
                ns.append(per_job(sub, kind, args.jobs))
            ones.sort()
            ns.sort()
            over[kind] = (ns[len(ns) // 2] - ones[len(ones) // 2]) / (args.jobs - 1)
        t.add("per-job overhead of a wsvad script job (python start, glue, torch import), s", over["script"],
              None, note=f"shell job (touch): {over['shell']:.2f} s; a 75-job DAG pays ~"
              f"{75 * over['script']:.0f} s of this at 1 core")
        out["per_job_s"] = over
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    common.finish([t], info, args.json, out)


if __name__ == "__main__":
    main()
