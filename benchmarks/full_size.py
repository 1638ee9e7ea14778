"""Full-size proof: every method of the shipped benchmark configs at its official batch, on
synthetic features of each benchmark's published layout and sizes.

For each (benchmark, method, feature set) the shipped config plans (config/benchmarks.yaml;
``--extra`` adds the methods it leaves out for want of features, on UCF-Crime with the
features they would be extracted as), in its own process:

* the method is built with the benchmark's resolved hyper-parameters (``method_overrides``, the
  data-dependent ones from the dataset: class names, S3R's dictionary size);
* the shared training loop (``training/loop.py``) runs K + 1 steps at the official batch on a
  training set of synthetic segments ``(videos, crops, S, D)``: a step's input has the shape
  ``load_training_set`` gives, whatever the videos' lengths (S is the method's segment count;
  every sample is full, which is a long video's worst case for the padded policies);
  seconds per step = median of steps 2..K (step 1 warms up);
* step K + 1 runs under torch.profiler (CPU, ``profile_memory``): its peak is the highest
  "Total Allocated" of the allocator events inside the step (activations, gradients, the batch
  in float32), to which the model state is added (parameters and buffers, Adam state, one set
  of gradients: the old gradients live through the forward; counting them over the whole step
  makes the estimate an upper bound by at most their size). That sum is the estimate of what the
  step needs on a 6 GB card, whose allocator the jobs cap at 6144 - 512 MB (the CUDA context,
  ``wsvad_core/device.py``). The CPU allocator is not CUDA's caching allocator: no
  fragmentation or cuDNN workspace is counted;
* the benchmark's longest test video (T = ceil(frames / 16): UCF-Crime's and ShanghaiTech's frame
  counts from data/benchmarks; XD-Violence ships none, so the end of its last annotated
  interval, a lower bound) is scored with the views the evaluation scores, timed, and profiled
  the same way (model state + the peak inside ``score``).

Printed per row: s/step, the official schedule's projected time (official max_steps x s/step,
on this CPU), peak RSS of the process, the train and score memory estimates. ``--json`` keeps
everything, rewritten after every row; with ``--keep`` a later run measures only the rows it
lacks (or that failed), so the hours of a whole table can be spread over several runs.

    .venv/bin/python benchmarks/full_size.py [--steps 3] [--benchmarks ...] [--methods ...]
        [--extra] [--threads N] [--json PATH [--keep]]
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import common

BENCHMARKS = ("ucf_crime", "shanghaitech", "xd_violence")
# methods the shipped configs leave out (no published features), on UCF-Crime with the feature
# set they would run on; patch stores are stacked after the snippet crops as StackedStore does
EXTRA = {"ssrl": "rtfm_i3d_r50", "urdmu_patch": "rtfm_i3d_r50", "timesformer_mil": "timesformer"}
PATCH_SETS = {(2, 3): "rtfm_i3d_r50_p2x3", (3, 5): "rtfm_i3d_r50_p3x5", (4, 7): "rtfm_i3d_r50_p4x7"}
MiB = 2**20


def config() -> dict:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from dry_run import shipped_config

    return shipped_config()


def plan(cfg: dict, benchmarks, methods, extra: bool) -> list[tuple[str, str, str]]:
    from wsvad_core.config import runs

    rows = []
    for d in benchmarks:
        pairs = sorted({(m, fs) for m, fs, _ in runs(cfg, d)})
        if extra and d == "ucf_crime":
            pairs += [(m, fs) for m, fs in EXTRA.items() if m not in {p[0] for p in pairs}]
        rows += [(d, m, fs) for m, fs in pairs if not methods or m in methods]
    return rows


def longest_test_snippets(cfg: dict, dataset: str) -> tuple[int, str]:
    from wsvad_core.data.benchmarks import benchmark_videos, dataset_files

    ds = cfg["datasets"][dataset]
    files = dataset_files(ds)
    frames = [v.n_frames for v in benchmark_videos(ds["layout"], files) if v.split == "test"]
    if max(frames) > 0:
        return math.ceil(max(frames) / 16), "frame counts"
    from wsvad_core.data.annotations import parse_xd_violence_annotation

    ends = [e for iv in parse_xd_violence_annotation(files["test_annotation"]).values() for _, e in iv]
    return math.ceil(max(ends) / 16), "last annotated frame (lower bound)"


def profiled_peak(prof) -> float:
    """Highest 'Total Allocated' of the profiler's CPU allocator events (bytes allocated since
    the profiled window began, minus those freed in it)."""
    with tempfile.NamedTemporaryFile(suffix=".json") as f:
        prof.export_chrome_trace(f.name)
        events = json.load(open(f.name))["traceEvents"]
    return max((e["args"]["Total Allocated"] for e in events if e.get("name") == "[memory]"), default=0)


def tensor_bytes(tensors) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


def run_row(dataset: str, method: str, feature_set: str, steps: int) -> dict:
    """One (benchmark, method, feature set); runs in a child process."""
    import warnings

    import numpy as np
    import pandas as pd
    import torch
    from torch.profiler import ProfilerActivity, profile, schedule

    from wsvad_core.cards import backbone_card
    from wsvad_core.config import dataset_settings, method_overrides, recipe, store_views
    from wsvad_core.data.benchmarks import benchmark_videos, dataset_files
    from wsvad_core.dictionary import n_atoms_for
    from wsvad_core.methods import create_method, get_method, hparams_to_dict, make_optimizer
    from wsvad_core.methods.registry import resolve_hparams
    from wsvad_core.runs import RunRecord
    from wsvad_core.training.data import TrainingSet
    from wsvad_core.training.loop import train

    warnings.filterwarnings("ignore", message="Profiler won't be using warmup")
    cfg = config()
    ds = cfg["datasets"][dataset]
    spec = get_method(method)
    rec = recipe(cfg, dataset, feature_set)
    dim = backbone_card(rec["backbone"]).dim
    views = store_views(cfg, dataset, feature_set) if feature_set in ds["feature_sets"] else rec["views"]
    test_views = (ds.get("test_views") or {}).get(feature_set) or views
    videos = benchmark_videos(ds["layout"], dataset_files(ds))
    manifest = pd.DataFrame([{**v.as_row(), "class": v.cls} for v in videos])
    overrides = method_overrides(cfg, dataset, method)
    if spec.prepare_overrides is not None:
        overrides = spec.prepare_overrides(dict(overrides), {"recipe": rec}, manifest)
    official = resolve_hparams(method, **overrides)
    grids = official.patch_grids()
    crops = len(views) + sum(r * c for r, c in grids)  # snippet crops, then every patch of each grid
    test_crops = len(test_views) + sum(r * c for r, c in grids)
    staged = "stage_steps" in {f.name for f in dataclasses.fields(official)}
    n_stages = 1 + len(grids) if staged else 1
    # K + 1 steps, all in the last (costliest) stage of a staged method
    short = {"max_steps": steps + 1, **({"stage_steps": [0] * (n_stages - 1) + [steps + 1]} if staged else {})}
    dictionary = None
    if spec.needs_dictionary:
        n_normal = sum(1 for v in videos if v.split == "train" and v.label == 0)
        atoms = n_atoms_for(n_normal, dataset_settings(cfg, dataset, "dictionary")["percentage"])
        dictionary = np.random.default_rng(0).standard_normal((atoms, dim)).astype(np.float32)
    model, hp = create_method(method, dim, dictionary=dictionary, **{**overrides, **short})
    rows_per_video = crops if hp.sample_unit == "crop" else 1
    n = math.ceil(hp.batch_size / rows_per_video)  # videos per class: one official batch
    S = hp.n_segments
    gen = torch.Generator().manual_seed(0)
    normal = torch.randn((n, crops, S, dim), generator=gen).half()
    abnormal = (torch.randn((n, crops, S, dim), generator=gen) + 0.5).half()
    classes = None
    if spec.needs_class_labels:
        classes = torch.randint(1, len(hp.class_names), (n,), generator=gen)
    data = TrainingSet(normal, abnormal, [f"n{i}" for i in range(n)], [f"a{i}" for i in range(n)], classes)

    device = torch.device("cpu")
    optimizer = make_optimizer(model, hp)
    prof = profile(activities=[ProfilerActivity.CPU], profile_memory=True,
                   schedule=schedule(wait=steps, warmup=0, active=1, repeat=1))
    after = model.after_step

    def after_step():  # the loop's hook after optimizer.step(): the profiler's step boundary
        after()
        prof.step()

    model.after_step = after_step
    record = RunRecord(method=method, feat_dim=dim, overrides=overrides, seed=0, store_attrs={"recipe": rec},
                       hparams=hparams_to_dict(hp), version=spec.version)
    with tempfile.TemporaryDirectory() as out, prof:
        log = train(model, hp, data, out, device=device, optimizer=optimizer, record=record, progress=False,
                    ckpt_every=10**9)
    model.after_step = after
    times = np.diff([0.0] + [r["time_s"] for r in log])
    s_step = float(np.median(times[1:steps])) if steps > 1 else float(times[0])
    step_peak = profiled_peak(prof)
    params = tensor_bytes(list(model.parameters()) + list(model.buffers()))
    grads = tensor_bytes(p for p in model.parameters() if p.requires_grad)
    opt_state = tensor_bytes(v for st in optimizer.state.values() for v in st.values() if torch.is_tensor(v))

    T, t_source = longest_test_snippets(cfg, dataset)
    x = torch.randn((1, test_crops, T, dim), generator=gen)
    model.eval()
    t0 = time.perf_counter()
    model.score(x)
    score_s = time.perf_counter() - t0
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as sprof:
        model.score(x)
    score_peak = profiled_peak(sprof)
    train_est = params + opt_state + grads + step_peak
    score_est = params + tensor_bytes([x]) + score_peak
    return {
        "benchmark": dataset, "method": method, "feature_set": feature_set, "family": rec["family"],
        "in_config": feature_set in ds["feature_sets"] and method in ds["methods"],
        "batch": f"{hp.batch_size}+{hp.batch_size}" + (" rows" if hp.sample_unit == "crop" else ""),
        "train_input": [hp.batch_size if hp.sample_unit == "crop" else n, 1 if hp.sample_unit == "crop" else crops,
                        S, dim],
        "stage": f"last of {n_stages}" if staged else "",
        "s_per_step": s_step, "step_times_s": times.tolist(), "official_max_steps": official.max_steps,
        "projected_h": official.max_steps * s_step / 3600,
        "test_T": T, "test_T_source": t_source, "test_crops": test_crops, "score_s": score_s,
        "params_mb": params / MiB, "grads_mb": grads / MiB, "optimizer_state_mb": opt_state / MiB,
        "step_peak_mb": step_peak / MiB, "train_estimate_mb": train_est / MiB,
        "score_peak_mb": score_peak / MiB, "score_estimate_mb": score_est / MiB,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "torch_threads": torch.get_num_threads(),
    }


def budget_mb() -> float:
    from wsvad_core.device import CUDA_CONTEXT_MB

    return 6144 - CUDA_CONTEXT_MB


def render(rows: list[dict]) -> str:
    cap = budget_mb()
    lines = ["| benchmark | method | features | batch (input B×C×S×D) | s/step | official steps | projected | "
             "peak RSS MB | train est. MB | test T × crops | score s | score est. MB | fits |",
             "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['benchmark']} | {r['method']} | {r['feature_set']} | error: {r['error']} |"
                         + " |" * 9)
            continue
        proj = r["projected_h"]
        proj_s = f"{proj:.1f} h" if proj < 48 else f"{proj / 24:.1f} d"
        fits = "yes" if max(r["train_estimate_mb"], r["score_estimate_mb"]) <= cap else "**no**"
        name = r["method"] + ("" if r["in_config"] else " (extra)") + (f", {r['stage']} stages" if r["stage"] else "")
        shape = "×".join(map(str, r["train_input"]))
        lines.append(f"| {r['benchmark']} | {name} | {r['feature_set']} | {r['batch']} ({shape}) | "
                     f"{r['s_per_step']:.2f} | {r['official_max_steps']:,} | {proj_s} | {r['peak_rss_mb']:,.0f} | "
                     f"{r['train_estimate_mb']:,.0f} | {r['test_T']:,} × {r['test_crops']} | {r['score_s']:.2f} | "
                     f"{r['score_estimate_mb']:,.0f} | {fits} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=3, help="timed training steps K (one more is profiled)")
    ap.add_argument("--benchmarks", nargs="+", default=list(BENCHMARKS), choices=BENCHMARKS)
    ap.add_argument("--methods", nargs="+", default=None, help="only these methods")
    ap.add_argument("--extra", action="store_true", help=f"also {sorted(EXTRA)} on UCF-Crime")
    ap.add_argument("--threads", type=int, default=None, help="torch threads per row (default: torch's)")
    ap.add_argument("--json", default=None, help="rewritten after every row (a stopped run keeps what it measured)")
    ap.add_argument("--keep", action="store_true",
                    help="keep the rows --json already holds without an error and measure only the others")
    ap.add_argument("--row", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.row:  # child: one row, JSON on the last line
        import torch

        if args.threads:
            torch.set_num_threads(args.threads)
        print(json.dumps(run_row(*args.row, args.steps)))
        return
    info = common.print_machine()
    todo = plan(config(), args.benchmarks, args.methods, args.extra)
    print(f"{len(todo)} rows, K = {args.steps} timed steps each; allocator budget {budget_mb():.0f} MB", flush=True)
    kept = {}
    if args.keep and args.json and Path(args.json).exists():
        kept = {(r["benchmark"], r["method"], r["feature_set"]): r
                for r in json.loads(Path(args.json).read_text())["rows"] if "error" not in r}
        print(f"{sum(key in kept for key in todo)} of them kept from {args.json}", flush=True)
    others = [r for key, r in kept.items() if key not in todo]  # rows of other benchmarks stay in the file
    rows = []

    def save(end_load=None):
        if args.json:
            machine = {**info, **({"load_avg_end": end_load} if end_load else {})}
            tmp = Path(args.json).with_suffix(".tmp")
            tmp.write_text(json.dumps({"machine": machine, "steps": args.steps, "allocator_budget_mb": budget_mb(),
                                       "rows": rows + others}, indent=1))
            os.replace(tmp, args.json)

    for d, m, fs in todo:
        if (d, m, fs) in kept:
            rows.append(kept[(d, m, fs)])
            continue
        t0 = time.perf_counter()
        cmd = [sys.executable, __file__, "--row", d, m, fs, "--steps", str(args.steps)]
        if args.threads:
            cmd += ["--threads", str(args.threads)]
        res = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env={**os.environ, "WSVAD_DEVICE": "cpu"})
        if res.returncode:
            err = (res.stderr.strip().splitlines() or ["?"])[-1]
            if res.returncode < 0:  # a signal: SIGKILL with no traceback is the kernel's OOM killer
                ram_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
                err = f"killed by signal {-res.returncode}" + (
                    f" (out of memory? this machine has {ram_gb:.0f} GB)" if res.returncode == -9 else "")
            rows.append({"benchmark": d, "method": m, "feature_set": fs, "error": err})
            print(f"{d} {m} {fs}: FAILED: {err}", flush=True)
            save()
            continue
        r = json.loads(res.stdout.strip().splitlines()[-1])
        r["load_avg_1"] = os.getloadavg()[0]
        rows.append(r)
        print(f"{d} {m} {fs}: {r['s_per_step']:.2f} s/step, train est {r['train_estimate_mb']:,.0f} MB, "
              f"score est {r['score_estimate_mb']:,.0f} MB, peak RSS {r['peak_rss_mb']:,.0f} MB "
              f"({time.perf_counter() - t0:.0f} s, load {r['load_avg_1']:.1f})", flush=True)
        save()
    print()
    print(render(rows))
    end_load = [round(x, 2) for x in os.getloadavg()]
    print(f"\nload average at the end: {'/'.join(map(str, end_load))}")
    save(end_load)


if __name__ == "__main__":
    main()
