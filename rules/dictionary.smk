rule dictionary:
    input:
        manifest=results("{dataset}", "manifest.csv"),
        store=results("{dataset}", "features", "{feature_set}.zarr", "zarr.json"),
    output:
        atoms=results("{dataset}", "dictionary", "{feature_set}.npy"),
        info=results("{dataset}", "dictionary", "{feature_set}.json"),
    params:
        settings=lambda w: dataset_settings(config, w.dataset, "dictionary"),
    log:
        logs("{dataset}", "dictionary", "{feature_set}.log"),
    benchmark:
        results("benchmarks", "{dataset}", "dictionary", "{feature_set}.tsv")
    conda:
        "../envs/wsvad.yaml"
    script:
        "../workflow_scripts/dictionary.py"
