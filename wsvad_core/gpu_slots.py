"""One GPU per concurrent job on a multi-GPU workstation.

Snakemake's local executor counts ``resources: gpu=1`` against ``--resources gpu=N`` but does
not say *which* card a job gets: every job would see all cards and use cuda:0. This allocator
hands each job its own card: slot i is an flock on ``<slot dir>/gpu<device>.lock``; the job
holds it while it runs and sets ``CUDA_VISIBLE_DEVICES`` to that card. flock locks belong to the
open file, so a job that is killed (even with SIGKILL) releases its card automatically.

- Slots: ``$WSVAD_GPU_SLOTS`` if set, else the cards in ``$CUDA_VISIBLE_DEVICES`` (a user's
  restriction is honoured: slot i is the i-th listed card), else ``torch.cuda.device_count()``
  (read through NVML, which does not initialise CUDA, so the variable set afterwards still counts).
- Lock folder: ``$WSVAD_GPU_SLOT_DIR``, else ``<tmp>/wsvad-gpu-slots``: machine-local on
  purpose, so two checkouts or workflows on one workstation share the same cards' locks, and a
  results folder on NFS cannot make two machines wait on each other's card numbers.
- Under SLURM (``SLURM_JOB_ID`` set) the scheduler already chose the card and set
  ``CUDA_VISIBLE_DEVICES``; nothing is locked or changed.
- A job that already holds a slot exports ``WSVAD_GPU_SLOT``; nested calls and child processes
  reuse that card instead of waiting on their own parent's lock.

CUDA reads ``CUDA_VISIBLE_DEVICES`` once, when the process first initialises it: take the slot
before any CUDA call (``wsvad_core.device.select_device`` does this itself).
"""
from __future__ import annotations

import fcntl
import os
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

ENV_SLOTS = "WSVAD_GPU_SLOTS"
ENV_DIR = "WSVAD_GPU_SLOT_DIR"
ENV_HELD = "WSVAD_GPU_SLOT"
CVD = "CUDA_VISIBLE_DEVICES"


@dataclass(frozen=True)
class GpuSlot:
    """What a job was given. ``device`` is the CUDA_VISIBLE_DEVICES value in effect (None: no
    GPU assigned); ``source`` says who decided: slurm | lock | inherited | none."""

    device: str | None
    index: int | None
    source: str
    lock_path: Path | None = None


def slot_dir() -> Path:
    return Path(os.environ.get(ENV_DIR) or Path(tempfile.gettempdir()) / "wsvad-gpu-slots")


def candidate_devices() -> list[str]:
    """The cards slots are made of, as CUDA_VISIBLE_DEVICES entries."""
    visible = [d.strip() for d in os.environ.get(CVD, "").split(",") if d.strip()]
    n_env = os.environ.get(ENV_SLOTS)
    if n_env:
        n = int(n_env)
        if n < 0:
            raise ValueError(f"{ENV_SLOTS}={n_env}: expected a count of GPUs >= 0")
        return visible[:n] if len(visible) >= n else [str(i) for i in range(n)]
    if CVD in os.environ:
        return visible
    try:
        import torch

        n = torch.cuda.device_count()  # NVML-based: does not initialise CUDA
    except Exception:  # no torch / no driver: no cards
        n = 0
    return [str(i) for i in range(n)]


def gpus_on_this_machine() -> int:
    """How many cards this machine offers jobs, without importing torch (the DAG asks):
    $WSVAD_GPU_SLOTS, else the CUDA_VISIBLE_DEVICES entries, else the NVIDIA driver's GPUs
    (/proc/driver/nvidia/gpus); $WSVAD_DEVICE=cpu means none."""
    if os.environ.get("WSVAD_DEVICE", "").lower() == "cpu":
        return 0
    if os.environ.get(ENV_SLOTS):
        return max(0, int(os.environ[ENV_SLOTS]))
    if CVD in os.environ:
        return len([d for d in os.environ[CVD].split(",") if d.strip() and d.strip() != "-1"])
    gpus = Path("/proc/driver/nvidia/gpus")
    return len(list(gpus.iterdir())) if gpus.is_dir() else 0


