from wsvad_core.workflow import setup_job

setup_job(snakemake)
from wsvad_core.data.manifest import build_manifest, write_manifest

df = build_manifest(snakemake.params.layout, dict(snakemake.input.items()), snakemake.params.root,
                    probe_videos=snakemake.params.probe_videos, min_frames=snakemake.params.min_frames)
write_manifest(df, snakemake.output[0])
