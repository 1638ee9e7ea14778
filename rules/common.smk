# Config validation, wildcard constraints and every input function. Other .smk files hold rules.
import functools
import sys
from pathlib import Path

from snakemake.utils import validate

sys.path.insert(0, workflow.basedir)  # wsvad_core importable without an install

from wsvad_core.catalog import needs_dictionary
from wsvad_core.config import (check_config, dataset_paths, dataset_settings, method_overrides,
                                recipe, runs)
from wsvad_core.data.benchmarks import benchmark_videos, check_benchmark_config, dataset_files, import_specs
from wsvad_core.data.shards import shard_of


validate(config, "../schemas/config.schema.yaml")
check_config(config)
check_benchmark_config(config)

RESULTS = Path(config["results"])
DATASETS = config["datasets"]
RUN_DATASETS = config.get("run_datasets") or list(DATASETS)
VRAM_MB = int(config["gpu"]["vram_gb"] * 1024)


wildcard_constraints:
    dataset="|".join(DATASETS),
    feature_set="|".join(config["feature_sets"]),
    method="[a-z0-9_]+",
    shard=r"\d+",
    seed=r"\d+",


def results(*parts):
    return RESULTS.joinpath(*map(str, parts))


def logs(*parts):
    return results("logs", *parts)


def manifest_path(dataset):
    return results(dataset, "manifest.csv")


def store_dir(dataset, feature_set):
    return results(dataset, "features", f"{feature_set}.zarr")


def store_marker(dataset, feature_set):
    # The merged store's root metadata: written last, so its presence means the store is complete.
    return store_dir(dataset, feature_set) / "zarr.json"


def run_dir(dataset, method, feature_set, seed):
    return results(dataset, "runs", method, feature_set, f"seed{seed}")


def table_targets():
    return [results("tables", f"{d}.{ext}") for d in RUN_DATASETS for ext in ("csv", "md", "tex")]


def manifest_inputs(wildcards):
    # the dataset's list/annotation files (ShanghaiTech's test_annotation is the mask folder)
    return {k: str(v) for k, v in dataset_files(DATASETS[wildcards.dataset]).items()}


def reads_videos(dataset):
    """Whether any feature set of the dataset is extracted from its videos (else the manifest is
    built from the list files alone and the videos are never opened)."""
    return any(fs not in IMPORTS[dataset] for fs in DATASETS[dataset]["feature_sets"])


# ---- published features (rules/import.smk) ------------------------------------------------
IMPORTS = {d: import_specs(config, d) for d in DATASETS}  # dataset -> feature set -> spec
IMPORT_DATASETS = [d for d in DATASETS if IMPORTS[d]]


def import_spec(dataset, feature_set):
    return IMPORTS[dataset].get(feature_set)


@functools.lru_cache(maxsize=None)
def dataset_videos(dataset):
    """Every video of a dataset (official order) as dicts, read from its list files at
    DAG-build time: import inputs are known without running the manifest checkpoint."""
    ds = DATASETS[dataset]
    return tuple(v.as_row() for v in benchmark_videos(ds["layout"], dataset_files(ds)))


def import_shard_videos(dataset, shard):
    n = DATASETS[dataset].get("n_shards", 1)
    return [v for v in dataset_videos(dataset) if shard_of(v["video_id"], n) == int(shard)]


def import_shard_inputs(wildcards):
    """The published files of one shard's videos. A missing feature root, or missing files,
    fail the DAG (also `snakemake -n`) with the videos named."""
    from wsvad_core.features.importers import missing_feature_files, video_feature_files

    spec = import_spec(wildcards.dataset, wildcards.feature_set)
    where = f"datasets.{wildcards.dataset}.import_features.{wildcards.feature_set}"
    if spec is None:
        raise ValueError(f"{where}: feature set {wildcards.feature_set!r} is not imported")
    if not Path(spec["root"]).is_dir():
        raise FileNotFoundError(f"{where}.root: feature folder {spec['root']} does not exist")
    videos = import_shard_videos(wildcards.dataset, wildcards.shard)
    files = {v["video_id"]: video_feature_files(v, spec) for v in videos}
    missing = missing_feature_files(videos, spec, files)
    if missing:
        listing = "\n".join(f"  {v}: {', '.join(str(p) for p in ps[:3])}{' ...' if len(ps) > 3 else ''}"
                             for v, ps in missing.items())
        raise FileNotFoundError(f"{where}: {len(missing)} videos of import shard {wildcards.shard} "
                                f"have missing feature files (layout {spec['layout']}):\n{listing}")
    lists = {k: str(v) for k, v in dataset_files(DATASETS[wildcards.dataset]).items()}
    # Snakemake tracks one file per video (the first crop's): every crop file of the shard was
    # checked above, and tracking all 19,000 crop files of UCF-Crime makes a dry run 3x slower.
    return {"features": [fs[0] for fs in files.values()], **lists}


