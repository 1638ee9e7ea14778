"""profiles/slurm through a real single-node SLURM (tests/helpers/slurm_cluster.py).

Needs Debian's slurm-wlm + munge (scripts/install_slurm.sh) and root; skipped, with the reason,
where they are missing. Run alone with `pytest -m slurm`. The plugin polls job states and every
SLURM job starts Snakemake twice (batch script, then srun step), so this is the slow file of the
suite: about 45 s for the throw-away workflow and 2-2.5 min for the reduced demo on 2 cores.
Only the polling delays are shortened on the command line; the profile is used as it is.
"""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from slurm_cluster import SlurmCluster, unavailable_reason
from tiny_dag import DATASET, config_args, make_workdir

pytestmark = pytest.mark.slurm

REPO = Path(__file__).resolve().parents[2]
# Not the profile's default ("gpu"): checks that the WSVAD_SLURM_*PARTITION variables reach sbatch.
PARTITION, GPU_PARTITION = "wsvadcpu", "wsvadgpu"
# Poll sooner than the profile does (40 s suits a real cluster): the jobs here take 5-20 s, and
# the plugin adds 10 s to the delay after every poll that finds nothing finished.
FAST_POLL = ["--slurm-init-seconds-before-status-checks", "9", "--seconds-between-status-checks", "9"]


@pytest.fixture(scope="module")
def cluster():
    reason = unavailable_reason()
    if reason:
        pytest.skip(f"no SLURM test cluster: {reason}")
    c = SlurmCluster(partitions=(PARTITION, GPU_PARTITION))
    c.start()
    yield c
    c.stop()


def run_snakemake(cluster: SlurmCluster, workdir: Path, *args: str, timeout: int = 300):
    env = {**os.environ, "WSVAD_SLURM_PARTITION": PARTITION, "WSVAD_SLURM_GPU_PARTITION": GPU_PARTITION,
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    env.pop("SLURM_JOB_ID", None)
    cmd = [str(Path(sys.executable).with_name("snakemake")), "--profile", str(REPO / "profiles" / "slurm"),
           "--slurm-keep-successful-logs", *FAST_POLL, *args]
    t0 = time.monotonic()
    r = subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True, timeout=timeout)
    elapsed = time.monotonic() - t0
    print(f"snakemake through SLURM took {elapsed:.0f} s")
    out = r.stdout + r.stderr
    assert r.returncode == 0, f"snakemake failed ({r.returncode}):\n{out[-6000:]}\n{cluster.log_tail()}"
    return out


def batch_jobs(cluster: SlurmCluster, log: str) -> list[dict]:
    """The controller's records of the sbatch jobs this run submitted (named by its run id)."""
    run_id = next(ln.split("SLURM run ID:")[1].strip() for ln in log.splitlines() if "SLURM run ID:" in ln)
    return [j for j in cluster.jobs() if j.get("JobName") == run_id and j.get("BatchFlag") == "1"]


def gpus_of(job: dict) -> int:
    tres = job.get("TresPerJob", "") + "," + job.get("TresPerNode", "")
    for part in tres.split(","):
        if part.startswith("gres:gpu:") or part.startswith("gres/gpu:"):
            return int(part.rsplit(":", 1)[1])
    return 0


# A throw-away workflow whose rule names match the profile's groups and set-resources:
# two GPU extraction shards (one group -> one SLURM job), a GPU training job, a CPU table.
TINY = textwrap.dedent("""
    PY = {python!r}

    rule all:
        input: "out/table.txt"

    rule extract_shard:
        output: "out/shard{{shard}}.txt"
        resources: gpu=1
        shell:
            "echo shard={{wildcards.shard}} job=${{{{SLURM_JOB_ID:-none}}}}"
            " cuda=${{{{CUDA_VISIBLE_DEVICES:-unset}}}} > {{output}}"

    rule train:
        input: expand("out/shard{{shard}}.txt", shard=[0, 1])
        output: "out/train.txt"
        resources: gpu=1
        shell:
            "{{PY}} -c 'import os; from wsvad_core.gpu_slots import acquire_gpu_slot\\n"
            "with acquire_gpu_slot() as s: print(\\"job=%s cuda=%s source=%s\\" % "
            "(os.environ.get(\\"SLURM_JOB_ID\\"), os.environ.get(\\"CUDA_VISIBLE_DEVICES\\"), s.source))'"
            " > {{output}}"

    rule table:
        input: rules.train.output
        output: "out/table.txt"
        shell:
            "cat {{input}} > {{output}}; echo table job=${{{{SLURM_JOB_ID:-none}}}}"
            " cuda=${{{{CUDA_VISIBLE_DEVICES:-unset}}}} >> {{output}}"
""")


