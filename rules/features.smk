# Features: one job per shard of videos writes its own arrays into the store, either extracted
# from the videos or imported from published .npy files (datasets.<d>.import_features); one
# finalize job per store writes its root metadata last. Videos go to shards by a stable hash
# of their id.
rule extract_shard:
    input:
        unpack(extract_shard_inputs),
    output:
        EXTRACT_SHARD,
    log:
        f"{LOGS}/extract/{{feature_set}}/{{shard}}.log",
    benchmark:
        f"{BENCHMARKS}/extract/{{feature_set}}/{{shard}}.tsv"
    # every training waits for a whole store: features first, so the long trainings do not
    # start last and run alone at the end
    priority: 1
    conda:
        "../envs/wsvad.yaml"
    # one thread each on a CPU-only machine: two extractions side by side beat one at two
    # threads (decoding runs in its own thread beside the forward)
    threads: CPU_JOB_THREADS
    resources:
        gpu=GPU_PER_JOB,
        vram_mb=VRAM_MB,
    params:
        manifest=lambda w: manifest_of_shard(w).to_dict("records"),
        recipe=lambda w: recipe(config, w.dataset, w.feature_set),
        store=store_path,
        vram_mb=VRAM_MB,
    script:
        "../workflow_scripts/extract.py"


rule import_shard:
    input:
        features=import_shard_inputs,
    output:
        IMPORT_SHARD,
    log:
        f"{LOGS}/import/{{feature_set}}/{{shard}}.log",
    benchmark:
        f"{BENCHMARKS}/import/{{feature_set}}/{{shard}}.tsv"
    conda:
        "../envs/wsvad.yaml"
    threads: 1
    params:
        videos=lambda w: import_shard_videos(w.dataset, w.shard),
        spec=lambda w: import_spec(w.dataset, w.feature_set),
        recipe=lambda w: recipe(config, w.dataset, w.feature_set),
        store=store_path,
    script:
        "../workflow_scripts/import_features.py"


rule finalize_store:
    input:
        shards=store_shard_markers,
    output:
        STORE_MARKER,
    log:
        f"{LOGS}/finalize_store/{{feature_set}}.log",
    priority: 1
    conda:
        "../envs/wsvad.yaml"
    script:
        "../workflow_scripts/finalize_store.py"


rule check_weights:
    # A feature set's weights file, loaded strictly into its backbone once, before any shard
    # starts: a wrong or damaged file fails here, naming the config key and the key differences.
    input:
        weights=lambda w: recipe(config, w.dataset, w.feature_set)["weights"],
    output:
        WEIGHTS_CHECK,
    log:
        f"{LOGS}/check_weights/{{feature_set}}.log",
    conda:
        "../envs/wsvad.yaml"
    params:
        recipe=lambda w: recipe(config, w.dataset, w.feature_set),
        key=weights_key,
    script:
        "../workflow_scripts/check_weights.py"
