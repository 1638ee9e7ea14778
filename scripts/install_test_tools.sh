#!/usr/bin/env bash
# Install the system tools some tests need beyond Python packages: Debian's chromium, with which
# tests/integration/test_pipeline.py renders `snakemake --report` in a real headless browser (it skips,
# saying why, when chromium is absent). Idempotent; needs root (or sudo) and apt.
set -euo pipefail

if command -v chromium >/dev/null 2>&1; then
    echo "chromium already installed: $(chromium --version 2>/dev/null || echo unknown)"
    exit 0
fi

SUDO=""
if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null 2>&1 || { echo "install_test_tools.sh: run as root or install sudo" >&2; exit 1; }
    SUDO=sudo
fi

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
# fonts: without any, headless chromium draws text as boxes in the screenshots
$SUDO apt-get install -y -q --no-install-recommends chromium fonts-dejavu-core
echo "installed $(chromium --version)"
