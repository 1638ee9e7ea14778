"""`kill -9` of a real Snakemake run, once during extraction and once during training, then the
same command again (after `--unlock`, which a SIGKILL makes necessary): the feature store and
metrics.json are identical to an uninterrupted run, and training resumed from its last
checkpoint rather than from step 0."""
from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tiny_dag import DATASET, LOGS, RUN, STORE, make_workdir, smk, smk_cmd
from wsvad_core.features.store import open_store

pytestmark = pytest.mark.slow

MAX_STEPS = 160  # tests/configs/crash_resume.yaml: the kill lands between 100 and 160
CONFIGS = ("tiny", "crash_resume")
TARGET = str(RUN / "metrics.json")


def start(snakemake_bin: str, repo: Path, work: Path) -> subprocess.Popen:
    # its own session, so one killpg takes Snakemake and the job it runs, as a SIGKILL'd
    # terminal or a node failure would
    return subprocess.Popen(smk_cmd(snakemake_bin, repo, work, TARGET, configs=CONFIGS), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True,
                            env={**os.environ, "WSVAD_DEVICE": "cpu"})


def kill_when(proc: subprocess.Popen, ready, what: str, timeout: float = 600) -> None:
    t0 = time.monotonic()
    while not ready():
        if proc.poll() is not None:
            pytest.fail(f"the run ended (rc {proc.returncode}) before {what}")
        if time.monotonic() - t0 > timeout:
            os.killpg(proc.pid, signal.SIGKILL)
            pytest.fail(f"no {what} after {timeout} s")
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def rerun(snakemake_bin, repo, work) -> None:
    """The recovery docs/errors.md gives: the same command fails on the stale lock and says
    how to remove it; --unlock; the same command again (the profile's rerun-incomplete)."""
    res = smk(snakemake_bin, repo, work, TARGET, configs=CONFIGS)
    assert res.returncode != 0 and "--unlock" in res.stdout, res.stdout[-2000:]
    assert smk(snakemake_bin, repo, work, "--unlock", configs=CONFIGS).returncode == 0


@pytest.fixture(scope="module")
def runs(repo, snakemake_bin, tmp_path_factory):
    ref = make_workdir(tmp_path_factory.mktemp("uninterrupted"))
    crashed = make_workdir(tmp_path_factory.mktemp("crashed"))
    reference = start(snakemake_bin, repo, ref)  # runs beside the crashed one

    # 1. kill during extraction: once the first video's array is complete
    proc = start(snakemake_bin, repo, crashed)
    store = crashed / STORE
    kill_when(proc, lambda: any(store.glob("*/zarr.json")), "a first feature array")
    marker = crashed / f"results/{DATASET}/features/rtfm_i3d_r50.shards/0.json"
    assert not marker.exists() and not (store / "zarr.json").exists(), "the kill came after extraction"
    rerun(snakemake_bin, repo, crashed)

    # 2. the same command, killed during training: once resume.pt exists (step 100)
    proc = start(snakemake_bin, repo, crashed)
    run = crashed / RUN
    kill_when(proc, lambda: (run / "resume.pt").exists(), "resume.pt")
    assert not (run / "checkpoint.pt").exists(), "the kill came after training"
    rerun(snakemake_bin, repo, crashed)

    # 3. the same command to the end
    res = smk(snakemake_bin, repo, crashed, TARGET, configs=CONFIGS)
    assert res.returncode == 0, res.stdout[-5000:]
    assert reference.wait(timeout=900) == 0
    return ref, crashed


def test_store_identical_to_an_uninterrupted_run(runs):
    ref, crashed = (open_store(w / STORE) for w in runs)
    assert ref.video_ids == crashed.video_ids and len(ref) == 6
    assert ref.attrs == crashed.attrs
    for vid in ref.video_ids:
        assert np.array_equal(ref[vid], crashed[vid]), vid
        assert ref.video_attrs(vid) == crashed.video_attrs(vid)
    assert not (runs[1] / STORE / ".tmp").exists()  # the killed write's leftovers are gone


def test_training_resumed_and_metrics_identical(runs):
    ref, crashed = runs
    assert (ref / RUN / "metrics.json").read_bytes() == (crashed / RUN / "metrics.json").read_bytes()
    log = (crashed / LOGS / "train/mil/rtfm_i3d_r50/seed0.log").read_text()
    assert "from step 100" in log and "resuming" in log  # not from zero
    a, b = (pd.read_csv(w / RUN / "train_log.csv") for w in runs)
    assert len(a) == len(b) == MAX_STEPS
    losses = [c for c in a.columns if c not in ("time_s", "peak_mem_mb")]
    pd.testing.assert_frame_equal(a[losses], b[losses])
    assert not (crashed / RUN / "resume.pt").exists()
