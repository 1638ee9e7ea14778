from wsvad_core.workflow import setup_job

setup_job(snakemake)
from wsvad_core.features.store import finalize_from_shards

finalize_from_shards(snakemake.input.shards, snakemake.output[0])
