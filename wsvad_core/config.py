"""Resolve the validated config into the settings each stage uses, and check what the JSON
schema cannot: names that must refer to each other, and every method hyper-parameter against
its method's card (type and range), so that a typo stops ``snakemake -n``."""
from __future__ import annotations

import copy
import os
import re
from pathlib import Path

from wsvad_core.cards import ConfigValueError, backbone_card, cards, check_hparams, method_card
from wsvad_core.recipes import normalize_recipe


class ConfigError(ValueError):
    pass


def validate_config(config: dict, schema: str) -> None:
    """Snakemake's schema validation (it also fills the schema's defaults), with the error cut to
    what says what is wrong: the problem and where (jsonschema's message prints the whole schema
    and the whole offending block, hundreds of lines for a one-key typo)."""
    from snakemake.exceptions import WorkflowError
    from snakemake.utils import validate

    try:
        validate(config, schema)
    except WorkflowError as err:
        text = str(err.args[0]) if err.args else ""
        problem = next((ln.removeprefix("ValidationError: ") for ln in text.splitlines()
                        if ln.startswith("ValidationError:")), None)
        where = next((ln for ln in text.splitlines() if ln.startswith("On instance")), None)
        if problem is None or where is None:
            raise
        keys = re.findall(r"\[(?:'([^']*)'|(\d+))\]", where)
        path = ".".join(a or b for a, b in keys) or "the top level"
        raise ConfigError(f"config {path}: {problem} (checked against {Path(schema).name})") from None


class _UniqueKeyLoader(__import__("yaml").SafeLoader):
    """YAML keeps the last of two equal keys silently; a config file must not have any."""

    def construct_mapping(self, node, deep=False):
        seen = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise ConfigError(f"{self.name}, line {key_node.start_mark.line + 1}: key {key!r} appears "
                                  f"again (first at line {seen[key] + 1}); YAML would keep only the "
                                  "last one. Merge the two blocks into one")
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep)


def check_config_files(paths) -> None:
    """Every config file parses without duplicate keys (pasting a second ``datasets:`` block
    below the first would otherwise drop the first one without a word)."""
    import yaml

    for p in paths:
        with open(p, encoding="utf-8") as fh:
            yaml.load(fh, Loader=_UniqueKeyLoader)


def anchor_annotation_dirs(config: dict, repo_dir: str | os.PathLike) -> None:
    """A relative ``annotation_dir`` is the repository's (``data/benchmarks`` ships the lists),
    whatever folder Snakemake runs in (``--directory``); dataset roots stay the user's."""
    for ds in config["datasets"].values():
        d = ds.get("annotation_dir")
        if d and not os.path.isabs(d):
            ds["annotation_dir"] = os.path.join(os.fspath(repo_dir), d)


def _known(kind: str, name: str, known, where: str) -> None:
    if name not in known:
        raise ConfigError(f"{where}: unknown {kind} {name!r}; known: {sorted(known)}")


