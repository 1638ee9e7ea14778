"""Shared helpers of the benchmark scripts: machine record, repeated timing, result table.

Every script prints a small table (figure | wsvad | naive baseline | ratio) preceded by the
machine it ran on, and with ``--json PATH`` also writes the figures as JSON (atomically).
Scripts are run from the repository root: ``.venv/bin/python benchmarks/<name>.py``.
"""
from __future__ import annotations

import os
import platform
import resource
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # wsvad_core importable without an install
    sys.path.insert(0, str(ROOT))
BENCHMARK_FILES = ROOT / "data" / "benchmarks"
# UCF-Crime's training frame counts (`Class/name.mp4 n_frames`, ekosman's Train_Annotation.txt) are
# not among the shipped files: scripts that want them take --ucf-list, else draw lengths to
# UCF-Crime's mean
UCF_TRAIN_ANNOTATION = BENCHMARK_FILES / "ucf_crime" / "Train_Annotation.txt"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine() -> dict:
    """What the figures depend on: cores, torch threads, load, GPU."""
    import torch

    info = {
        "cpu": cpu_model(),
        "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "load_avg_1_5_15": [round(x, 2) for x in os.getloadavg()],
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "time": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    return info


def print_machine(info: dict | None = None) -> dict:
    info = info or machine()
    print(f"machine: {info['cpu']}, {info['cores']} cores, torch {info['torch']} with "
          f"{info['torch_threads']} threads, GPU: {info['gpu'] or 'none'}; load average "
          f"{'/'.join(map(str, info['load_avg_1_5_15']))} (1/5/15 min) at {info['time']}")
    return info


def median_time(fn: Callable[[], object], repeats: int, warmup: int = 0) -> tuple[float, list[float]]:
    """Median wall seconds of ``fn()`` over ``repeats`` runs after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), times


def peak_rss_mb() -> float:
    """Peak resident set size of this process (Linux: ru_maxrss in KiB)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (2**20 if sys.platform == "darwin" else 2**10)


def current_rss_mb() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, str):
        return v
    if isinstance(v, int):
        return f"{v:,}"
    if v != v:  # NaN
        return "n/a"
    a = abs(v)
    if a == 0:
        return "0"
    if a >= 100:
        return f"{v:,.0f}"
    if a >= 1:
        return f"{v:.2f}"
    if a >= 1e-3:
        return f"{v:.4f}"
    return f"{v:.2e}"


def ratio(wsvad: float | None, naive: float | None, higher_is_better: bool) -> float | None:
    """How many times better wsvad is than the baseline (> 1: wsvad better)."""
    if wsvad is None or naive is None or wsvad != wsvad or naive != naive:
        return None
    if higher_is_better:
        return wsvad / naive if naive else None
    return naive / wsvad if wsvad else None


class Table:
    """Rows of (figure, wsvad, naive, ratio, note), printed as a Markdown table."""

    def __init__(self, title: str):
        self.title = title
        self.rows: list[dict] = []

    def add(self, figure: str, wsvad=None, naive=None, *, higher_is_better: bool | None = None,
            note: str = "") -> dict:
        r = ratio(wsvad, naive, higher_is_better) if higher_is_better is not None else None
        row = {"figure": figure, "wsvad": wsvad, "naive": naive, "ratio": r, "note": note}
        self.rows.append(row)
        return row

    def render(self) -> str:
        lines = [f"### {self.title}", "", "| figure | wsvad | naive baseline | ratio | note |",
                 "|---|---:|---:|---:|---|"]
        for r in self.rows:
            rt = f"{r['ratio']:.2f}x" if r["ratio"] is not None else "-"
            lines.append(f"| {r['figure']} | {fmt(r['wsvad'])} | {fmt(r['naive'])} | {rt} | {r['note']} |")
        return "\n".join(lines)

    def print(self) -> None:
        print()
        print(self.render())
        print(flush=True)


def finish(tables: Sequence[Table], info: dict, json_path: str | None, extra: dict | None = None) -> None:
    """Print the tables and the load at the end; write JSON when asked."""
    for t in tables:
        t.print()
    end_load = [round(x, 2) for x in os.getloadavg()]
    print(f"load average at the end: {'/'.join(map(str, end_load))}")
    if json_path:
        from wsvad_core.io import write_json

        write_json(json_path, {"machine": {**info, "load_avg_end": end_load},
                               "tables": {t.title: t.rows for t in tables}, **(extra or {})})
        print(f"wrote {json_path}")


def wait_for_quiet(max_load: float, max_wait_s: float) -> None:
    """Wait (up to ``max_wait_s``) until the 1-minute load average drops below ``max_load``:
    the machine is shared and the figures are only comparable when it is quiet."""
    if max_wait_s <= 0:
        return
    t0 = time.monotonic()
    while os.getloadavg()[0] > max_load and time.monotonic() - t0 < max_wait_s:
        time.sleep(10)


def add_common_args(parser) -> None:
    parser.add_argument("--repeats", type=int, default=3, help="timed repetitions (median reported)")
    parser.add_argument("--json", default=None, help="also write the figures to this JSON file")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--wait-load", type=float, nargs=2, default=(0.0, 0.0), metavar=("LOAD", "SECONDS"),
                        help="wait up to SECONDS for the 1-min load average to fall below LOAD")


def setup(args) -> dict:
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    wait_for_quiet(*args.wait_load)
    return print_machine()
