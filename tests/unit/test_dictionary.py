"""S3R task-specific dictionary: atom-count rule, shapes, OMP sparsity, normal-video matrix."""

import numpy as np
import pandas as pd
import pytest

from wsvad_core.dictionary import OFFICIAL_PERCENTAGE, learn_dictionary, n_atoms_for, normal_training_matrix


def test_n_atoms_rule_official_values():
    # int(np.around(V * R / 100.)): UCF-Crime 800 normal train videos at 50 %, ShanghaiTech 175
    # at 90 % (157.5 rounds half to even -> 158)
    assert OFFICIAL_PERCENTAGE == {"ucf_crime": 50.0, "shanghaitech": 90.0}
    assert n_atoms_for(800, 50) == 400
    assert n_atoms_for(175, 90) == 158
    assert n_atoms_for(10, 50) == 5
    assert n_atoms_for(5, 50) == 2  # np.around(2.5) == 2
    assert n_atoms_for(3, 50) == 2  # np.around(1.5) == 2
    assert n_atoms_for(1, 10) == 1  # never below one atom


@pytest.mark.parametrize("n, pct", [(0, 50), (10, 0), (10, 150)])
def test_n_atoms_rule_rejects_bad_input(n, pct):
    with pytest.raises(ValueError):
        n_atoms_for(n, pct)


@pytest.fixture(scope="module")
def normal_features():
    rng = np.random.default_rng(0)
    return (rng.normal(size=(20, 64)) + 1.0).astype(np.float32)


def test_learn_dictionary_official_layout(normal_features):
    atoms, info = learn_dictionary(normal_features, 10, seed=0)
    assert atoms.shape == (10, 64) and atoms.dtype == np.float32
    assert np.isfinite(atoms).all() and np.abs(atoms).sum() > 0
    # official: the dictionary is the OMP code matrix of features.T, transposed, so every
    # channel (column) uses at most 2 atoms
    assert (np.count_nonzero(atoms, axis=0) <= 2).all()
    assert info["code_nonzeros_max"] <= 2
    for key, value in {"layout": "official", "transform_algorithm": "omp",
                       "transform_n_nonzero_coefs": 2, "n_atoms": 10, "seed": 0,
                       "n_iter_minibatch_steps": 100, "batch_size": 32, "alpha": 1.0,
                       "fit_algorithm": "lars", "n_videos": 20, "dim": 64}.items():
        assert info[key] == value, key
    again, _ = learn_dictionary(normal_features, 10, seed=0)
    np.testing.assert_array_equal(atoms, again)


def test_learn_dictionary_components_layout(normal_features):
    atoms, info = learn_dictionary(normal_features, 5, seed=1, layout="components")
    assert atoms.shape == (5, 64) and atoms.dtype == np.float32
    assert info["layout"] == "components"
    assert info["code_nonzeros_max"] <= 2  # each video coded with <= 2 atoms


def test_learn_dictionary_single_atom_and_errors(normal_features):
    atoms, info = learn_dictionary(normal_features, 1, seed=0)
    assert atoms.shape == (1, 64) and info["transform_n_nonzero_coefs"] == 1
    with pytest.raises(ValueError):
        learn_dictionary(normal_features, 0)
    with pytest.raises(ValueError):
        learn_dictionary(normal_features[0], 2)
    with pytest.raises(ValueError):
        learn_dictionary(normal_features, 2, layout="bogus")


class FakeStore:
    def __init__(self, arrays):
        self.arrays = arrays
        self.video_ids = list(arrays)

    def __getitem__(self, key):
        return self.arrays[key]


