from wsvad_core.workflow import setup_job

setup_job(snakemake)
from wsvad_core.dictionary import build_dictionary

build_dictionary(snakemake.input.manifest, snakemake.params.store, snakemake.output.atoms, snakemake.output.info,
                 **snakemake.params.settings)
