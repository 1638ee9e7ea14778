"""Resolve the validated config.yaml into the settings each stage uses, and check what the JSON
schema cannot (names that must refer to each other)."""
from __future__ import annotations

import copy
from pathlib import Path

from wsvad_core.catalog import BACKBONE_FAMILIES, METHODS


class ConfigError(ValueError):
    pass


def check_config(config: dict) -> None:
    """Cross-references: every dataset's feature sets, methods and overrides must exist."""
    fsets, methods = config["feature_sets"], config["methods"]
    for name, fs in fsets.items():
        if fs["backbone"] not in BACKBONE_FAMILIES:
            raise ConfigError(f"feature_sets.{name}.backbone: unknown backbone {fs['backbone']!r}; "
                              f"known: {sorted(BACKBONE_FAMILIES)}")
    for m in methods:
        if m not in METHODS:
            raise ConfigError(f"methods.{m}: unknown method {m!r}; known: {sorted(METHODS)}")
    for ds_name, ds in config["datasets"].items():
        where = f"datasets.{ds_name}"
        for fs in ds["feature_sets"]:
            if fs not in fsets:
                raise ConfigError(f"{where}.feature_sets: unknown feature set {fs!r}; "
                                  f"defined under feature_sets: {sorted(fsets)}")
        for m in ds["methods"]:
            if m not in METHODS:
                raise ConfigError(f"{where}.methods: unknown method {m!r}; known: {sorted(METHODS)}")
        for fs in ds.get("feature_overrides", {}):
            if fs not in ds["feature_sets"]:
                raise ConfigError(f"{where}.feature_overrides.{fs}: not one of this dataset's feature sets")
        for m in ds.get("method_overrides", {}):
            if m not in ds["methods"]:
                raise ConfigError(f"{where}.method_overrides.{m}: not one of this dataset's methods")
        for m, sets in ds.get("run_feature_sets", {}).items():
            if m not in ds["methods"]:
                raise ConfigError(f"{where}.run_feature_sets.{m}: not one of this dataset's methods")
            for fs in sets:
                if fs not in ds["feature_sets"]:
                    raise ConfigError(f"{where}.run_feature_sets.{m}: {fs!r} is not one of this "
                                      f"dataset's feature sets {ds['feature_sets']}")
                family = BACKBONE_FAMILIES[fsets[fs]["backbone"]]
                if family not in METHODS[m][0]:
                    raise ConfigError(f"{where}.run_feature_sets.{m}: method {m} does not accept "
                                      f"{fs!r} ({family} features); it accepts {METHODS[m][0]}")
    for ds in config.get("run_datasets", []):
        if ds not in config["datasets"]:
            raise ConfigError(f"run_datasets: unknown dataset {ds!r}; known: {sorted(config['datasets'])}")


def recipe(config: dict, dataset: str, feature_set: str) -> dict:
    """The feature set's recipe with the dataset's overrides applied."""
    r = copy.deepcopy(config["feature_sets"][feature_set])
    r.update(config["datasets"][dataset].get("feature_overrides", {}).get(feature_set, {}))
    r["name"] = feature_set
    r["family"] = BACKBONE_FAMILIES[r["backbone"]]
    r.setdefault("weights", None)
    r.setdefault("init_seed", 0)
    r.setdefault("batch_size", 8)
    return r


def method_overrides(config: dict, dataset: str, method: str) -> dict:
    """config.methods.<m> overridden by datasets.<d>.method_overrides.<m>."""
    o = dict(config["methods"].get(method) or {})
    o.update(config["datasets"][dataset].get("method_overrides", {}).get(method, {}))
    return o


def dataset_settings(config: dict, dataset: str, key: str) -> dict:
    """A top-level settings block (``evaluation``, ``dictionary``) overridden by the dataset's
    own block of that name (e.g. S3R's dictionary percentage: 50 UCF-Crime, 90 ShanghaiTech)."""
    if dataset not in config["datasets"]:
        raise KeyError(f"config: no dataset {dataset!r} under 'datasets'")
    return {**(config.get(key) or {}), **(config["datasets"][dataset].get(key) or {})}


def dataset_paths(config: dict, dataset: str) -> dict[str, Path]:
    ds = config["datasets"][dataset]
    root = Path(ds["root"])
    return {"root": root, "train_list": root / ds["train_list"],
            "test_annotation": root / ds["test_annotation"]}


def runs(config: dict, dataset: str) -> list[tuple[str, str, int]]:
    """(method, feature_set, seed) of a dataset whose method accepts the feature set's family,
    restricted to ``run_feature_sets.<method>`` where the dataset names them."""
    ds = config["datasets"][dataset]
    out = []
    for m in ds["methods"]:
        families = METHODS[m][0]
        for fs in ds.get("run_feature_sets", {}).get(m, ds["feature_sets"]):
            if BACKBONE_FAMILIES[config["feature_sets"][fs]["backbone"]] in families:
                out += [(m, fs, s) for s in ds.get("seeds", [0])]
    return out
