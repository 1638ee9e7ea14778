"""A throw-away single-node SLURM cluster on this machine, for tests/integration/test_slurm.py.

Writes /etc/slurm/slurm.conf and gres.conf (srun inside a batch job reads only that path; a
SLURM_CONF set in the test's environment does not reach it), starts munged, slurmctld and slurmd
with every socket, pid file, spool, state and log under a private temporary folder, waits until
the node is idle, and at the end stops the daemons by the pids in their pid files and removes
the two config files. Settings are the ones seen to work in a container without cgroups.

Only one such cluster can exist per machine (one /etc/slurm/slurm.conf): ``start`` takes an
exclusive lock that ``stop`` releases, so parallel pytest workers wait for each other instead
of overwriting each other's config.
"""
from __future__ import annotations

import fcntl
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

SLURM_DIR = Path("/etc/slurm")
MARKER = "# Written by wsvad tests/slurm_cluster.py"
LOCK_FILE = Path(tempfile.gettempdir()) / "wsvad-slurm-cluster.lock"
BINARIES = ("sbatch", "squeue", "sinfo", "scontrol", "scancel", "srun", "slurmctld", "slurmd", "munged")
MUNGE_KEY = Path("/etc/munge/munge.key")


def unavailable_reason() -> str | None:
    """Why a cluster cannot be started here, or None when it can."""
    missing = [b for b in BINARIES if shutil.which(b) is None]
    if missing:
        return f"SLURM binaries not found ({', '.join(missing)}); run scripts/install_slurm.sh as root"
    if os.geteuid() != 0:
        return "starting slurmctld/slurmd with SlurmUser=root needs root"
    if not MUNGE_KEY.exists():
        return f"{MUNGE_KEY} missing; run scripts/install_slurm.sh"
    conf = SLURM_DIR / "slurm.conf"
    if conf.exists() and MARKER not in conf.read_text(errors="replace"):
        return f"{conf} exists and was not written by this helper; refusing to replace a real cluster's config"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie still answers kill(0); treat it as gone.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except (OSError, IndexError):
        return False


