"""The README's "Your own videos" section, followed as written: its YAML (the first yaml block of
that section, with the dataset root and the weights files pointed at this test's files) merges
into the shipped config and plans every method on every family it accepts; on a small dataset
the batch-size rule stops the dry run naming the key and both counts, and the override the
README gives makes it pass."""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

from tiny_dag import make_workdir

pytestmark = pytest.mark.slow


def readme_own_videos_yaml(repo: Path) -> dict:
    text = (repo / "README.md").read_text()
    section = text.split("## Your own videos", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```yaml\n(.*?)```", section, re.S)
    assert block, "README: no yaml block in 'Your own videos'"
    return yaml.safe_load(block.group(1))


def dry_run(snakemake_bin, repo, work, config: dict):
    path = work / "own.yaml"
    path.write_text(yaml.safe_dump(config))
    return subprocess.run([snakemake_bin, "--snakefile", str(repo / "Snakefile"), "--directory", str(work),
                           "--configfile", str(path), "-n", "--quiet", "rules", "--cores", "2"],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_readme_own_videos_config(repo, snakemake_bin, tmp_path):
    from wsvad_core.data.demo import generate_demo_dataset

    cfg = readme_own_videos_yaml(repo)
    (name,) = cfg["run_datasets"]
    ds = cfg["datasets"][name]
    root = tmp_path / "my_cameras"
    generate_demo_dataset(root, seed=0, n_train_normal=3, n_train_abnormal=3, n_test_normal=1,
                          n_test_abnormal=1, n_frames=32, width=64, height=48, fps=25)
    assert (root / ds["train_list"]).is_file() and (root / ds["test_annotation"]).is_file()
    ds["root"] = str(root)
    for entry in cfg["feature_sets"].values():  # the README names local weights files
        weights = tmp_path / Path(entry["weights"]).name
        weights.write_bytes(b"")  # the dry run checks that it exists; check_weights loads it later
        entry["weights"] = str(weights)
    work = make_workdir(tmp_path / "work")

    res = dry_run(snakemake_bin, repo, work, cfg)
    assert res.returncode != 0
    # 3 + 3 training videos: MIL's official 30 + 30 cannot be drawn
    assert f"datasets.{name}.method_overrides.mil.batch_size" in res.stdout, res.stdout[-3000:]
    assert "3 normal and 3 abnormal training videos" in res.stdout, res.stdout[-3000:]

    ds["method_overrides"] = {m: {"batch_size": 2} for m in ds["methods"]}  # README: lower it per dataset
    res = dry_run(snakemake_bin, repo, work, cfg)
    assert res.returncode == 0, res.stdout[-3000:]
    jobs = dict(re.findall(r"^(\w+)\s+(\d+)$", res.stdout, re.M))
    # every method on every feature set it accepts, three seeds
    from configs import merged_config
    from wsvad_core.config import runs

    own = tmp_path / "own_merged.yaml"
    own.write_text(yaml.safe_dump(cfg))
    expected = len(runs(merged_config(own), name))
    assert expected >= len(ds["methods"]) * len(ds["seeds"])
    assert int(jobs.get("train", 0)) == expected, res.stdout[-3000:]
    assert int(jobs.get("extract_shard", 0)) == len(ds["feature_sets"]) * ds["n_shards"]
