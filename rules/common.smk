# Config validation, path patterns, wildcard constraints and every input function. Other .smk
# files hold rules only.
import functools
from pathlib import Path

from wsvad_core.cards import method_card
from wsvad_core.config import (
    anchor_annotation_dirs,
    check_batch_sizes,
    check_config,
    check_config_files,
    dataset_settings,
    import_specs,
    method_overrides,
    recipe,
    runs,
    validate_config,
)
from wsvad_core.data.benchmarks import benchmark_videos, dataset_files
from wsvad_core.gpu_slots import gpus_on_this_machine
from wsvad_core.shards import shard_of

check_config_files(workflow.configfiles)
validate_config(config, str(Path(workflow.basedir) / "schemas" / "config.schema.yaml"))
anchor_annotation_dirs(config, workflow.basedir)
check_config(config)

DATASETS = config["datasets"]
RUN_DATASETS = config.get("run_datasets") or list(DATASETS)
# every GPU job fits on one 6 GB card: it declares this budget and caps its allocator to it
VRAM_MB = 6144
# A GPU job holds one `gpu` token (the profile's `resources: gpu=N` = cards) where this machine has
# cards; on a CPU-only machine it takes none, so CPU jobs share the cores instead of queueing on a
# token that stands for nothing, and trainings run one thread each, side by side. A cluster
# profile (profiles/slurm) sets gpu=1 per job itself: the submitting host need not have a card.
GPU_PER_JOB = 1 if gpus_on_this_machine() else 0
CPU_JOB_THREADS = 2 if GPU_PER_JOB else 1

# ---- where everything is: one pattern per output (rules and input functions use these)
MANIFEST = "results/{dataset}/manifest.csv"
STORE = "results/{dataset}/features/{feature_set}.zarr"
STORE_MARKER = f"{STORE}/zarr.json"  # the store's root metadata, written last: the store is complete
EXTRACT_SHARD = "results/{dataset}/features/{feature_set}.shards/{shard}.json"
IMPORT_SHARD = "results/{dataset}/features/{feature_set}.import/{shard}.json"
WEIGHTS_CHECK = "results/{dataset}/features/{feature_set}.weights.json"
GROUND_TRUTH = "results/{dataset}/gt/{feature_set}.npz"
DICTIONARY = "results/{dataset}/dictionary/{feature_set}.npy"
RUN = "results/{dataset}/runs/{method}/{feature_set}/seed{seed}"
PLOTS = "results/plots/{dataset}/{method}/{feature_set}/seed{seed}"
TABLE = "results/tables/{dataset}"
LOGS = "results/logs/{dataset}"
BENCHMARKS = "results/benchmarks/{dataset}"


wildcard_constraints:
    dataset="|".join(DATASETS),
    feature_set="|".join(config["feature_sets"]),
    method="[a-z0-9_]+",
    shard=r"\d+",
    seed=r"\d+",


def run_paths(dataset, name):
    """``name`` (e.g. "metrics.json") in the folder of every run of a dataset."""
    return [
        f"{RUN.format(dataset=dataset, method=m, feature_set=fs, seed=s)}/{name}" for m, fs, s in runs(config, dataset)
    ]


def table_targets():
    return [TABLE.format(dataset=d) + ext for d in RUN_DATASETS for ext in (".csv", ".md", ".tex")]


def plot_targets():
    out = [f"results/plots/{d}/table.png" for d in RUN_DATASETS]
    for d in RUN_DATASETS:
        for m, fs, s in runs(config, d):
            plots = PLOTS.format(dataset=d, method=m, feature_set=fs, seed=s)
            out += [f"{plots}/curves.png", f"{plots}/timelines"]
    return out


def store_markers_of(dataset):
    return [STORE_MARKER.format(dataset=dataset, feature_set=fs) for fs in DATASETS[dataset]["feature_sets"]]


def n_shards(dataset):
    return DATASETS[dataset].get("n_shards", 1)


def store_path(wildcards):
    return STORE.format(dataset=wildcards.dataset, feature_set=wildcards.feature_set)


# ---- the manifest
def manifest_inputs(wildcards):
    # the dataset's list/annotation files (ShanghaiTech's test_annotation is the mask folder)
    return {k: str(v) for k, v in dataset_files(DATASETS[wildcards.dataset]).items()}


def extracted_sets(dataset):
    return [fs for fs in DATASETS[dataset]["feature_sets"] if fs not in IMPORTS[dataset]]


def reads_videos(dataset):
    """Whether any feature set of the dataset is extracted from its videos (else the manifest is
    built from the list files alone and the videos are never opened)."""
    return bool(extracted_sets(dataset))


# ---- features: each store is made by extraction or by import, per config; one rule finalises it
IMPORTS = {d: import_specs(config, d) for d in DATASETS}  # dataset -> feature set -> spec


def import_spec(dataset, feature_set):
    return IMPORTS[dataset].get(feature_set)


@functools.lru_cache(maxsize=None)
def dataset_videos(dataset):
    """Every video of a dataset (official order) as dicts, read from its list files at
    DAG-build time: import inputs are known without running the manifest checkpoint."""
    ds = DATASETS[dataset]
    return tuple(v.as_row() for v in benchmark_videos(ds["layout"], dataset_files(ds)))


def import_shard_videos(dataset, shard):
    n = n_shards(dataset)
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
        listing = "\n".join(
            f"  {v}: {', '.join(str(p) for p in ps[:3])}{' ...' if len(ps) > 3 else ''}" for v, ps in missing.items()
        )
        raise FileNotFoundError(
            f"{where}: {len(missing)} videos of import shard {wildcards.shard} "
            f"have missing feature files (file_layout {spec['file_layout']}):\n{listing}"
        )
    # Snakemake tracks one file per video (the first crop's): every crop file of the shard was
    # checked above, and tracking all 19,000 crop files of UCF-Crime makes a dry run 3x slower.
    return [fs[0] for fs in files.values()]


