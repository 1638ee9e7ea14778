"""The demo DAG end to end through Snakemake itself, on a smaller config."""
import json
import os
import time

import pandas as pd
import pytest
import yaml
from tiny_dag import smk

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo_run(repo, snakemake_bin, tmp_path_factory):
    work = tmp_path_factory.mktemp("demo")
    cfg = yaml.safe_load((repo / "config.yaml").read_text())
    demo = cfg["datasets"]["demo"]
    demo["generate"].update(n_train_normal=4, n_train_abnormal=4, n_test_normal=2, n_test_abnormal=2,
                            n_frames=64)
    # the three baselines on both feature families; every other method has its own tests and
    # runs in the full demo (README)
    demo.update(methods=["mil", "rtfm", "s3r"], feature_sets=["i3d_r50", "clip_vitb16"])
    demo.pop("run_feature_sets", None)
    demo["feature_overrides"] = {k: v for k, v in demo["feature_overrides"].items()
                                 if k in demo["feature_sets"]}
    demo["method_overrides"] = {m: {"max_steps": 30, "batch_size": 2} for m in demo["methods"]}
    demo["method_overrides"]["mil"] = {"max_steps": 60, "batch_size": 4}
    (work / "config.yaml").write_text(yaml.safe_dump(cfg))
    t0 = time.time()
    res = smk(snakemake_bin, repo, work)
    assert res.returncode == 0, res.stdout[-5000:]
    return work, time.time() - t0


def test_table_has_every_run(demo_run):
    work, seconds = demo_run
    table = pd.read_csv(work / "results/tables/demo.csv")
    assert len(table) == 6  # 3 methods x 2 feature sets
    assert set(table["method"]) == {"mil", "rtfm", "s3r"}
    assert set(table["feature_set"]) == {"i3d_r50", "clip_vitb16"}
    assert (table["weights"] == "random-init").all()
    assert table["auc_mean"].between(0, 1).all()
    md = (work / "results/tables/demo.md").read_text()
    assert "random-init" in md
    metrics = json.loads((work / "results/demo/runs/rtfm/i3d_r50/seed0/metrics.json").read_text())
    assert metrics["provenance"]["weights"] == "random-init" and metrics["selection"] == "last"
    log = pd.read_csv(work / "results/demo/runs/mil/clip_vitb16/seed0/train_log.csv")
    assert len(log) == 60
    assert log["loss"].tail(10).mean() < log["loss"].head(10).mean()


def test_rerun_does_nothing_and_changed_video_reruns_one_shard(demo_run, repo, snakemake_bin):
    work, _ = demo_run
    res = smk(snakemake_bin, repo, work, "-n")
    assert "Nothing to be done" in res.stdout, res.stdout[-3000:]
    manifest = pd.read_csv(work / "results/demo/manifest.csv")
    # Snakemake 9 compares checksums of small inputs, so a bare touch of a 50 kB demo video is
    # (rightly) no change: change its content, as re-encoding a real video would.
    video, other = manifest["path"].iloc[0], manifest["path"].iloc[-1]
    with open(video, "wb") as dst, open(other, "rb") as src:
        dst.write(src.read())
    res = smk(snakemake_bin, repo, work, "-n", "--quiet", "rules")
    counts = {}
    for line in res.stdout.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit():
            counts[parts[0]] = int(parts[1])
    assert counts.get("extract_shard") == 2, res.stdout  # one shard, for each of the 2 feature sets
    assert "manifest" not in counts and "demo_dataset_demo" not in counts


def test_corrupt_video_fails_its_shard_naming_the_file(demo_run, repo, snakemake_bin):
    work, _ = demo_run
    manifest = pd.read_csv(work / "results/demo/manifest.csv")
    bad = manifest["path"].iloc[1]
    with open(bad, "r+b") as fh:  # keep the container header, destroy the rest
        fh.seek(48)
        fh.write(os.urandom(os.path.getsize(bad) - 48))
    res = smk(snakemake_bin, repo, work, "results/demo/features/clip_vitb16.zarr/zarr.json")
    assert res.returncode != 0
    logs = "".join(p.read_text() for p in (work / "results/logs/demo/extract/clip_vitb16").glob("*.log"))
    assert os.path.basename(bad) in logs + res.stdout
    store = work / "results/demo/features/clip_vitb16.zarr"
    assert not (store / "zarr.json").exists()  # the merged store is not left looking complete
    video_id = manifest["video_id"].iloc[1]
    arr = store / video_id
    assert not arr.exists() or (arr / "zarr.json").exists()
