"""`snakemake -n` on the shipped config and on broken ones: every mistake the config checks
catch stops the dry run, naming the key, before any job runs."""
import subprocess
from pathlib import Path

import pytest
import yaml

from tiny_dag import DATASET, make_workdir, smk, smk_cmd


def overlay(tmp_path: Path, config: dict) -> Path:
    """A config file with the keys a test changes (merged on top of the shipped ones)."""
    path = tmp_path / "overlay.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def dry_run(snakemake_bin, repo, tmp_path, *args, configs=()):
    """`snakemake -n` in a fresh working directory; prints the job counts per rule."""
    work = make_workdir(tmp_path / "work")
    return smk(snakemake_bin, repo, work, "-n", "--quiet", "rules", *args, configs=configs)


def test_shipped_config_dry_runs(repo, snakemake_bin, tmp_path):
    res = dry_run(snakemake_bin, repo, tmp_path)
    assert res.returncode == 0, res.stdout[-3000:]
    assert "demo_dataset_demo" in res.stdout


def test_tiny_config_dry_runs(repo, snakemake_bin, tmp_path):
    res = dry_run(snakemake_bin, repo, tmp_path, configs=("tiny",))
    assert res.returncode == 0, res.stdout[-3000:]
    assert f"demo_dataset_{DATASET}" in res.stdout and "demo_dataset_demo " not in res.stdout


def test_typo_in_recipe_value_is_named(repo, snakemake_bin, tmp_path):
    res = dry_run(snakemake_bin, repo, tmp_path,
                  configs=(overlay(tmp_path, {"feature_sets": {"rtfm_i3d_r50": {"crops": "tenn"}}}),))
    assert res.returncode != 0 and "tenn" in res.stdout and "feature_sets.rtfm_i3d_r50.crops" in res.stdout, \
        res.stdout[-3000:]


@pytest.mark.parametrize("value, message", [
    ({"lrr": 1e-4}, "datasets.demo.method_overrides.mgfn: unknown hyper-parameter(s) 'lrr'; valid: "),
    ({"lr": "fast"}, "datasets.demo.method_overrides.mgfn.lr: 'fast' is not valid; expected float > 0"),
    ({"max_steps": -5}, "datasets.demo.method_overrides.mgfn.max_steps: -5 is not valid; expected int >= 1"),
])
def test_misspelt_or_bad_hyper_parameter_fails_the_dry_run(repo, snakemake_bin, tmp_path, value, message):
    """A hyper-parameter typo stops `snakemake -n` (it used to fail inside the train job, after
    extraction), naming the dataset, the method, the key and the valid keys."""
    config = {"datasets": {"demo": {"method_overrides": {"mgfn": value}}}}
    res = dry_run(snakemake_bin, repo, tmp_path, configs=(overlay(tmp_path, config),))
    assert res.returncode != 0 and message in res.stdout, res.stdout[-3000:]
    assert "Traceback" not in res.stdout


ABSENT_FOLDER = ("datasets.shanghaitech.import_features.rtfm_i3d_r50.root: feature folder "
                 "/data/shanghaitech/features/rtfm does not exist")


def test_requesting_a_benchmark_names_the_absent_feature_folder(repo, snakemake_bin):
    # in the repository
    res = subprocess.run([snakemake_bin, "-n", "--quiet", "--snakefile", str(repo / "Snakefile"), "--",
                          "results/tables/shanghaitech.md"], cwd=repo, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True)
    assert res.returncode != 0
    assert ABSENT_FOLDER in res.stdout, res.stdout[-3000:]


def test_requesting_a_benchmark_from_another_directory(repo, snakemake_bin, tmp_path):
    res = dry_run(snakemake_bin, repo, tmp_path, "--", "results/tables/shanghaitech.md")
    assert res.returncode != 0
    assert ABSENT_FOLDER in res.stdout, res.stdout[-3000:]


def test_dry_run_in_another_directory(repo, snakemake_bin, tmp_path):
    """README: run in another folder with --directory (outputs go under its results/). Without
    the links tiny_dag.make_workdir makes, the shipped config must still be read."""
    work = tmp_path / "elsewhere"
    work.mkdir()
    res = subprocess.run(smk_cmd(snakemake_bin, repo, work, "-n", "--quiet", "rules", configs=("tiny",)),
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert res.returncode == 0, res.stdout[-3000:]
    assert f"demo_dataset_{DATASET}" in res.stdout
