"""The real benchmark files in ../shared/benchmarks (present beside the repository in CI)."""
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "shared" / "benchmarks"


def bench(rel: str) -> Path:
    """The shared file, or skip the test (saying which file is missing)."""
    p = BENCH / rel
    if not p.exists():
        reason = f"benchmark file {p} not found (the shared benchmark annotations are absent)"
        print(reason)
        pytest.skip(reason)
    return p
