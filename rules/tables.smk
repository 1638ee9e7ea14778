rule table:
    input:
        lambda w: run_paths(w.dataset, "metrics.json"),
    output:
        csv=report(
            f"{TABLE}.csv",
            caption="../report/table.rst",
            category="Tables",
            subcategory="{dataset}",
            labels={"what": "table (csv)"},
        ),
        md=f"{TABLE}.md",
        tex=f"{TABLE}.tex",
    log:
        f"{LOGS}/table.log",
    conda:
        "../envs/wsvad.yaml"
    params:
        # the papers' numbers beside ours, only on the benchmark they were reported on
        benchmark=lambda w: DATASETS[w.dataset].get("benchmark"),
    script:
        "../workflow_scripts/table.py"
