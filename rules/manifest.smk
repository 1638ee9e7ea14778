checkpoint manifest:
    input:
        unpack(manifest_inputs),
    output:
        MANIFEST,
    params:
        root=lambda w: DATASETS[w.dataset]["root"],
        layout=lambda w: DATASETS[w.dataset]["layout"],
        # videos are probed (decord) only when features are extracted from them
        probe_videos=lambda w: reads_videos(w.dataset),
    log:
        LOGS + "/manifest.log",
    conda:
        "../envs/wsvad.yaml"
    script:
        "../workflow_scripts/manifest.py"
