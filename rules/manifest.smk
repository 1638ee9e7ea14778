checkpoint manifest:
    input:
        unpack(manifest_inputs),
    output:
        MANIFEST,
    log:
        f"{LOGS}/manifest.log",
    conda:
        "../envs/wsvad.yaml"
    params:
        root=lambda w: DATASETS[w.dataset]["root"],
        layout=lambda w: DATASETS[w.dataset]["layout"],
        # videos are probed (decord) only when features are extracted from them
        probe_videos=lambda w: reads_videos(w.dataset),
        # a video shorter than one snippet of an extracted feature set fails here, not in extraction
        min_frames=lambda w: max(
            [recipe(config, w.dataset, fs)["clip_len"] for fs in extracted_sets(w.dataset)], default=1
        ),
    script:
        "../workflow_scripts/manifest.py"
