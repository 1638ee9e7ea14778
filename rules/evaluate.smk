# Scores, metrics and the plots of one run (ROC/PR curves, one score timeline per test video
# with the ground truth shaded): one job, since the plots are seconds of work on its outputs.
rule evaluate:
    input:
        unpack(train_inputs),
        patches=patch_store_inputs,  # the patch stores the run trained on (rules/common.smk)
        checkpoint=f"{RUN}/checkpoint.pt",
        gt=GROUND_TRUTH,
    output:
        scores=f"{RUN}/scores.npz",
        metrics=f"{RUN}/metrics.json",
        curves=report(
            f"{PLOTS}/curves.png",
            caption="../report/curves.rst",
            category="Curves",
            subcategory="{dataset}",
            labels=RUN_LABELS,
        ),
        timelines=report(
            directory(f"{PLOTS}/timelines"),
            patterns=["{video}.png"],
            caption="../report/timeline.rst",
            category="Timelines",
            subcategory="{dataset}: {method} on {feature_set}, seed {seed}",
            labels={"video": "{video}", **RUN_LABELS},
        ),
    log:
        f"{LOGS}/evaluate/{{method}}/{{feature_set}}/seed{{seed}}.log",
    conda:
        "../envs/wsvad.yaml"
    threads: CPU_JOB_THREADS
    resources:
        gpu=GPU_PER_JOB,
        vram_mb=VRAM_MB,
    params:
        store=store_path,
        protocol=scoring_protocol,
        evaluation=lambda w: dataset_settings(config, w.dataset, "evaluation"),
        # shown with every plot in the report: how the run was made
        recipe=lambda w: recipe(config, w.dataset, w.feature_set),
        method_overrides=lambda w: method_overrides(config, w.dataset, w.method),
        vram_mb=VRAM_MB,
    script:
        "../workflow_scripts/evaluate.py"