def fields(line: str) -> dict[str, str]:
    return dict(kv.split("=", 1) for kv in line.split() if "=" in kv)


def test_tiny_workflow_runs_through_sbatch(cluster, tmp_path):
    (tmp_path / "Snakefile").write_text(TINY.format(python=sys.executable))
    log = run_snakemake(cluster, tmp_path)

    shards = [fields((tmp_path / f"out/shard{i}.txt").read_text()) for i in (0, 1)]
    train = fields((tmp_path / "out/train.txt").read_text())
    table = fields((tmp_path / "out/table.txt").read_text().splitlines()[-1])

    jobs = batch_jobs(cluster, log)
    by_id = {j["JobId"]: j for j in jobs}
    # extract group (2 shards) + train + table: three sbatch jobs, all completed on our partition
    assert len(jobs) == 3, f"expected 3 sbatch jobs, got {[(j['JobId'], j.get('Comment')) for j in jobs]}"
    assert all(j["JobState"] == "COMPLETED" for j in jobs), jobs

    # The two shards ran inside one SLURM job (group-components), each seeing the job's one GPU.
    assert shards[0]["job"] == shards[1]["job"] in by_id
    assert all(s["cuda"] == "0" for s in shards)
    assert gpus_of(by_id[shards[0]["job"]]) == 1
    assert by_id[shards[0]["job"]]["Partition"] == GPU_PARTITION

    # The GPU rule got one GPU from SLURM; the slot allocator left SLURM's choice alone.
    assert train["job"] in by_id and train["job"] != shards[0]["job"]
    assert train["cuda"] == "0" and train["source"] == "slurm"
    assert gpus_of(by_id[train["job"]]) == 1
    assert by_id[train["job"]]["Partition"] == GPU_PARTITION

    # The CPU rule asked for no GPU.
    assert table["job"] in by_id and gpus_of(by_id[table["job"]]) == 0
    assert table["cuda"] == "unset"
    assert by_id[table["job"]]["Partition"] == PARTITION

    # Profile resources reached sbatch: runtime (minutes) -> TimeLimit, mem_mb -> --mem.
    assert by_id[train["job"]]["TimeLimit"] == "08:00:00"  # set-resources train: runtime 480
    assert by_id[table["job"]]["TimeLimit"] == "02:00:00"  # default-resources runtime 120
    assert by_id[table["job"]]["MinMemoryNode"] == "8000M"


def test_reduced_demo_through_slurm(cluster, tmp_path):
    # the tiny dataset, bigger (tests/configs/tiny.yaml + slurm.yaml), with the SLURM profile
    # alone: profiles/local is not a name Snakemake loads by itself (profiles/default was, which
    # made SLURM users pass --workflow-profile none)
    work = make_workdir(tmp_path)
    log = run_snakemake(cluster, work, "--snakefile", str(REPO / "Snakefile"), *config_args(("tiny", "slurm")),
                        "--", f"results/tables/{DATASET}.md", timeout=420)

    table = (tmp_path / f"results/tables/{DATASET}.md").read_text()
    assert "| mil | rtfm_i3d_r50 |" in table, table
    jobs = batch_jobs(cluster, log)
    assert jobs and all(j["JobState"] == "COMPLETED" for j in jobs), jobs
    # The plugin's --comment is rule_<rule or group name>[_wildcards_...].
    by_comment = {j.get("Comment", ""): j for j in jobs}
    gpu = {c: j for c, j in by_comment.items() if c.startswith(("rule_extract", "rule_run"))}
    assert any(c.startswith("rule_extract") for c in gpu) and any(c.startswith("rule_run") for c in gpu), by_comment
    for c, j in by_comment.items():
        want = (1, GPU_PARTITION) if c in gpu else (0, PARTITION)
        assert (gpus_of(j), j["Partition"]) == want, (c, j)
