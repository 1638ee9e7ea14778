from wsvad_core.workflow import setup_job

setup_job(snakemake)
from wsvad_core.data.demo import generate_demo_dataset

generate_demo_dataset(snakemake.params.root, **snakemake.params.generate, workers=snakemake.threads)
