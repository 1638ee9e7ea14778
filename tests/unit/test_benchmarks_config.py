"""The shipped benchmark datasets (config/benchmarks.yaml): the checks of ``check_config`` name the
key. The dry run that names an absent feature folder: integration/test_dry_run.py."""
import copy

import pytest

from configs import merged_config
from wsvad_core.config import ConfigError, check_config


@pytest.fixture(scope="module")
def shipped():
    return merged_config()


@pytest.fixture()
def config(shipped):
    return copy.deepcopy(shipped)


def test_shipped_benchmarks_pass_the_checks(config):
    check_config(config)
    assert config["run_datasets"] == ["demo"]  # the benchmarks are built only when asked for
    assert {d: config["datasets"][d].get("benchmark") for d in ("ucf_crime", "shanghaitech", "xd_violence")} == \
        {"ucf_crime": "ucf_crime", "shanghaitech": "shanghaitech", "xd_violence": "xd_violence"}


@pytest.mark.parametrize("edit, message", [
    (lambda c: c["datasets"]["ucf_crime"]["import_features"].update(
        i3d_r5O={"file_layout": "rtfm", "root": "/r", "train": "{video}", "test": "{video}"}),
     "datasets.ucf_crime.import_features: unknown feature set 'i3d_r5O'"),
    # a layout of another family: also where the kind agrees (two I3D networks)
    (lambda c: c["datasets"]["ucf_crime"]["import_features"]["vadclip_vitb16"].update(file_layout="urdmu"),
     "file_layout 'urdmu' holds features of family 'kinetics_i3d', but feature set 'vadclip_vitb16' is of "
     "family 'vadclip_vitb16'"),
    (lambda c: c["datasets"]["ucf_crime"]["import_features"]["deepmil_i3d"].update(file_layout="rtfm"),
     "file_layout 'rtfm' holds features of family 'rtfm_i3d_r50', but feature set 'deepmil_i3d' is of "
     "family 'kinetics_i3d'"),
    (lambda c: c["datasets"]["shanghaitech"]["import_features"].pop("rtfm_i3d_r50"),
     r"datasets.shanghaitech.feature_sets: \['rtfm_i3d_r50'\] would be extracted from videos, but "
     "ShanghaiTech's test set is distributed as frame folders"),
    # which views are scored at test time is the dataset's test_views, not an import key
    (lambda c: c["datasets"]["shanghaitech"]["import_features"]["rtfm_i3d_r50"].update(test_crops=[4]),
     r"datasets.shanghaitech.import_features.rtfm_i3d_r50: unknown key\(s\) \['test_crops'\]"),
    (lambda c: c["datasets"]["shanghaitech"].update(test_views={"rtfm_i3d_r50": ["center", "cell_0_0"]}),
     r"datasets.shanghaitech.test_views.rtfm_i3d_r50: \['cell_0_0'\] are not views of rtfm_i3d_r50"),
    # XD-Violence's CLIP store holds file crop __0 only: the centre
    (lambda c: c["datasets"]["xd_violence"]["test_views"].update(vadclip_vitb16=["flip_center"]),
     r"datasets.xd_violence.test_views.vadclip_vitb16: \['flip_center'\] are not views of vadclip_vitb16 "
     r"\(it holds \['center'\]\)"),
    (lambda c: c["datasets"]["ucf_crime"]["import_features"]["rtfm_i3d_r50"].update(layout="rtfm"),
     r"datasets.ucf_crime.import_features.rtfm_i3d_r50: unknown key\(s\) \['layout'\]"),
])
def test_errors_name_the_key(config, edit, message):
    edit(config)
    with pytest.raises(ConfigError, match=message):
        check_config(config)


def test_null_import_means_extract_and_xd_violence_may_be_extracted(config):
    """``import_features: {fs: null}`` extracts the feature set from the videos with its recipe;
    the store's views are then the recipe's. XD-Violence's videos decode, so its feature sets may
    be extracted (ShanghaiTech's test set cannot: see above)."""
    from wsvad_core.config import import_specs, store_views

    assert store_views(config, "ucf_crime", "vadclip_vitb16") == [
        "center", "tl", "tr", "bl", "br", "flip_center", "flip_tl", "flip_tr", "flip_bl", "flip_br"]
    config["datasets"]["ucf_crime"]["import_features"]["rtfm_i3d_r50"] = None
    config["datasets"]["xd_violence"]["import_features"].pop("vadclip_vitb16")
    check_config(config)
    assert "rtfm_i3d_r50" not in import_specs(config, "ucf_crime")
    assert "vadclip_vitb16" not in import_specs(config, "xd_violence")
    # extracted: the recipe's views (rtfm_i3d_r50: TenCrop's order, as RTFM's published files)
    from wsvad_core.features.importers import IMPORT_LAYOUTS

    assert store_views(config, "ucf_crime", "rtfm_i3d_r50") == IMPORT_LAYOUTS["rtfm"]["views"]
    # an extracted XD-Violence CLIP store holds all ten views, so test_views [center] still resolves
    assert "center" in store_views(config, "xd_violence", "vadclip_vitb16")
