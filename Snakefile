# wsvad: weakly-supervised video anomaly detection, from raw videos to result tables.
# `snakemake --profile profiles/local` builds the tables of config["run_datasets"].
import os
import time

from snakemake.utils import min_version

min_version("9.0")

_START = time.time()


# Shared recipes and settings, the public benchmarks and the demo; config.yaml (yours) last:
# each file's keys merge into the earlier ones (a dataset added there keeps the shipped ones).
# Paths are the repository's own (Snakemake reads configfile: against the working directory,
# which --directory moves).
configfile: os.path.join(workflow.basedir, "config/feature_sets.yaml")
configfile: os.path.join(workflow.basedir, "config/settings.yaml")
configfile: os.path.join(workflow.basedir, "config/benchmarks.yaml")
configfile: os.path.join(workflow.basedir, "config/demo.yaml")
configfile: os.path.join(workflow.basedir, "config.yaml")


report: "report/workflow.rst"


include: "rules/common.smk"
include: "rules/demo.smk"
include: "rules/manifest.smk"
include: "rules/features.smk"
include: "rules/ground_truth.smk"
include: "rules/dictionary.smk"
include: "rules/train.smk"
include: "rules/evaluate.smk"
include: "rules/tables.smk"
include: "rules/plots.smk"


# Seconds-long CPU steps: on a cluster they run in the submitting process, not as jobs.
localrules:
    manifest,
    finalize_store,
    ground_truth,
    table,
    plot_table,


rule all:
    default_target: True
    input:
        table_targets(),
        plot_targets(),


rule features:
    input:
        [m for d in RUN_DATASETS for m in store_markers_of(d)],


rule train_all:
    input:
        [p for d in RUN_DATASETS for p in run_paths(d, "metrics.json")],


rule tables:
    input:
        table_targets(),


onsuccess:
    # where to look, and how long it took (a no-op re-run says so in a second)
    done = [p for p in table_targets() if p.endswith(".md") and Path(p).exists()]
    if done:
        print(
            f"\nwsvad: done in {time.time() - _START:.0f} s. Tables: {', '.join(done)}; plots under "
            "results/plots/; the browsable report: snakemake --report report.html (with the same options)"
        )
