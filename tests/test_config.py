import copy
import subprocess

import pytest
import yaml

from wsvad_core.config import ConfigError, check_config, method_overrides, recipe, runs


@pytest.fixture()
def config(repo):
    return yaml.safe_load((repo / "config.yaml").read_text())


def _dry_run(repo, snakemake_bin, tmp_path, config):
    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump(config))
    res = subprocess.run([snakemake_bin, "-n", "--configfile", str(cfg), "--snakefile",
                          str(repo / "Snakefile"), "--quiet"],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=repo)
    res.stderr = res.stdout  # snakemake prints its errors to either stream
    return res


def test_shipped_config_dry_runs(repo, snakemake_bin, tmp_path, config):
    res = _dry_run(repo, snakemake_bin, tmp_path, config)
    assert res.returncode == 0, res.stderr


def test_typo_in_key_is_named(repo, snakemake_bin, tmp_path, config):
    config["datasets"]["demo"]["n_shard"] = config["datasets"]["demo"].pop("n_shards")
    res = _dry_run(repo, snakemake_bin, tmp_path, config)
    assert res.returncode != 0
    assert "n_shard" in res.stderr and "was unexpected" in res.stderr


def test_typo_in_recipe_value_is_named(repo, snakemake_bin, tmp_path, config):
    config["feature_sets"]["i3d_r50"]["crops"] = "tenn"
    res = _dry_run(repo, snakemake_bin, tmp_path, config)
    assert res.returncode != 0 and "tenn" in res.stderr


def test_unknown_method_and_feature_set(config):
    bad = copy.deepcopy(config)
    bad["datasets"]["demo"]["methods"].append("rtfn")
    with pytest.raises(ConfigError, match="unknown method 'rtfn'"):
        check_config(bad)
    bad = copy.deepcopy(config)
    bad["datasets"]["demo"]["feature_sets"] = ["i3d_r5O"]
    with pytest.raises(ConfigError, match="unknown feature set 'i3d_r5O'"):
        check_config(bad)


def test_overrides_resolve(config):
    r = recipe(config, "demo", "i3d_r50")
    assert r["crop_size"] == 112 and r["crops"] == "center" and r["clip_len"] == 16
    assert r["family"] == "i3d" and r["weights"] is None
    assert config["feature_sets"]["i3d_r50"]["crop_size"] == 224  # the shared recipe is untouched
    assert method_overrides(config, "demo", "rtfm")["max_steps"] == config["datasets"]["demo"]["method_overrides"]["rtfm"]["max_steps"]
    assert "max_steps" not in method_overrides(config, "demo", "rtfm") or config["methods"]["rtfm"] == {}
    assert ("s3r", "clip_vitb16", 0) in runs(config, "demo")


def test_run_feature_sets_restrict_and_are_checked(config):
    demo_runs = runs(config, "demo")
    # restricted: MGFN runs on I3D only, MIL (unrestricted) on both families
    assert [fs for m, fs, _ in demo_runs if m == "mgfn"] == ["i3d_r50"]
    assert {fs for m, fs, _ in demo_runs if m == "mil"} == {"i3d_r50", "clip_vitb16"}
    # no run on a feature family the method rejects (VadCLIP: CLIP only; patches: never a run)
    assert {fs for m, fs, _ in demo_runs if m == "vadclip"} == {"clip_vitb16"}
    assert not any(fs == "i3d_r50_p2x3" for _, fs, _ in demo_runs)
    bad = copy.deepcopy(config)
    bad["datasets"]["demo"]["run_feature_sets"]["vadclip"] = ["i3d_r50"]
    with pytest.raises(ConfigError, match="vadclip does not accept 'i3d_r50'"):
        check_config(bad)
    bad = copy.deepcopy(config)
    bad["datasets"]["demo"]["run_feature_sets"]["mgfn"] = ["i3d_r5O"]
    with pytest.raises(ConfigError, match="'i3d_r5O' is not one of this dataset's feature sets"):
        check_config(bad)
