from wsvad_core.workflow import setup_job

setup_job(snakemake)
from wsvad_core.features.backbones import check_weights

check_weights(snakemake.params.recipe, snakemake.output[0], key=snakemake.params.key)
