"""Config resolution and the checks of ``check_config`` on the shipped config (the Snakefile's
config files merged): recipes filled from the backbone cards, overrides, runs per method, and
every method hyper-parameter checked against its card, naming the key. The same checks through
``snakemake -n``: integration/test_dry_run.py; the schema and name errors of docs/errors.md:
test_bad_inputs.py."""
import copy

import pytest

from configs import merged_config
from wsvad_core.cards import backbone_card
from wsvad_core.config import ConfigError, check_batch_sizes, check_config, method_overrides, recipe, runs


@pytest.fixture(scope="module")
def shipped():
    return merged_config()


@pytest.fixture()
def config(shipped):
    return copy.deepcopy(shipped)


def test_shipped_config_passes(config):
    check_config(config)
    assert config["run_datasets"] == ["demo"]


def test_overrides_resolve(config):
    r = recipe(config, "demo", "rtfm_i3d_r50")
    assert r["resize"] == 72 and r["crop_size"] == 64 and r["crops"] == "center" and r["clip_len"] == 16
    assert r["interpolation"] == "bilinear" and r["views"] == ["center"]  # demo overrides
    assert (r["kind"], r["family"], r["backbone"]) == ("i3d", "rtfm_i3d_r50", "i3res50") and r["weights"] is None
    # the shared recipe names only what differs from the backbone; the rest comes from its card
    assert "crop_size" not in config["feature_sets"]["rtfm_i3d_r50"]
    ucf = recipe(config, "ucf_crime", "rtfm_i3d_r50")
    assert ucf["crop_size"] == 224 == backbone_card("i3res50").defaults["crop_size"]
    # feature_sets.rtfm_i3d_r50: the published recipe (340x256 PIL Lanczos, ten crops in TenCrop's order)
    assert ucf["resize"] == [340, 256] and ucf["interpolation"] == "pil_lanczos" and ucf["t_rule"] == "ceil_loop"
    assert ucf["views"] == ["tl", "tr", "bl", "br", "center", "flip_tr", "flip_tl", "flip_br", "flip_bl",
                            "flip_center"]
    demo = config["datasets"]["demo"]["method_overrides"]["rtfm"]
    assert method_overrides(config, "demo", "rtfm") == demo
    # the top-level methods block applies to every dataset; a dataset's own overrides win
    config["methods"] = {"rtfm": {"max_steps": 7, "lr": 0.01}}
    assert method_overrides(config, "demo", "rtfm") == {**demo, "lr": 0.01}
    assert method_overrides(config, "ucf_crime", "rtfm") == {"max_steps": 7, "lr": 0.01}
    assert ("s3r", "vadclip_vitb16", 0) in runs(config, "demo")


def test_shipped_feature_sets_resolve_to_their_families(config):
    """Every preset of config/feature_sets.yaml is a valid recipe of the family its backbone
    reproduces (the feature-set renames of issue 11)."""
    from wsvad_core.config import feature_kind

    want = {"rtfm_i3d_r50": ("i3res50", "rtfm_i3d_r50"), "gowtham_i3d_r50": ("i3res50", "rtfm_i3d_r50"),
            "urdmu_i3d": ("i3d_inception_i3dpt", "kinetics_i3d"),
            "deepmil_i3d": ("i3d_inception_piergiaj", "kinetics_i3d"),
            "xd_i3d": ("i3d_inception_piergiaj", "kinetics_i3d"),
            "vadclip_vitb16": ("openai_clip_vitb16", "vadclip_vitb16"),
            "vadclip_vitb16_frames": ("openai_clip_vitb16", "vadclip_vitb16"),
            "pytorchvideo_i3d_r50": ("pytorchvideo_i3d_r50", "pytorchvideo_i3d_r50"),
            "openclip_vitb16": ("openclip_vitb16", "openclip_vitb16"),
            "timesformer": ("timesformer", "timesformer")}
    for fs, (backbone, family) in want.items():
        r = recipe(config, "ucf_crime", fs)
        assert (r["backbone"], r["family"]) == (backbone, family), fs
        assert feature_kind(config, fs) == r["kind"]
    assert recipe(config, "ucf_crime", "xd_i3d")["views"] == ["center", "tl", "tr", "bl", "br"]
    assert recipe(config, "ucf_crime", "vadclip_vitb16_frames")["clip_len"] == 1
    for old in ("i3d_r50", "clip_vitb16", "i3d_kinetics", "i3d_r50_p2x3"):
        assert old not in config["feature_sets"]


