"""A tiny DAG for the tests.

* Through Snakemake (``tests/integration``): the ``tiny`` dataset of ``tests/configs/tiny.yaml``
  (6 short generated videos, one feature set at 32 px, MIL, one shard), merged with
  ``--configfile`` on top of the shipped config, run in a temporary ``--directory``; more test
  configs (``tests/configs/*.yaml`` or files a test writes) go on top of it.
* In-process: the same stages through the library functions the rules call, for tests that need
  a finished run but not Snakemake itself (determinism, the ``wsvad`` command).
"""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

from configs import config_file

DATASET = "tiny"
RUN = Path(f"results/{DATASET}/runs/mil/rtfm_i3d_r50/seed0")
STORE = Path(f"results/{DATASET}/features/rtfm_i3d_r50.zarr")
LOGS = Path(f"results/logs/{DATASET}")


def make_workdir(path: Path) -> Path:
    """An empty working directory for ``snakemake --directory``: the Snakefile reads its config
    files from its own folder, so nothing needs to be linked in."""
    path.mkdir(parents=True, exist_ok=True)
    return path


def config_args(configs) -> list[str]:
    files = [str(c if isinstance(c, Path) else config_file(c)) for c in configs]
    return ["--configfile", *files] if files else []


def smk_cmd(snakemake_bin: str, repo: Path, workdir: Path, *args: str, configs=("tiny",)) -> list[str]:
    """What `snakemake --profile profiles/local` runs, in ``workdir``, with the test configs."""
    return [snakemake_bin, "--snakefile", str(repo / "Snakefile"), "--directory", str(workdir),
            *config_args(configs), "--cores", "2", "--resources", "gpu=1", "--rerun-incomplete", *args]


def smk(snakemake_bin: str, repo: Path, workdir: Path, *args: str, configs=("tiny",)) -> subprocess.CompletedProcess:
    return subprocess.run(smk_cmd(snakemake_bin, repo, workdir, *args, configs=configs), stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, env={**os.environ, "WSVAD_DEVICE": "cpu"})


# ------------------------------------------------------------------ the same stages, in-process
# the library functions the rules call, on 6 videos of 32 frames, 8-frame snippets at 32 px

# the shipped rtfm_i3d_r50 preset (I3Res50) at 32 px, one view
TINY_RECIPE = {"backbone": "i3res50", "name": "rtfm_i3d_r50", "clip_len": 8, "stride": 8, "frames_per_snippet": 8,
               "crops": "center", "resize": 36, "interpolation": "pil_lanczos", "crop_size": 32, "batch_size": 4,
               "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5], "weights": None, "init_seed": 0}
# how the evaluation scores a run of TINY_RECIPE (rules/common.smk: scoring_protocol): every view
TINY_PROTOCOL = {"test_views": None, "primary_metric": "auc", "clip_len": TINY_RECIPE["clip_len"]}


def tiny_dataset(root: Path) -> dict:
    """Demo videos, their manifest and paths: {'data', 'manifest', 'annotation', 'train_list'}."""
    from wsvad_core.data.demo import TEST_ANNOTATION_NAME, TRAIN_LIST_NAME, generate_demo_dataset
    from wsvad_core.data.manifest import build_manifest, write_manifest

    data = root / "data"
    generate_demo_dataset(data, seed=0, n_train_normal=2, n_train_abnormal=2, n_test_normal=1,
                          n_test_abnormal=1, n_frames=32, width=64, height=48, fps=25)
    manifest = root / "manifest.csv"
    files = {"train_list": data / TRAIN_LIST_NAME, "test_annotation": data / TEST_ANNOTATION_NAME}
    write_manifest(build_manifest("ucf_crime", files, data, progress=False), manifest)
    return {"data": data, "manifest": manifest, "annotation": files["test_annotation"],
            "train_list": files["train_list"]}


def tiny_store(ds: dict, store: Path, recipe: dict = TINY_RECIPE) -> Path:
    """Extract (one shard) and finalise, as the extract_shard and finalize_store rules do."""
    from wsvad_core.data.manifest import read_manifest
    from wsvad_core.features.extract import extract_shard
    from wsvad_core.features.store import finalize_from_shards

    marker = store.with_suffix(".shards") / "0.json"
    rows = read_manifest(ds["manifest"]).to_dict("records")
    extract_shard(rows, recipe, store, marker, device="cpu", progress=False)
    finalize_from_shards([marker], store / "zarr.json")
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
                   protocol=TINY_PROTOCOL, progress=False)
    return metrics