class SlurmCluster:
    """``with SlurmCluster() as c: ...`` or ``start()`` / ``stop()``."""

    def __init__(self, *, gpus: int = 1, partitions: tuple[str, ...] = ("gpu",), min_job_age: int = 600,
                 start_timeout: float = 60.0):
        self.gpus = gpus
        self.partitions = partitions  # all over the one node; the first is the default
        self.min_job_age = min_job_age  # large, so `squeue` still reports finished jobs
        self.start_timeout = start_timeout
        self.host = socket.gethostname().split(".")[0]
        self.root: Path | None = None
        self._lock_fd: int | None = None
        self._started_munged = False

    # -- paths -------------------------------------------------------------------------------
    def _p(self, name: str) -> Path:
        assert self.root is not None, "cluster not started"
        return self.root / name

    @property
    def ctld_log(self) -> Path:
        return self._p("slurmctld.log")

    @property
    def slurmd_log(self) -> Path:
        return self._p("slurmd.log")

    # -- lifecycle ---------------------------------------------------------------------------
    def __enter__(self) -> "SlurmCluster":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> None:
        reason = unavailable_reason()
        if reason:
            raise RuntimeError(reason)
        self._lock_fd = os.open(LOCK_FILE, os.O_CREAT | os.O_RDWR, 0o644)
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX)  # waits for another worker's cluster to stop
        try:
            # Short path: the munge socket path must fit in sockaddr_un (108 bytes).
            self.root = Path(tempfile.mkdtemp(prefix="wsvad-slurm-"))
            for d in ("state", "spool", "munge"):
                self._p(d).mkdir(mode=0o755)
            os.chmod(self.root, 0o755)
            self._start_munged()
            self._write_config()
            self._run(["slurmctld", "-c"])  # -c: ignore any saved state; it forks and writes its pid file
            self._wait_for(lambda: self._ok(["scontrol", "ping"]), "slurmctld to answer `scontrol ping`")
            self._run(["slurmd"])
            self._wait_for(self._node_idle, f"node {self.host} to be idle in sinfo")
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        if self.root is not None:
            if self._pid("slurmctld.pid"):
                self._cancel_all()
            for pidfile in ("slurmd.pid", "slurmctld.pid") + (("munged.pid",) if self._started_munged else ()):
                self._terminate(pidfile)
            for name in ("slurm.conf", "gres.conf"):
                f = SLURM_DIR / name
                if f.exists() and MARKER in f.read_text(errors="replace"):
                    f.unlink()
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None
            self._started_munged = False
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = None

    # -- daemons -----------------------------------------------------------------------------
    def _start_munged(self) -> None:
        # A private munged on a private socket (slurm.conf AuthInfo points at it), so a system
        # munged, if any, is neither needed nor touched.
        self._run(["munged", "--force",
                   f"--socket={self._p('munge/munge.socket')}",
                   f"--pid-file={self._p('munged.pid')}",
                   f"--log-file={self._p('munged.log')}",
                   f"--seed-file={self._p('munge/munged.seed')}",
                   f"--key-file={MUNGE_KEY}"])
        self._started_munged = True
        self._wait_for(lambda: self._p("munge/munge.socket").exists(), "munged's socket")

    def _write_config(self) -> None:
        node = self._node_line()
        sock = self._p("munge/munge.socket")
        conf = f"""{MARKER} (a throw-away test cluster; removed when it stops)
ClusterName=wsvadtest
SlurmctldHost={self.host}(127.0.0.1)
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket={sock}
CredType=cred/munge
MpiDefault=none
SlurmdParameters=config_overrides
# No cgroups in a container: track processes by /proc and do no task binding.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
# Accounting off: sacct cannot answer, so the profile must use `--slurm-status-command squeue`,
# which sees finished jobs for MinJobAge seconds.
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MinJobAge={self.min_job_age}
KillWait=5
InactiveLimit=0
StateSaveLocation={self._p('state')}
SlurmdSpoolDir={self._p('spool')}
SlurmctldPidFile={self._p('slurmctld.pid')}
SlurmdPidFile={self._p('slurmd.pid')}
SlurmctldLogFile={self.ctld_log}
SlurmdLogFile={self.slurmd_log}
SlurmctldDebug=info
SlurmdDebug=info
GresTypes=gpu
{node} Gres=gpu:{self.gpus} State=UNKNOWN
""" + "".join(f"PartitionName={p} Nodes={self.host} Default={'YES' if i == 0 else 'NO'} "
                    f"MaxTime=INFINITE State=UP\n" for i, p in enumerate(self.partitions))
        gres = f"{MARKER}\nNodeName={self.host} Name=gpu Count={self.gpus} File=/dev/null\n"
        SLURM_DIR.mkdir(parents=True, exist_ok=True)
        (SLURM_DIR / "slurm.conf").write_text(conf)
        (SLURM_DIR / "gres.conf").write_text(gres)

    def _node_line(self) -> str:
        # `slurmd -C` reports this machine's CPUs and memory. The node claims at least 4 CPUs and
        # 64 GB (SlurmdParameters=config_overrides makes slurmd accept that) so the profile's
        # real-cluster requests (--mem 16000, --cpus-per-task 2) are accepted on a small runner;
        # with CR_Core memory is not a consumable and nothing is enforced anyway.
        out = subprocess.run(["slurmd", "-C"], capture_output=True, text=True, check=True).stdout
        cpus = int(re.search(r"\bCPUs=(\d+)", out).group(1))
        mem = int(re.search(r"\bRealMemory=(\d+)", out).group(1))
        return (f"NodeName={self.host} NodeAddr=127.0.0.1 CPUs={max(cpus, 4)} "
                f"RealMemory={max(mem, 64000)}")

    def _pid(self, pidfile: str) -> int | None:
        try:
            return int(self._p(pidfile).read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def _terminate(self, pidfile: str, timeout: float = 15.0) -> None:
        pid = self._pid(pidfile)
        if pid is None or not _pid_alive(pid):
            return
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while _pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        if _pid_alive(pid):
            os.kill(pid, signal.SIGKILL)

    # -- queries -----------------------------------------------------------------------------
    def _node_idle(self) -> bool:
        r = subprocess.run(["sinfo", "-h", "-N", "-o", "%T"], capture_output=True, text=True)
        states = set(r.stdout.split())  # one line per node and partition
        return r.returncode == 0 and states == {"idle"}

    def jobs(self) -> list[dict[str, str]]:
        """Every job the controller still remembers (MinJobAge keeps finished ones), from
        `scontrol show job -o`, one dict of KEY=VALUE fields per job."""
        out = subprocess.run(["scontrol", "show", "job", "-o"], capture_output=True, text=True).stdout
        jobs = []
        for line in out.splitlines():
            if not line.startswith("JobId="):
                continue
            # Values may contain spaces only in the last fields we do not use; split on ' Key='.
            fields = dict(re.findall(r"(\w[\w:/]*)=(\S*)", line))
            jobs.append(fields)
        return jobs

    def log_tail(self, n: int = 60) -> str:
        parts = []
        for f in (self.ctld_log, self.slurmd_log):
            if f.exists():
                lines = f.read_text(errors="replace").splitlines()[-n:]
                parts.append(f"--- {f.name} (last {len(lines)} lines)\n" + "\n".join(lines))
        return "\n".join(parts)

    # -- helpers -----------------------------------------------------------------------------
    def _run(self, cmd: list[str]) -> None:
        """Start a daemon (it forks and writes its pid file). Its stdio must not be a pipe to us,
        or waiting for the launcher would wait for the daemon; stderr goes to a file instead."""
        err_path = self._p(f"{Path(cmd[0]).name}.stderr")
        with open(err_path, "ab") as err:
            r = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=err, stderr=err, timeout=60)
        if r.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed ({r.returncode}): "
                               f"{err_path.read_text(errors='replace').strip()}\n{self.log_tail()}")

    def _cancel_all(self) -> None:
        # Finish whatever a failed test left queued, so no job step outlives the cluster.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            r = subprocess.run(["squeue", "-h", "-t", "PENDING,RUNNING,SUSPENDED,COMPLETING", "-o", "%i"],
                               capture_output=True, text=True)
            ids = r.stdout.split()
            if r.returncode != 0 or not ids:
                return
            subprocess.run(["scancel", "--quiet", *ids], capture_output=True, timeout=30)
            time.sleep(0.5)

    @staticmethod
    def _ok(cmd: list[str]) -> bool:
        return subprocess.run(cmd, capture_output=True).returncode == 0

    def _wait_for(self, cond, what: str) -> None:
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if cond():
                return
            time.sleep(0.5)
        raise RuntimeError(f"timed out after {self.start_timeout:.0f} s waiting for {what}\n{self.log_tail()}")


if __name__ == "__main__":
    # Manual check: python tests/helpers/slurm_cluster.py  (starts, shows sinfo, runs one GPU job, stops)
    with SlurmCluster() as c:
        print(subprocess.run(["sinfo"], capture_output=True, text=True).stdout)
        print(subprocess.run(["srun", "--gres=gpu:1", "sh", "-c", "echo CUDA_VISIBLE_DEVICES=$CUDA_VISIBLE_DEVICES"],
                             capture_output=True, text=True, timeout=60))
        print(c.jobs())
