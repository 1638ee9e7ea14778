from wsvad_core.workflow import setup_job

setup_job(snakemake)
from wsvad_core.features.extract import extract_shard

extract_shard(snakemake.params.manifest, snakemake.params.recipe, snakemake.params.store, snakemake.output[0],
              vram_mb=snakemake.params.vram_mb)
