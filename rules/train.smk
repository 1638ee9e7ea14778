rule train:
    input:
        unpack(train_inputs),
        patches=patch_store_inputs,
    output:
        checkpoint=f"{RUN}/checkpoint.pt",
        log_csv=f"{RUN}/train_log.csv",
    log:
        f"{LOGS}/train/{{method}}/{{feature_set}}/seed{{seed}}.log",
    benchmark:
        f"{BENCHMARKS}/train/{{method}}/{{feature_set}}/seed{{seed}}.tsv"
    conda:
        "../envs/wsvad.yaml"
    threads: CPU_JOB_THREADS
    resources:
        gpu=GPU_PER_JOB,
        vram_mb=VRAM_MB,
    params:
        store=store_path,
        patch_stores=patch_store_dirs,
        overrides=lambda w: method_overrides(config, w.dataset, w.method),
        # a change to the method's code that changes results bumps this: its runs are redone
        version=lambda w: method_card(w.method).version,
        protocol=scoring_protocol,
        vram_mb=VRAM_MB,
    script:
        "../workflow_scripts/train.py"
