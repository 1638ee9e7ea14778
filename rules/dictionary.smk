rule dictionary:
    input:
        manifest=MANIFEST,
        store=STORE_MARKER,
    output:
        atoms=DICTIONARY,
        info=DICTIONARY.removesuffix(".npy") + ".json",
    log:
        f"{LOGS}/dictionary/{{feature_set}}.log",
    benchmark:
        f"{BENCHMARKS}/dictionary/{{feature_set}}.tsv"
    conda:
        "../envs/wsvad.yaml"
    params:
        store=store_path,
        settings=lambda w: dataset_settings(config, w.dataset, "dictionary"),
    script:
        "../workflow_scripts/dictionary.py"