def check_config(config: dict) -> None:
    """Cross-references (every dataset's feature sets, methods and overrides must exist) and
    every method hyper-parameter and recipe against the cards."""
    registry = cards()
    fsets = config["feature_sets"]
    for name, fs in fsets.items():
        _known("backbone", fs["backbone"], registry.backbones, f"feature_sets.{name}.backbone")
    for m, values in (config.get("methods") or {}).items():
        _known("method", m, registry.methods, f"methods.{m}")
        _check_hparams(m, values or {}, f"methods.{m}")
    for ds_name, ds in config["datasets"].items():
        where = f"datasets.{ds_name}"
        for fs in ds["feature_sets"]:
            if fs not in fsets:
                raise ConfigError(f"{where}.feature_sets: unknown feature set {fs!r}; "
                                  f"defined under feature_sets: {sorted(fsets)}")
        for m in ds["methods"]:
            _known("method", m, registry.methods, f"{where}.methods")
        # Overrides may name known feature sets and methods the dataset does not list: a
        # config.yaml that narrows a shipped dataset (methods: [mil]) keeps its other entries,
        # which then do nothing. Unknown names are typos.
        for fs in ds.get("feature_overrides", {}):
            _known("feature set", fs, fsets, f"{where}.feature_overrides")
        for fs in ds["feature_sets"]:
            weights = recipe(config, ds_name, fs)["weights"]  # a bad recipe names the set and dataset
            if weights is not None and not Path(weights).is_file():
                key = (f"{where}.feature_overrides.{fs}.weights"
                       if "weights" in ds.get("feature_overrides", {}).get(fs, {}) else f"feature_sets.{fs}.weights")
                raise ConfigError(f"{key}: weights file {weights} does not exist")
        for m in ds.get("method_overrides", {}):
            _known("method", m, registry.methods, f"{where}.method_overrides")
            _check_hparams(m, method_overrides(config, ds_name, m), f"{where}.method_overrides.{m}")
        for m, sets in ds.get("run_feature_sets", {}).items():
            _known("method", m, registry.methods, f"{where}.run_feature_sets")
            for fs in sets:
                _known("feature set", fs, fsets, f"{where}.run_feature_sets.{m}")
            if m not in ds["methods"]:
                continue
            accepts = method_card(m).accepts
            listed = [fs for fs in sets if fs in ds["feature_sets"]]
            if not listed:
                raise ConfigError(f"{where}.run_feature_sets.{m}: none of {sets} is one of this dataset's "
                                  f"feature_sets {ds['feature_sets']}, so method {m} would not run: "
                                  f"list one of them, or drop {m} from {where}.methods")
            for fs in listed:
                kind = feature_kind(config, fs)
                if kind not in accepts:
                    raise ConfigError(f"{where}.run_feature_sets.{m}: method {m} does not accept "
                                      f"{fs!r} ({kind} features); it accepts {accepts}")
        _check_imports(config, ds_name)
    for ds in config.get("run_datasets", []):
        if ds not in config["datasets"]:
            raise ConfigError(f"run_datasets: unknown dataset {ds!r}; known: {sorted(config['datasets'])}")


def check_batch_sizes(config: dict, dataset: str, n_normal: int, n_abnormal: int) -> None:
    """Every step draws ``batch_size`` normal and ``batch_size`` abnormal training videos: a batch
    size above either count cannot be drawn (found from the lists, before any extraction)."""
    ds = config["datasets"][dataset]
    trained = {m for m, _, _ in runs(config, dataset)}
    for m in ds["methods"]:
        if m not in trained:
            continue
        o = method_overrides(config, dataset, m)
        bs = int(o.get("batch_size", method_card(m).hparams["batch_size"].default))
        if bs > min(n_normal, n_abnormal):
            key = (f"datasets.{dataset}.method_overrides.{m}.batch_size" if "batch_size" in o
                   else f"the {m} default batch_size ({bs}; set datasets.{dataset}.method_overrides.{m}.batch_size)")
            raise ConfigError(f"{key}: {bs} videos per class per step, but {dataset} has {n_normal} normal "
                              f"and {n_abnormal} abnormal training videos; use at most {min(n_normal, n_abnormal)}")


def import_specs(config: dict, dataset: str) -> dict[str, dict]:
    """feature set -> normalised import spec of one dataset's listed feature sets ({} when it
    imports nothing)."""
    from wsvad_core.features.importers import normalize_import_spec

    ds = config["datasets"][dataset]
    try:  # a null entry: the feature set is extracted from the videos instead
        return {fs: normalize_import_spec(spec, f"datasets.{dataset}.import_features.{fs}")
                for fs, spec in (ds.get("import_features") or {}).items()
                if spec is not None and fs in ds["feature_sets"]}
    except ValueError as err:
        raise ConfigError(str(err)) from None