def _under_slurm() -> bool:
    return bool(os.environ.get("SLURM_JOB_ID"))


def _open_lock(path: Path) -> int:
    # O_RDONLY suffices for flock, so a lock file another user created (mode 0666 or not) works.
    fd = os.open(path, os.O_RDONLY | os.O_CREAT, 0o666)
    try:
        os.fchmod(fd, 0o666)
    except PermissionError:
        pass
    return fd


def _try_lock(devices: list[str], folder: Path) -> tuple[int, int] | None:
    for i, dev in enumerate(devices):
        fd = _open_lock(folder / f"gpu{dev}.lock")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return i, fd
        except BlockingIOError:
            os.close(fd)
    return None


def _lock_any(devices: list[str], timeout: float | None, poll: float) -> tuple[int, int]:
    folder = slot_dir()
    folder.mkdir(parents=True, exist_ok=True)
    try:
        os.chmod(folder, 0o1777)  # shared by every user of the machine, like /tmp
    except PermissionError:
        pass
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        got = _try_lock(devices, folder)
        if got is not None:
            return got
        if deadline is not None and time.monotonic() >= deadline:
            raise TimeoutError(
                f"all {len(devices)} GPU slots ({', '.join(devices)}) under {folder} stayed busy for "
                f"{timeout:.0f} s; run Snakemake with --resources gpu=<number of cards> so it never "
                f"starts more GPU jobs than there are cards, or set {ENV_SLOTS}")
        time.sleep(poll)


def _held_slot() -> GpuSlot | None:
    held = os.environ.get(ENV_HELD)
    if held and os.environ.get(CVD) == held:
        return GpuSlot(held, None, "inherited")
    return None


def _restore(saved: dict[str, str | None]) -> None:
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@contextmanager
def acquire_gpu_slot(timeout: float | None = None, poll: float = 0.2) -> Iterator[GpuSlot]:
    """Hold one card for the duration of the ``with`` block and expose only it through
    CUDA_VISIBLE_DEVICES (restored afterwards). Waits while all cards are taken; ``timeout``
    seconds (None: forever) bounds the wait."""
    if _under_slurm():
        yield GpuSlot(os.environ.get(CVD), None, "slurm")
        return
    held = _held_slot()
    if held is not None:
        yield held
        return
    devices = candidate_devices()
    if not devices:
        yield GpuSlot(None, None, "none")
        return
    index, fd = _lock_any(devices, timeout, poll)
    saved = {k: os.environ.get(k) for k in (CVD, ENV_HELD)}
    os.environ[CVD] = os.environ[ENV_HELD] = devices[index]
    try:
        yield GpuSlot(devices[index], index, "lock", slot_dir() / f"gpu{devices[index]}.lock")
    finally:
        _restore(saved)
        os.close(fd)  # releases the flock


_process_slot: GpuSlot | None = None
_process_fd: int | None = None
_process_saved: dict[str, str | None] = {}


def claim_gpu_slot_for_process(timeout: float | None = None) -> GpuSlot:
    """Like ``acquire_gpu_slot`` but held until the process exits (the OS then drops the lock).
    For job scripts that cannot wrap their work in a ``with`` block. Idempotent."""
    global _process_slot, _process_fd, _process_saved
    if _process_slot is not None:
        return _process_slot
    if _under_slurm():
        return GpuSlot(os.environ.get(CVD), None, "slurm")
    held = _held_slot()
    if held is not None:
        return held
    devices = candidate_devices()
    if not devices:
        return GpuSlot(None, None, "none")
    index, _process_fd = _lock_any(devices, timeout, 0.2)
    _process_saved = {k: os.environ.get(k) for k in (CVD, ENV_HELD)}
    os.environ[CVD] = os.environ[ENV_HELD] = devices[index]
    _process_slot = GpuSlot(devices[index], index, "lock", slot_dir() / f"gpu{devices[index]}.lock")
    return _process_slot


def release_process_slot() -> None:
    """Give back the slot ``claim_gpu_slot_for_process`` took (normally the process exit does)."""
    global _process_slot, _process_fd
    if _process_fd is not None:
        os.close(_process_fd)
        _restore(_process_saved)
    _process_slot = _process_fd = None