def import_shard_markers(wildcards):
    """merge_import's shards; for a feature set that is extracted instead, a path no rule makes,
    so that merge_features (rules/extract.smk) is the store's only producer."""
    if import_spec(wildcards.dataset, wildcards.feature_set) is None:
        return [results(wildcards.dataset, "features", f"{wildcards.feature_set}.extracted-not-imported")]
    n = DATASETS[wildcards.dataset].get("n_shards", 1)
    return [results(wildcards.dataset, "features", f"{wildcards.feature_set}.import", f"{i}.json")
            for i in range(n)]


def shard_videos(wildcards):
    """The video files of one shard, read from the manifest (a checkpoint), so that touching a
    video re-runs its shard only."""
    import pandas as pd
    from wsvad_core.data.shards import shard_of

    manifest = checkpoints.manifest.get(dataset=wildcards.dataset).output[0]
    df = pd.read_csv(manifest)
    n = DATASETS[wildcards.dataset].get("n_shards", 1)
    return sorted(p for v, p in zip(df["video_id"], df["path"]) if shard_of(str(v), n) == int(wildcards.shard))


def shard_markers(wildcards):
    if import_spec(wildcards.dataset, wildcards.feature_set) is not None:
        # imported: merge_import makes this store; a path no rule makes keeps merge_features out
        return [results(wildcards.dataset, "features", f"{wildcards.feature_set}.imported-not-extracted")]
    n = DATASETS[wildcards.dataset].get("n_shards", 1)
    return [results(wildcards.dataset, "features", f"{wildcards.feature_set}.shards", f"{i}.json") for i in range(n)]


def train_inputs(wildcards):
    inputs = {
        "manifest": manifest_path(wildcards.dataset),
        "store": store_marker(wildcards.dataset, wildcards.feature_set),
    }
    if needs_dictionary(wildcards.method):
        inputs["dictionary"] = results(wildcards.dataset, "dictionary", f"{wildcards.feature_set}.npy")
    if "best" in selections(wildcards.dataset):
        # "best on test": training scores the test set every eval_every steps
        inputs["test_gt"] = results(wildcards.dataset, "gt", f"{wildcards.feature_set}.npz")
    return inputs


def selections(dataset):
    sel = dataset_settings(config, dataset, "evaluation")["selection"]
    return [sel] if isinstance(sel, str) else list(sel)


def gt_protocol(dataset, feature_set):
    """How runs are scored against this GT (saved in it): the test crops of the feature
    family's official test code, the metric "best on test" maximises, the snippet length."""
    spec = import_spec(dataset, feature_set)
    return {"test_crops": spec["test_crops"] if spec else None,
            "primary_metric": dataset_settings(config, dataset, "evaluation")["primary_metric"],
            "clip_len": recipe(config, dataset, feature_set)["clip_len"],
            "layout": DATASETS[dataset]["layout"]}


def dataset_runs(wildcards):
    return [run_dir(wildcards.dataset, m, fs, s) / "metrics.json" for m, fs, s in runs(config, wildcards.dataset)]


# Methods that read patch features (catalog.PATCH_METHODS) also get the dataset's patch
# feature sets of their snippet features' family ("<family>_patch"); the method picks its grids.
from wsvad_core.catalog import BACKBONE_FAMILIES, needs_patches


def patch_store_inputs(wildcards):
    if not needs_patches(wildcards.method):
        return []
    fsets = config["feature_sets"]
    family = BACKBONE_FAMILIES[fsets[wildcards.feature_set]["backbone"]] + "_patch"
    sets = [fs for fs in DATASETS[wildcards.dataset]["feature_sets"]
            if BACKBONE_FAMILIES[fsets[fs]["backbone"]] == family]
    if not sets:
        raise ValueError(f"datasets.{wildcards.dataset}.feature_sets: method {wildcards.method} reads "
                         f"patch features of family {family!r} beside {wildcards.feature_set}, but "
                         "the dataset lists none (add e.g. i3d_r50_p2x3 from config.yaml)")
    return [store_marker(wildcards.dataset, fs) for fs in sets]


# Plots (rules/plots.smk)
def plot_dir(dataset, method, feature_set, seed):
    return results("plots", dataset, method, feature_set, f"seed{seed}")


def plot_targets():
    out = [results("plots", d, "table.png") for d in RUN_DATASETS]
    for d in RUN_DATASETS:
        for m, fs, s in runs(config, d):
            out += [plot_dir(d, m, fs, s) / "curves.png", plot_dir(d, m, fs, s) / "timelines"]
    return out


RUN_LABELS = {"method": "{method}", "features": "{feature_set}", "seed": "{seed}"}
