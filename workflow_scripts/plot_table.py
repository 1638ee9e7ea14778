from wsvad_core.workflow import setup_job

setup_job(snakemake)
from wsvad_core.reporting.plots import plot_table, settings_html, table_html

dataset = snakemake.wildcards.dataset
plot_table(snakemake.input[0], snakemake.output.bars, title=dataset)
table_html(snakemake.input[0], snakemake.output.html, title=f"{dataset}: results")
settings_html(snakemake.params.settings, snakemake.output.settings,
              title=f"{dataset}: settings (config.yaml, resolved: recipes with the dataset's overrides, "
                    "method overrides of the official hyper-parameters)")
