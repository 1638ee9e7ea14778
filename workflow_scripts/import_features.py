from wsvad_core.workflow import setup_job

setup_job(snakemake)
from wsvad_core.features.importers import import_shard

import_shard(snakemake.params.videos, snakemake.params.spec, snakemake.params.recipe, snakemake.params.store,
             snakemake.output[0])