def manifest_of_shard(wildcards):
    """The rows of one extraction shard's videos, read from the manifest (a checkpoint)."""
    from wsvad_core.data.manifest import read_manifest

    df = read_manifest(checkpoints.manifest.get(dataset=wildcards.dataset).output[0])
    n = n_shards(wildcards.dataset)
    return df[[shard_of(v, n) == int(wildcards.shard) for v in df["video_id"]]]


def extract_shard_inputs(wildcards):
    """The video files of one shard (touching a video re-runs its shard only) and, when the
    feature set names a weights file, the check that it fits the backbone."""
    inputs = {"videos": sorted(manifest_of_shard(wildcards)["path"])}
    if recipe(config, wildcards.dataset, wildcards.feature_set)["weights"] is not None:
        inputs["weights_check"] = WEIGHTS_CHECK.format(dataset=wildcards.dataset, feature_set=wildcards.feature_set)
    return inputs


def weights_key(wildcards):
    """The config key that names a feature set's weights file (for error messages)."""
    if "weights" in DATASETS[wildcards.dataset].get("feature_overrides", {}).get(wildcards.feature_set, {}):
        return f"datasets.{wildcards.dataset}.feature_overrides.{wildcards.feature_set}.weights"
    return f"feature_sets.{wildcards.feature_set}.weights"


def shard_video_ids(wildcards):
    return list(manifest_of_shard(wildcards)["video_id"])


def store_shard_markers(wildcards):
    """The shard markers a store is finalised from: its import shards when the dataset imports
    this feature set (datasets.<d>.import_features), else its extraction shards."""
    pattern = IMPORT_SHARD if import_spec(wildcards.dataset, wildcards.feature_set) else EXTRACT_SHARD
    return [
        pattern.format(dataset=wildcards.dataset, feature_set=wildcards.feature_set, shard=i)
        for i in range(n_shards(wildcards.dataset))
    ]


# ---- training and evaluation
def training_class_counts(dataset):
    """(normal, abnormal) training videos, from the list files (read at DAG time) or, for a
    generated dataset whose lists a rule writes, from its manifest (a checkpoint)."""
    if lists_exist(dataset):
        videos = dataset_videos(dataset)
    else:
        from wsvad_core.data.manifest import read_manifest

        videos = read_manifest(checkpoints.manifest.get(dataset=dataset).output[0]).to_dict("records")
    labels = [int(v["label"]) for v in videos if v["split"] == "train"]
    return labels.count(0), labels.count(1)


def lists_exist(dataset):
    return all(Path(f).exists() for f in dataset_files(DATASETS[dataset]).values())


# Checked here, at DAG-build time, wherever the lists exist: an error raised inside an input
# function is not always reported (Snakemake may fall back on an existing output instead).
for _d in DATASETS:
    if lists_exist(_d):
        check_batch_sizes(config, _d, *training_class_counts(_d))


def train_inputs(wildcards):
    if not lists_exist(wildcards.dataset):  # a generated dataset: known once its manifest is
        check_batch_sizes(config, wildcards.dataset, *training_class_counts(wildcards.dataset))
    inputs = {
        "manifest": MANIFEST.format(dataset=wildcards.dataset),
        "store": STORE_MARKER.format(dataset=wildcards.dataset, feature_set=wildcards.feature_set),
    }
    if method_card(wildcards.method).needs_dictionary:
        inputs["dictionary"] = DICTIONARY.format(dataset=wildcards.dataset, feature_set=wildcards.feature_set)
    if "best" in selections(wildcards.dataset):
        # "best on test": training scores the test set every eval_every steps
        inputs["test_gt"] = GROUND_TRUTH.format(dataset=wildcards.dataset, feature_set=wildcards.feature_set)
    return inputs


def selections(dataset):
    sel = dataset_settings(config, dataset, "evaluation")["selection"]
    return [sel] if isinstance(sel, str) else list(sel)


def scoring_protocol(wildcards):
    """How a run is scored against the GT: the views the family's official test code scores
    (datasets.<d>.test_views; default all, crop-averaged), the metric "best on test" maximises,
    the snippet length."""
    return {
        "test_views": DATASETS[wildcards.dataset].get("test_views", {}).get(wildcards.feature_set),
        "primary_metric": dataset_settings(config, wildcards.dataset, "evaluation")["primary_metric"],
        "clip_len": recipe(config, wildcards.dataset, wildcards.feature_set)["clip_len"],
    }


def patch_store_inputs(wildcards):
    """Methods that read patch features get the dataset's patch feature sets of their snippet
    features' kind ("<kind>_patch") beside their snippet store; the method picks its grids."""
    from wsvad_core.config import feature_kind

    if not method_card(wildcards.method).reads_patches:
        return []
    kind = feature_kind(config, wildcards.feature_set) + "_patch"
    sets = [fs for fs in DATASETS[wildcards.dataset]["feature_sets"] if feature_kind(config, fs) == kind]
    if not sets:
        raise ValueError(
            f"datasets.{wildcards.dataset}.feature_sets: method {wildcards.method} reads "
            f"patch features of kind {kind!r} beside {wildcards.feature_set}, but "
            "the dataset lists none (add e.g. rtfm_i3d_r50_p2x3 from config/feature_sets.yaml)"
        )
    return [STORE_MARKER.format(dataset=wildcards.dataset, feature_set=fs) for fs in sets]


def patch_store_dirs(wildcards):
    return [str(Path(p).parent) for p in patch_store_inputs(wildcards)]


RUN_LABELS = {"method": "{method}", "features": "{feature_set}", "seed": "{seed}"}
