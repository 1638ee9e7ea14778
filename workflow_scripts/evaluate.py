from wsvad_core.workflow import setup_job

setup_job(snakemake)
from wsvad_core.evaluation.run import run_evaluation
from wsvad_core.reporting.plots import plot_run

settings = snakemake.params.evaluation
run_evaluation(checkpoint=snakemake.input.checkpoint, manifest=snakemake.input.manifest,
               store=snakemake.params.store, ground_truth=snakemake.input.gt, scores_out=snakemake.output.scores,
               metrics_out=snakemake.output.metrics, dictionary=snakemake.input.get("dictionary"),
               protocol=snakemake.params.protocol, selection=settings["selection"],
               far_threshold=settings["far_threshold"], video_threshold=settings["video_threshold"],
               vram_mb=snakemake.params.vram_mb)
plot_run(snakemake.output.scores, snakemake.input.gt, snakemake.output.curves, snakemake.output.timelines,
         metrics=snakemake.output.metrics, manifest=snakemake.input.manifest,
         clip_len=snakemake.params.protocol["clip_len"])
