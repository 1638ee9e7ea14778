from wsvad_core.workflow import setup_job

setup_job(snakemake)
from wsvad_core.reporting.plots import plot_run

plot_run(snakemake.input.scores, snakemake.input.gt, snakemake.output.curves, snakemake.output.timelines,
         metrics=snakemake.input.metrics, manifest=snakemake.input.manifest,
         clip_len=snakemake.params.recipe["clip_len"])
