"""Shared fixtures. Layout: tests/unit (the library, no Snakemake), tests/integration (runs
Snakemake), tests/helpers (importable helper modules: pyproject's pythonpath), tests/configs
(the checked-in test configs), tests/fixtures (official-equivalence fixtures, sample videos)."""
import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

os.environ.setdefault("WSVAD_DEVICE", "cpu")

# The longest files (`--durations`, 2026-12-02: 280-330 s, 200 s, 183 s, 100 s, 210 s), run
# first. With `-n 2 --dist loadfile` a file is one unit of work given to whichever worker is free,
# in collection order (pyproject: --no-loadscope-reorder; xdist's default order, most tests first,
# left these few-test files for the end, one worker running them alone for minutes).
SLOW_FILES_FIRST = ("integration/test_pipeline.py", "integration/test_benchmarks_pipeline.py",
                    "integration/test_slurm.py", "unit/test_extractor_equivalence.py",
                    "integration/test_crash_resume.py")


def pytest_collection_modifyitems(config, items):
    def rank(item) -> int:
        path = item.path.as_posix()
        return next((i for i, f in enumerate(SLOW_FILES_FIRST) if path.endswith(f)), len(SLOW_FILES_FIRST))

    items.sort(key=rank)  # stable: the order inside a file and among the others is kept


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
