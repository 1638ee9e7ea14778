from wsvad_core.workflow import setup_job

setup_job(snakemake)
from pathlib import Path

from wsvad_core.training.run import run_training

run_training(method=snakemake.wildcards.method, manifest=snakemake.input.manifest, store=snakemake.params.store,
             run_dir=Path(snakemake.output.checkpoint).parent, seed=int(snakemake.wildcards.seed),
             overrides=snakemake.params.overrides, dictionary=snakemake.input.get("dictionary"),
             vram_mb=snakemake.params.vram_mb, patch_stores=snakemake.params.patch_stores,
             eval_gt=snakemake.input.get("test_gt"),  # present when "best" selection is asked for
             protocol=snakemake.params.protocol)
