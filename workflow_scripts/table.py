from wsvad_core.workflow import setup_job

setup_job(snakemake)
from wsvad_core.reporting.tables import write_tables

write_tables(snakemake.input, snakemake.output.csv, snakemake.output.md, tex_out=snakemake.output.tex,
             benchmark=snakemake.params.benchmark)
