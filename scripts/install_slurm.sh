#!/usr/bin/env bash
# Install Debian's SLURM + munge so tests/integration/test_slurm.py can run a real single-node cluster.
# Idempotent: does nothing when the binaries are already there. Needs root (or sudo) and apt.
# The daemons are NOT started here; tests/slurm_cluster.py writes the config and starts them.
set -euo pipefail

need=(sbatch squeue sinfo scontrol slurmctld slurmd munged)
missing=0
for b in "${need[@]}"; do
    command -v "$b" >/dev/null 2>&1 || missing=1
done
if [ "$missing" = 0 ] && [ -s /etc/munge/munge.key ]; then
    echo "slurm and munge already installed: $(dpkg-query -W -f='${Version}' slurm-wlm 2>/dev/null || echo unknown)"
    exit 0
fi

SUDO=""
if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null 2>&1 || { echo "install_slurm.sh: run as root or install sudo" >&2; exit 1; }
    SUDO=sudo
fi

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
# slurm-wlm pulls slurmctld, slurmd and the client tools; munge authenticates them.
$SUDO apt-get install -y -q --no-install-recommends slurm-wlm munge

# The munge package normally creates the key; make one if a minimal install did not.
if [ ! -s /etc/munge/munge.key ]; then
    if command -v mungekey >/dev/null 2>&1; then
        $SUDO mungekey --create --keyfile=/etc/munge/munge.key
    else
        $SUDO dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key status=none
    fi
    $SUDO chown munge:munge /etc/munge/munge.key 2>/dev/null || true
    $SUDO chmod 400 /etc/munge/munge.key
fi
echo "installed slurm-wlm $(dpkg-query -W -f='${Version}' slurm-wlm)"
