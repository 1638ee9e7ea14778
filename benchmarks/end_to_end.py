"""Wall time of the README's demo command from an empty ``results/``.

Copies the working tree (tracked and untracked, non-ignored files; ``.venv`` linked) to a
temporary folder, runs ``.venv/bin/snakemake --profile profiles/local`` there ``--runs`` times
from scratch, and reports the median wall time (the load average before and after each run
beside it), the number of jobs, the slowest rules (from the rules' ``benchmark:`` files), the
time of the no-op re-run that follows (``-n``: nothing to do), and every method's AUC and
first/last loss. The baseline figure is the same command before this project's speed work:
759 s for 70 jobs on the same kind of 2-core machine (benchmarks/README.md). The repository's
own ``results/`` is never touched.

    .venv/bin/python benchmarks/end_to_end.py --runs 3
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import re
import shutil
import statistics
import subprocess
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import common


def copy_tree(dst: Path) -> None:
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=common.ROOT,
                           capture_output=True, text=True, check=True).stdout.split("\0")
    for rel in filter(None, files):
        src = common.ROOT / rel
        if src.is_file():
            (dst / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst / rel)
    os.symlink(common.ROOT / ".venv", dst / ".venv")


def rule_times(results: Path) -> dict[str, float]:
    """Seconds per rule summed over its jobs, from the benchmark .tsv files."""
    out: dict[str, float] = defaultdict(float)
    for tsv in (results / "benchmarks").rglob("*.tsv"):
        lines = tsv.read_text().splitlines()
        if len(lines) < 2:
            continue
        rel = tsv.relative_to(results / "benchmarks").parts
        rule = rel[1] if len(rel) > 2 else tsv.stem
        out[rule] += float(lines[1].split("\t")[0])
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


BASELINE_S = 759.0  # the same command before the speed work (70 jobs, 2-core machine, quiet)


def first_and_last_tenth(values: list[float]) -> tuple[float, float]:
    k = max(1, len(values) // 10)
    return sum(values[:k]) / k, sum(values[-k:]) / k


def run_metrics(results: Path, config_file: Path) -> list[dict]:
    """Method, feature set, AUC, first/last tenth of the loss of every demo run, and whether the
    loss falls within each training stage: a staged method (SSRL, UR-DMU + patch; the demo
    config's ``stage_steps``) adds its patch losses at the stage boundary, so its loss jumps
    there and falls again within the stage."""
    import yaml

    overrides = yaml.safe_load(config_file.read_text())["datasets"]["demo"]["method_overrides"]
    out = []
    for m in sorted((results / "demo" / "runs").glob("*/*/seed*/metrics.json")):
        d = json.loads(m.read_text())
        lines = (m.parent / "train_log.csv").read_text().splitlines()
        header, rows = lines[0].split(","), [ln.split(",") for ln in lines[1:]]
        loss = [float(r[header.index("loss")]) for r in rows]
        stages = list((overrides.get(d["method"]) or {}).get("stage_steps") or [])
        if sum(stages) != len(loss):
            stages = [len(loss)]
        bounds = [0, *itertools.accumulate(stages)]
        falls = all(last < first for first, last in
                    (first_and_last_tenth(loss[a:b]) for a, b in zip(bounds, bounds[1:])))
        first, last = first_and_last_tenth(loss)
        out.append({"method": d["method"], "feature_set": d["feature_set"], "auc": 100 * d["auc"],
                    "loss_first": first, "loss_last": last, "loss_falls": falls})
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--keep", type=Path, default=None, help="run in this folder and keep it")
    p.add_argument("--runs", type=int, default=3, help="demo runs from scratch (the median is reported)")
    common.add_common_args(p)
    args = p.parse_args()
    info = common.setup(args)
    work = args.keep or Path(tempfile.mkdtemp(prefix="wsvad-bench-e2e-"))
    t = common.Table("End to end: README demo command from an empty results/")
    out = {}
    try:
        work.mkdir(parents=True, exist_ok=True)
        copy_tree(work)
        cmd = [".venv/bin/snakemake", "--profile", "profiles/local"]
        walls, loads = [], []
        for _ in range(args.runs):
            shutil.rmtree(work / "results", ignore_errors=True)
            shutil.rmtree(work / ".snakemake", ignore_errors=True)
            before = os.getloadavg()[0]
            t0 = time.perf_counter()
            res = subprocess.run(cmd, cwd=work, capture_output=True, text=True)
            walls.append(time.perf_counter() - t0)
            loads.append((before, os.getloadavg()[0]))
            log = res.stdout + res.stderr
            if res.returncode:
                raise SystemExit(f"demo run failed (rc {res.returncode}):\n{log[-4000:]}")
        wall = statistics.median(walls)
        jobs = re.findall(r"(\d+) of (\d+) steps \(100%\) done", log)
        n_jobs = int(jobs[-1][1]) if jobs else -1
        t0 = time.perf_counter()
        noop = subprocess.run(cmd + ["-n"], cwd=work, capture_output=True, text=True)
        noop_s = time.perf_counter() - t0
        nothing = "Nothing to be done" in noop.stdout + noop.stderr
        rules = rule_times(work / "results")
        t.add(f"wall time of `snakemake --profile profiles/local` ({n_jobs} jobs), median of {len(walls)}, s",
              wall, BASELINE_S, higher_is_better=False,
              note="runs " + ", ".join(f"{w:.0f} s (load {a:.1f} -> {b:.1f})" for w, (a, b) in zip(walls, loads))
                   + f"; baseline: {BASELINE_S:.0f} s before the speed work")
        t.add("no-op re-run (`-n` after it), s", noop_s, None,
              note="nothing to be done" if nothing else "WARNING: the re-run would do work")
        for rule, s in list(rules.items())[:6]:
            t.add(f"  rule {rule}: seconds summed over its jobs", s, None)
        runs = run_metrics(work / "results", work / "config" / "demo.yaml")
        worst = min(runs, key=lambda r: r["auc"])
        t.add(f"lowest demo AUC of the {len(runs)} runs (%)", worst["auc"], None,
              note=f"{worst['method']} on {worst['feature_set']}; every loss falls: "
                   f"{all(r['loss_falls'] for r in runs)} (within each stage)")
        out = {"wall_s": wall, "walls_s": walls, "loads": loads, "jobs": n_jobs, "noop_s": noop_s,
               "rules_s": rules, "runs": runs}
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    common.finish([t], info, args.json, out)


if __name__ == "__main__":
    main()