def test_run_feature_sets_restrict_and_are_checked(config):
    demo_runs = runs(config, "demo")
    # restricted: MGFN runs on I3D only, MIL (restricted to two) on both families
    assert [fs for m, fs, _ in demo_runs if m == "mgfn"] == ["rtfm_i3d_r50"]
    assert {fs for m, fs, _ in demo_runs if m == "mil"} == {"rtfm_i3d_r50", "vadclip_vitb16"}
    # no run on a feature family the method rejects (VadCLIP: CLIP only; patches: never a run)
    assert {fs for m, fs, _ in demo_runs if m == "vadclip"} == {"vadclip_vitb16"}
    assert not any(fs == "urdmu_i3d_p2x3" for _, fs, _ in demo_runs)
    bad = copy.deepcopy(config)
    bad["datasets"]["demo"]["run_feature_sets"]["vadclip"] = ["rtfm_i3d_r50"]
    with pytest.raises(ConfigError, match="vadclip does not accept 'rtfm_i3d_r50'"):
        check_config(bad)
    bad = copy.deepcopy(config)
    bad["datasets"]["demo"]["run_feature_sets"]["mgfn"] = ["i3d_r5O"]
    # a misspelt feature set names the key and the name
    with pytest.raises(ConfigError, match=r"datasets\.demo\.run_feature_sets\.mgfn: .*'i3d_r5O'"):
        check_config(bad)


@pytest.mark.parametrize("where, value, message", [
    # a misspelt key names the dataset, method, key and the valid keys
    ("datasets.demo.method_overrides.mgfn", {"lrr": 1e-4},
     r"datasets\.demo\.method_overrides\.mgfn: unknown hyper-parameter\(s\) 'lrr'; valid: .*\blr\b"),
    # a wrong type and an out-of-range value name the full key and what is allowed
    ("datasets.demo.method_overrides.mgfn", {"lr": "fast"},
     r"datasets\.demo\.method_overrides\.mgfn\.lr: 'fast' is not valid; expected float > 0"),
    ("datasets.demo.method_overrides.rtfm", {"max_steps": 1.5},
     r"datasets\.demo\.method_overrides\.rtfm\.max_steps: 1\.5 is not valid; expected int >= 1"),
    ("datasets.demo.method_overrides.rtfm", {"dropout": 1.0},
     r"datasets\.demo\.method_overrides\.rtfm\.dropout: 1\.0 is not valid; expected float >= 0 and < 1"),
    ("datasets.demo.method_overrides.mil", {"optimizer": "lbfgs"},
     r"datasets\.demo\.method_overrides\.mil\.optimizer: 'lbfgs' is not valid; expected str one of 'adam'"),
    ("datasets.demo.method_overrides.bnwvad", {"ratios": [16]},
     r"datasets\.demo\.method_overrides\.bnwvad\.ratios: \[16\] is not valid.*expected list of int \(length 2\)"),
    # the top-level block is checked too
    ("methods.rtfm", {"topk": 0}, r"methods\.rtfm\.topk: 0 is not valid; expected int >= 1 or null"),
    ("methods.nope", {}, r"methods\.nope: unknown method 'nope'"),
])
def test_hyper_parameters_are_checked_against_the_cards(config, where, value, message):
    *parents, last = where.split(".")
    block = config
    for key in parents:
        block = block.setdefault(key, {})
    block[last] = {**(block.get(last) or {}), **value}
    with pytest.raises(ConfigError, match=message):
        check_config(config)


def test_yaml_spellings_of_numbers_pass(config):
    # YAML reads 1e-4 as a string and 2 where a float is meant: both are what the user meant
    config["datasets"]["demo"]["method_overrides"]["mgfn"].update(lr="1e-4", margin=200)
    check_config(config)


def test_batch_size_above_the_training_videos_is_named(config):
    with pytest.raises(ConfigError, match=r"datasets\.demo\.method_overrides\.mil\.batch_size: 8 videos per class "
                                          r"per step, but demo has 10 normal and 3 abnormal"):
        check_batch_sizes(config, "demo", 10, 3)
    with pytest.raises(ConfigError, match=r"the mil default batch_size \(30; set "
                                          r"datasets\.ucf_crime\.method_overrides\.mil\.batch_size\)"):
        check_batch_sizes(config, "ucf_crime", 20, 20)
    check_batch_sizes(config, "demo", 10, 10)
