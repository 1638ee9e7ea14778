"""The DAG end to end through Snakemake itself: the tiny dataset with the three baselines on both
snippet feature families (tests/configs/tiny.yaml + pipeline.yaml), in a temporary --directory."""
import json
import os
import time

import pandas as pd
import pytest

from tiny_dag import DATASET, LOGS, make_workdir, smk
from wsvad_core.data.manifest import read_manifest

pytestmark = pytest.mark.slow
CONFIGS = ("tiny", "pipeline")


@pytest.fixture(scope="module")
def demo_run(repo, snakemake_bin, tmp_path_factory):
    work = make_workdir(tmp_path_factory.mktemp("demo"))
    t0 = time.time()
    res = smk(snakemake_bin, repo, work, configs=CONFIGS)
    assert res.returncode == 0, res.stdout[-5000:]
    return work, time.time() - t0


def test_table_has_every_run(demo_run):
    work, seconds = demo_run
    table = pd.read_csv(work / f"results/tables/{DATASET}.csv")
    assert len(table) == 6  # 3 methods x 2 feature sets
    assert set(table["method"]) == {"mil", "rtfm", "s3r"}
    assert set(table["feature_set"]) == {"rtfm_i3d_r50", "vadclip_vitb16"}
    assert (table["weights"] == "random-init").all()
    assert table["auc_mean"].between(0, 1).all()
    md = (work / f"results/tables/{DATASET}.md").read_text()
    assert "random-init" in md
    metrics = json.loads((work / f"results/{DATASET}/runs/rtfm/rtfm_i3d_r50/seed0/metrics.json").read_text())
    assert metrics["provenance"]["weights"] == "random-init" and metrics["selection"] == "last"
    log = pd.read_csv(work / f"results/{DATASET}/runs/mil/vadclip_vitb16/seed0/train_log.csv")
    assert len(log) == 60
    assert log["loss"].tail(10).mean() < log["loss"].head(10).mean()


def test_rerun_does_nothing_and_changed_video_reruns_one_shard(demo_run, repo, snakemake_bin):
    work, _ = demo_run
    res = smk(snakemake_bin, repo, work, "-n", configs=CONFIGS)
    assert "Nothing to be done" in res.stdout, res.stdout[-3000:]
    manifest = read_manifest(work / f"results/{DATASET}/manifest.csv")
    # Snakemake 9 compares checksums of small inputs, so a bare touch of a 50 kB demo video is
    # (rightly) no change: change its content, as re-encoding a real video would.
    video, other = manifest["path"].iloc[0], manifest["path"].iloc[-1]
    with open(video, "wb") as dst, open(other, "rb") as src:
        dst.write(src.read())
    res = smk(snakemake_bin, repo, work, "-n", "--quiet", "rules", configs=CONFIGS)
    counts = {}
    for line in res.stdout.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit():
            counts[parts[0]] = int(parts[1])
    assert counts.get("extract_shard") == 2, res.stdout  # one shard, for each of the 2 feature sets
    assert "manifest" not in counts and f"demo_dataset_{DATASET}" not in counts


def test_corrupt_video_fails_its_shard_naming_the_file(demo_run, repo, snakemake_bin):
    work, _ = demo_run
    manifest = read_manifest(work / f"results/{DATASET}/manifest.csv")
    bad = manifest["path"].iloc[1]
    with open(bad, "r+b") as fh:  # keep the container header, destroy the rest
        fh.seek(48)
        fh.write(os.urandom(os.path.getsize(bad) - 48))
    res = smk(snakemake_bin, repo, work, f"results/{DATASET}/features/vadclip_vitb16.zarr/zarr.json", configs=CONFIGS)
    assert res.returncode != 0
    logs = "".join(p.read_text() for p in (work / LOGS / "extract/vadclip_vitb16").glob("*.log"))
    assert os.path.basename(bad) in logs + res.stdout
    store = work / f"results/{DATASET}/features/vadclip_vitb16.zarr"
    assert not (store / "zarr.json").exists()  # the store is not left looking complete
    video_id = manifest["video_id"].iloc[1]
    arr = store / video_id
    assert not arr.exists() or (arr / "zarr.json").exists()
