rule ground_truth:
    input:
        manifest=MANIFEST,
        store=STORE_MARKER,
        # UCF-Crime: interval file; XD-Violence: annotations.txt; ShanghaiTech: the mask folder
        test_annotation=lambda w: dataset_files(DATASETS[w.dataset])["test_annotation"],
    output:
        GROUND_TRUTH,
    log:
        f"{LOGS}/ground_truth/{{feature_set}}.log",
    conda:
        "../envs/wsvad.yaml"
    params:
        store=store_path,
        clip_len=lambda w: recipe(config, w.dataset, w.feature_set)["clip_len"],
        layout=lambda w: DATASETS[w.dataset]["layout"],
    script:
        "../workflow_scripts/ground_truth.py"
