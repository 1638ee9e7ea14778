rule evaluate:
    input:
        unpack(train_inputs),
        patches=patch_store_inputs,  # the patch stores the run trained on (rules/common.smk)
        checkpoint=results("{dataset}", "runs", "{method}", "{feature_set}", "seed{seed}", "checkpoint.pt"),
        gt=results("{dataset}", "gt", "{feature_set}.npz"),
    output:
        scores=results("{dataset}", "runs", "{method}", "{feature_set}", "seed{seed}", "scores.npz"),
        metrics=results("{dataset}", "runs", "{method}", "{feature_set}", "seed{seed}", "metrics.json"),
    params:
        recipe=lambda w: recipe(config, w.dataset, w.feature_set),
        evaluation=lambda w: dataset_settings(config, w.dataset, "evaluation"),
        vram_gb=config["gpu"]["vram_gb"],
    threads: 2
    resources:
        gpu=1,
        vram_mb=VRAM_MB,
    log:
        logs("{dataset}", "evaluate", "{method}", "{feature_set}", "seed{seed}.log"),
    conda:
        "../envs/wsvad.yaml"
    script:
        "../workflow_scripts/evaluate.py"
