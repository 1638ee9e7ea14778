rule evaluate:
    input:
        unpack(train_inputs),
        patches=patch_store_inputs,  # the patch stores the run trained on (rules/common.smk)
        checkpoint=RUN + "/checkpoint.pt",
        gt=GROUND_TRUTH,
    output:
        scores=RUN + "/scores.npz",
        metrics=RUN + "/metrics.json",
    params:
        store=store_path,
        protocol=scoring_protocol,
        evaluation=lambda w: dataset_settings(config, w.dataset, "evaluation"),
        vram_mb=VRAM_MB,
    threads: 2
    resources:
        gpu=1,
        vram_mb=VRAM_MB,
    log:
        LOGS + "/evaluate/{method}/{feature_set}/seed{seed}.log",
    conda:
        "../envs/wsvad.yaml"
    script:
        "../workflow_scripts/evaluate.py"
