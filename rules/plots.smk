# Plots for people and for `snakemake --report report.html`: per dataset a bar chart of its
# table and its settings (each run's curves and timelines come with its evaluation,
# rules/evaluate.smk).


rule plot_table:
    input:
        f"{TABLE}.csv",
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
    log:
        f"{LOGS}/plot_table.log",
    conda:
        "../envs/wsvad.yaml"
    params:
        settings=lambda w: {
            "dataset": DATASETS[w.dataset],
            "feature_sets": {fs: recipe(config, w.dataset, fs) for fs in DATASETS[w.dataset]["feature_sets"]},
            "methods": {m: method_overrides(config, w.dataset, m) for m in DATASETS[w.dataset]["methods"]},
            "dictionary": dataset_settings(config, w.dataset, "dictionary"),
            "evaluation": dataset_settings(config, w.dataset, "evaluation"),
        },
    script:
        "../workflow_scripts/plot_table.py"


rule plots:
    input:
        plot_targets(),