def _check_imports(config: dict, name: str) -> None:
    """Published features (``import_features``) and what the dataset layouts support."""
    from wsvad_core.features.importers import IMPORT_LAYOUTS

    ds = config["datasets"][name]
    where = f"datasets.{name}"
    for fs in ds.get("import_features") or {}:  # known but unlisted ones: a narrowed dataset's
        _known("feature set", fs, config["feature_sets"], f"{where}.import_features")
    specs = import_specs(config, name)
    for fs, spec in specs.items():
        layout = IMPORT_LAYOUTS[spec["file_layout"]]
        family = recipe(config, name, fs)["family"]
        if layout["family"] != family:
            raise ConfigError(f"{where}.import_features.{fs}: file_layout {spec['file_layout']!r} holds "
                              f"features of family {layout['family']!r}, but feature set {fs!r} is of "
                              f"family {family!r}; features of two families cannot share a store "
                              "(a model trained on one does not understand the other)")
    if specs and "generate" in ds:
        raise ConfigError(f"{where}: a generated dataset cannot import features")
    for fs, names in (ds.get("test_views") or {}).items():
        _known("feature set", fs, config["feature_sets"], f"{where}.test_views")
        if fs not in ds["feature_sets"]:
            continue
        have = store_views(config, name, fs)
        bad = [v for v in names if v not in have]
        if bad:
            raise ConfigError(f"{where}.test_views.{fs}: {bad} are not views of {fs} (it holds {have})")
    extracted = [fs for fs in ds["feature_sets"] if fs not in specs]
    if ds["layout"] == "shanghaitech" and extracted:
        raise ConfigError(f"{where}.feature_sets: {extracted} would be extracted from videos, but "
                          "ShanghaiTech's test set is distributed as frame folders, which wsvad does "
                          f"not decode: add them to {where}.import_features")
    if ds["layout"] in ("shanghaitech", "xd_violence") and not ds.get("test_list"):
        raise ConfigError(f"{where}.test_list: layout {ds['layout']!r} needs the official "
                          "test list")


def store_views(config: dict, dataset: str, feature_set: str) -> list[str]:
    """The view of each crop index of a dataset's feature store, imported or extracted."""
    from wsvad_core.features.importers import store_views as imported_views

    spec = import_specs(config, dataset).get(feature_set)
    return imported_views(spec) if spec else recipe(config, dataset, feature_set)["views"]


def _check_hparams(method: str, values: dict, where: str) -> None:
    try:
        check_hparams(method_card(method).hparams, values, where)
    except ConfigValueError as err:
        raise ConfigError(str(err)) from None


def feature_kind(config: dict, feature_set: str) -> str:
    """What kind of features a feature set holds: its backbone card's ``kind``, ``<kind>_patch``
    for a grid of patches."""
    fs = config["feature_sets"][feature_set]
    return backbone_card(fs["backbone"]).kind + ("_patch" if fs.get("patch_grid") is not None else "")


def recipe(config: dict, dataset: str, feature_set: str) -> dict:
    """The feature set's recipe with the dataset's overrides applied, completed from its
    backbone's defaults and checked (``wsvad_core/recipes.py``)."""
    r = copy.deepcopy(config["feature_sets"][feature_set])
    r.update(config["datasets"][dataset].get("feature_overrides", {}).get(feature_set, {}))
    r["name"] = feature_set
    try:
        return normalize_recipe(r)
    except ValueError as err:
        raise ConfigError(f"datasets.{dataset}, feature set {feature_set}: {err}") from None


def method_overrides(config: dict, dataset: str, method: str) -> dict:
    """config.methods.<m> overridden by datasets.<d>.method_overrides.<m>."""
    o = dict((config.get("methods") or {}).get(method) or {})
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
    """(method, feature_set, seed) of a dataset whose method accepts the feature set's kind,
    restricted to ``run_feature_sets.<method>`` where the dataset names them."""
    ds = config["datasets"][dataset]
    out = []
    for m in ds["methods"]:
        accepts = method_card(m).accepts
        for fs in ds.get("run_feature_sets", {}).get(m, ds["feature_sets"]):
            if fs in ds["feature_sets"] and feature_kind(config, fs) in accepts:
                out += [(m, fs, s) for s in ds.get("seeds", [0])]
    return out