def test_normal_training_matrix_uses_normal_train_videos_all_crops():
    ramp = np.arange(64, dtype=np.float16)[None, :, None].repeat(3, axis=2)  # (1, T=64, D=3)
    arrays = {
        "n1": np.concatenate([ramp, ramp + 10]),  # 2 crops: segment means 31.5 and 41.5
        "n2": np.full((2, 5, 3), 2.0, np.float16),
        "a1": np.full((2, 7, 3), 100.0, np.float16),  # abnormal: excluded
        "t1": np.full((2, 7, 3), 200.0, np.float16),  # test: excluded
    }
    manifest = pd.DataFrame({"video_id": ["n1", "a1", "n2", "t1"],
                             "split": ["train", "train", "train", "test"],
                             "label": [0, 1, 0, 0]})
    mat, ids = normal_training_matrix(FakeStore(arrays), manifest, return_ids=True)
    assert ids == ["n1", "n2"]
    assert mat.shape == (2, 3) and mat.dtype == np.float32
    # ramp 0..63 resized to 32 is 0.5, 2.5, ..., 62.5 (mean 31.5); crops averaged
    np.testing.assert_allclose(mat, [[36.5] * 3, [2.0] * 3])


def test_normal_training_matrix_missing_video():
    manifest = pd.DataFrame({"video_id": ["n1", "n2"], "split": ["train", "train"],
                             "label": [0, 0]})
    with pytest.raises(KeyError, match="missing from the feature store"):
        normal_training_matrix(FakeStore({"n1": np.zeros((1, 4, 3))}), manifest)


def test_build_dictionary_from_store(tmp_path):
    """The dictionary rule's entry point on a real (tiny) Zarr store."""
    import json

    from wsvad_core.dictionary import build_dictionary
    from wsvad_core.features.store import finalize_store, write_video_array

    rng = np.random.default_rng(0)
    rows = []
    for i in range(6):
        vid, label = f"v{i}", int(i >= 4)  # 4 normal, 2 abnormal training videos
        write_video_array(tmp_path / "f.zarr", vid, rng.normal(size=(2, 10 + i, 32)),
                          {"n_frames": 160, "fps": 25.0, "label": label, "split": "train"})
        rows.append({"video_id": vid, "path": f"/videos/{vid}.mp4", "split": "train", "label": label,
                     "class": "Abuse" if label else "Normal", "n_frames": 160, "fps": 25.0})
    finalize_store(tmp_path / "f.zarr", {"backbone": "toy"})
    pd.DataFrame(rows).to_csv(tmp_path / "manifest.csv", index=False)
    atoms, info = build_dictionary(tmp_path / "manifest.csv", tmp_path / "f.zarr",
                                   tmp_path / "out" / "d.npy", tmp_path / "out" / "d.json",
                                   percentage=50, seed=0)
    assert atoms.shape == (2, 32)  # around(4 * 50 / 100) = 2
    np.testing.assert_array_equal(np.load(tmp_path / "out" / "d.npy"), atoms)
    saved = json.loads((tmp_path / "out" / "d.json").read_text())
    assert saved["n_atoms"] == 2 and saved["n_videos"] == 4 and saved["percentage"] == 50
    assert saved["store_attrs"]["backbone"] == "toy"


def test_percentage_per_dataset():
    """The shipped benchmarks carry S3R's per-dataset percentage; the dictionary rule's
    settings take a dataset's own value, else the top-level one; the schema checks the key."""
    import copy

    from snakemake.exceptions import WorkflowError
    from snakemake.utils import validate

    from configs import SCHEMA, merged_config
    from wsvad_core.config import dataset_settings

    def dictionary_settings(config, dataset):
        return dataset_settings(config, dataset, "dictionary")

    schema = str(SCHEMA)
    config = merged_config(validate=False)
    config["dictionary"]["percentage"] = 37
    validate(config, schema)
    got = {d: dictionary_settings(config, d)["percentage"] for d in config["datasets"]}
    assert got == {"demo": 37, "ucf_crime": 50, "shanghaitech": 90, "xd_violence": 37}
    assert got["shanghaitech"] == OFFICIAL_PERCENTAGE["shanghaitech"]
    assert dictionary_settings(config, "shanghaitech")["seed"] == config["dictionary"]["seed"]
    with pytest.raises(KeyError, match="no dataset 'shanghai'"):
        dictionary_settings(config, "shanghai")
    for bad_block, message in (({"percentage": 0}, "exclusiveMinimum|less than or equal to"),
                               ({"percent": 90}, "'percent' was unexpected")):
        bad = copy.deepcopy(config)
        bad["datasets"]["shanghaitech"]["dictionary"] = bad_block
        with pytest.raises(WorkflowError, match=message):
            validate(bad, schema)
