"""A tiny demo DAG in a temporary folder, for the end-to-end tests that need a real Snakemake run
(crash and resume, plots and report): 6 short videos, one feature set at 32 px, one method, one
shard, so a full run is a handful of small jobs."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import yaml

RUN = Path("results/demo/runs/mil/i3d_r50/seed0")
STORE = Path("results/demo/features/i3d_r50.zarr")


def tiny_config(repo: Path, max_steps: int = 60) -> dict:
    cfg = yaml.safe_load((repo / "config.yaml").read_text())
    demo = cfg["datasets"]["demo"]
    demo["generate"].update(n_train_normal=2, n_train_abnormal=2, n_test_normal=1, n_test_abnormal=1,
                            n_frames=32, width=64, height=48)
    demo.update(n_shards=1, feature_sets=["i3d_r50"], methods=["mil"], seeds=[0])
    demo.pop("run_feature_sets", None)
    demo["feature_overrides"] = {"i3d_r50": {"resize": 36, "crop_size": 32, "crops": "center", "batch_size": 2}}
    demo["method_overrides"] = {"mil": {"max_steps": max_steps, "batch_size": 2}}
    cfg["run_datasets"] = ["demo"]
    return cfg


def make_workdir(path: Path, cfg: dict) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.yaml").write_text(yaml.safe_dump(cfg))
    return path


def smk_cmd(snakemake_bin: str, repo: Path, workdir: Path, *args: str) -> list[str]:
    """What `snakemake --profile profiles/default` runs, pointed at ``workdir``."""
    return [snakemake_bin, "--snakefile", str(repo / "Snakefile"), "--directory", str(workdir),
            "--cores", "2", "--resources", "gpu=1", "--rerun-incomplete", *args]


def smk(snakemake_bin: str, repo: Path, workdir: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(smk_cmd(snakemake_bin, repo, workdir, *args), stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, env={**os.environ, "WSVAD_DEVICE": "cpu"})


# ------------------------------------------------------------------ the same stages, in-process
# For tests that need a finished run but not Snakemake itself (determinism, the `wsvad` command):
# the library functions the rules call, on 6 videos of 32 frames, 8-frame snippets at 32 px.

TINY_RECIPE = {"backbone": "i3d_r50", "name": "i3d_r50", "clip_len": 8, "stride": 8, "frames_per_snippet": 8,
               "crops": "center", "resize": 36, "crop_size": 32, "batch_size": 4,
               "mean": [0.45, 0.45, 0.45], "std": [0.225, 0.225, 0.225], "weights": None, "init_seed": 0}


def tiny_dataset(root: Path) -> dict:
    """Demo videos, their manifest and paths: {'data', 'manifest', 'annotation'}."""
    from wsvad_core.data.demo import TEST_ANNOTATION_NAME, TRAIN_LIST_NAME, generate_demo_dataset
    from wsvad_core.data.manifest import build_ucf_layout_manifest, write_manifest

    data = root / "data"
    generate_demo_dataset(data, seed=0, n_train_normal=2, n_train_abnormal=2, n_test_normal=1,
                          n_test_abnormal=1, n_frames=32, width=64, height=48, fps=25)
    manifest = root / "manifest.csv"
    write_manifest(build_ucf_layout_manifest(data, data / TRAIN_LIST_NAME, data / TEST_ANNOTATION_NAME,
                                             progress=False), manifest)
    return {"data": data, "manifest": manifest, "annotation": data / TEST_ANNOTATION_NAME}


def tiny_store(ds: dict, store: Path, recipe: dict = TINY_RECIPE) -> Path:
    """Extract (one shard) and merge, as the extract_shard and merge_features rules do."""
    from wsvad_core.features.extract import extract_shard, merge_shards

    marker = store.with_suffix(".shards") / "0.json"
    extract_shard(ds["manifest"], 0, 1, recipe, store, marker, device="cpu", progress=False)
    merge_shards([marker], recipe, store / "zarr.json")
    return store


def tiny_run(ds: dict, store: Path, run_dir: Path, seed: int = 0, method: str = "mil",
             max_steps: int = 20) -> Path:
    """Ground truth, training and evaluation of one run; returns its metrics.json."""
    from wsvad_core.data.ground_truth import build_store_ground_truth
    from wsvad_core.evaluation.run import run_evaluation
    from wsvad_core.training.run import run_training

    gt = run_dir / "gt.npz"
    run_dir.mkdir(parents=True, exist_ok=True)
    build_store_ground_truth(ds["manifest"], store, ds["annotation"], TINY_RECIPE["clip_len"], gt)
    run_training(method=method, manifest=ds["manifest"], store=store, run_dir=run_dir, seed=seed,
                 overrides={"max_steps": max_steps, "batch_size": 2}, progress=False)
    metrics = run_dir / "metrics.json"
    run_evaluation(checkpoint=run_dir / "checkpoint.pt", manifest=ds["manifest"], store=store,
                   ground_truth=gt, scores_out=run_dir / "scores.npz", metrics_out=metrics,
                   clip_len=TINY_RECIPE["clip_len"], progress=False)
    return metrics
