# Plots for people and for `snakemake --report report.html`: per run the ROC/PR curves and one
# score timeline per test video (ground truth shaded), per dataset a bar chart of its table.


rule plot_run:
    input:
        scores=RUN + "/scores.npz",
        metrics=RUN + "/metrics.json",
        gt=GROUND_TRUTH,
        manifest=MANIFEST,
    output:
        curves=report(
            PLOTS + "/curves.png",
            caption="../report/curves.rst",
            category="Curves",
            subcategory="{dataset}",
            labels=RUN_LABELS,
        ),
        timelines=report(
            directory(PLOTS + "/timelines"),
            patterns=["{video}.png"],
            caption="../report/timeline.rst",
            category="Timelines",
            subcategory="{dataset}: {method} on {feature_set}, seed {seed}",
            labels={"video": "{video}", **RUN_LABELS},
        ),
    params:
        # shown with every plot in the report: how the run was made
        recipe=lambda w: recipe(config, w.dataset, w.feature_set),
        method_overrides=lambda w: method_overrides(config, w.dataset, w.method),
        evaluation=lambda w: dataset_settings(config, w.dataset, "evaluation"),
    log:
        LOGS + "/plot_run/{method}/{feature_set}/seed{seed}.log",
    conda:
        "../envs/wsvad.yaml"
    script:
        "../workflow_scripts/plot_run.py"


rule plot_table:
    input:
        TABLE + ".csv",
    output:
        bars=report(
            "results/plots/{dataset}/table.png",
            caption="../report/table_plot.rst",
            category="Tables",
            subcategory="{dataset}",
            labels={"what": "bar chart"},
        ),
        html=report(
            "results/plots/{dataset}/table.html",
            caption="../report/table.rst",
            category="Tables",
            subcategory="{dataset}",
            labels={"what": "table"},
        ),
        settings=report(
            "results/plots/{dataset}/settings.html",
            caption="../report/settings.rst",
            category="Settings",
            subcategory="{dataset}",
            labels={"what": "run settings"},
        ),
    params:
        settings=lambda w: {
            "dataset": DATASETS[w.dataset],
            "feature_sets": {fs: recipe(config, w.dataset, fs) for fs in DATASETS[w.dataset]["feature_sets"]},
            "methods": {m: method_overrides(config, w.dataset, m) for m in DATASETS[w.dataset]["methods"]},
            "dictionary": dataset_settings(config, w.dataset, "dictionary"),
            "evaluation": dataset_settings(config, w.dataset, "evaluation"),
        },
    log:
        LOGS + "/plot_table.log",
    conda:
        "../envs/wsvad.yaml"
    script:
        "../workflow_scripts/plot_table.py"


rule plots:
    input:
        plot_targets(),
