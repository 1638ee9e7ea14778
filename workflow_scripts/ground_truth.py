from wsvad_core.workflow import setup_job

setup_job(snakemake)
from wsvad_core.data.ground_truth import build_store_ground_truth

build_store_ground_truth(snakemake.input.manifest, snakemake.params.store, snakemake.input.test_annotation,
                         snakemake.params.clip_len, snakemake.output[0], layout=snakemake.params.layout)
