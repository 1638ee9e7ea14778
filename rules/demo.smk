# The synthetic demo dataset: real h264 videos in the UCF-Crime layout, generated from a seed.
from wsvad_core.config import dataset_paths
from wsvad_core.data.demo import demo_video_relpaths

for _ds, _cfg in DATASETS.items():
    if "generate" not in _cfg:
        continue
    _paths = dataset_paths(config, _ds)

    rule:
        name:
            f"demo_dataset_{_ds}"
        output:
            train_list=_paths["train_list"],
            test_annotation=_paths["test_annotation"],
            videos=[
                _paths["root"] / p
                for p in demo_video_relpaths(**{k: v for k, v in _cfg["generate"].items() if k.startswith("n_t")})
            ],
        log:
            f"{LOGS.format(dataset=_ds)}/demo_dataset.log",
        benchmark:
            f"{BENCHMARKS.format(dataset=_ds)}/demo_dataset.tsv"
        conda:
            "../envs/wsvad.yaml"
        # nothing else can run before the videos exist: two videos at a time (Snakemake lowers
        # it to the cores there are; a fraction of workflow.cores would need --cores on SLURM)
        threads: 2
        params:
            generate=_cfg["generate"],
            root=_paths["root"],
        script:
            "../workflow_scripts/demo_dataset.py"
