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
        timesformer={"file_layout": "rtfm", "root": "/r", "train": "{video}", "test": "{video}"}),
     "datasets.ucf_crime.import_features.timesformer: not one of this dataset's feature_sets"),
    (lambda c: c["datasets"]["ucf_crime"]["import_features"]["clip_vitb16"].update(file_layout="urdmu"),
     "file_layout 'urdmu' holds 'i3d' features, but feature set 'clip_vitb16' is of kind 'clip'"),
    (lambda c: c["datasets"]["xd_violence"]["import_features"].pop("clip_vitb16"),
     r"datasets.xd_violence.feature_sets: \['clip_vitb16'\] would be extracted from videos"),
    (lambda c: c["datasets"]["shanghaitech"]["import_features"]["i3d_r50"].update(test_crops=[12]),
     r"shanghaitech.import_features.i3d_r50.test_crops: \[12\] must be a non-empty subset"),
    (lambda c: c["datasets"]["ucf_crime"]["import_features"]["i3d_r50"].update(layout="rtfm"),
     r"datasets.ucf_crime.import_features.i3d_r50: unknown key\(s\) \['layout'\]"),
])
def test_errors_name_the_key(config, edit, message):
    edit(config)
    with pytest.raises(ConfigError, match=message):
        check_config(config)
