"""Shared fixtures. Layout: tests/unit (the library, no Snakemake), tests/integration (runs
Snakemake), tests/helpers (importable helper modules: pyproject's pythonpath), tests/configs
(the checked-in test configs), tests/fixtures (official-equivalence fixtures, sample videos)."""
import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

os.environ.setdefault("WSVAD_DEVICE", "cpu")


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session")
def snakemake_bin() -> str:
    exe = Path(sys.executable).with_name("snakemake")
    if not exe.exists():
        pytest.fail(f"snakemake is not installed beside {sys.executable}; run scripts/setup.sh")
    return str(exe)


@pytest.fixture(scope="module")
def one_thread():
    """Method tests run small models: a second torch thread only adds overhead on the CI
    machine's two cores, which pytest-xdist already fills with two workers."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)
