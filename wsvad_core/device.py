"""Device selection and the per-job VRAM budget: every GPU job must fit on one 6 GB card.

A GPU job calls ``select_device(vram_mb)`` once, before any other CUDA call. It gets the first
card CUDA_VISIBLE_DEVICES exposes (set by SLURM, by the user, or by the slot allocator in
``wsvad_core.gpu_slots`` on a multi-GPU workstation) and caps PyTorch's allocator to the budget,
so a job that would not fit on a 6 GB card fails here too, even on a 80 GB one. The OOM then
surfaces as ``BudgetExceededError`` (via ``vram_guard``), which names the config setting to lower.
The budget is the job's ``vram_mb`` resource (``rules/common.smk``: 6144, one 6 GB card).
"""
from __future__ import annotations

import contextlib
import logging
import os
import resource
from typing import Iterator

import torch

log = logging.getLogger(__name__)

GiB = 2**30
MiB = 2**20
# The CUDA context (kernels, cuBLAS/cuDNN handles) lives outside the caching allocator and takes
# roughly this much on the card; the allocator gets the rest of the budget.
CUDA_CONTEXT_MB = float(os.environ.get("WSVAD_CUDA_CONTEXT_MB", "512"))


class BudgetExceededError(RuntimeError):
    """A CUDA out-of-memory error inside the per-job VRAM budget. The message names the
    setting to lower, so a failed Snakemake job says what to change in config.yaml."""

    def __init__(self, setting_hint: str, budget_mb: float | None = None, peak: dict | None = None,
                 cause: BaseException | None = None):
        self.setting_hint = setting_hint
        self.budget_mb = budget_mb
        self.peak = peak or {}
        budget = f"the {budget_mb:g} MB" if budget_mb is not None else "the"
        msg = (f"CUDA ran out of memory within {budget} per-job VRAM budget (the job's vram_mb "
               f"resource). Lower {setting_hint} in the config and re-run; raise vram_mb "
               f"(--set-resources RULE:vram_mb=N) only if every card you run on has that much memory.")
        if self.peak.get("peak_allocated_mb") is not None:
            msg += (f" Peak before the failure: {self.peak['peak_allocated_mb']:.0f} MB allocated, "
                    f"{self.peak['peak_reserved_mb']:.0f} MB reserved.")
        if cause is not None:
            first = str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__
            msg += f" ({first})"
        super().__init__(msg)


def feature_batch_hint(feature_set: str, dataset: str | None = None) -> str:
    """The setting that sizes extraction batches of ``feature_set``."""
    hint = f"feature_sets.{feature_set}.batch_size"
    if dataset:
        hint += f" (or datasets.{dataset}.feature_overrides.{feature_set}.batch_size, which wins for {dataset})"
    return hint


def method_batch_hint(method: str, dataset: str | None = None) -> str:
    """The setting that sizes training/evaluation batches of ``method``."""
    hint = f"methods.{method}.batch_size"
    if dataset:
        hint += f" (or datasets.{dataset}.method_overrides.{method}.batch_size, which wins for {dataset})"
    return hint


# -- device selection ---------------------------------------------------------------------------

def budget_fraction(vram_mb: float, total_bytes: int, context_mb: float = CUDA_CONTEXT_MB) -> float:
    """Share of a card of ``total_bytes`` that the allocator may use so the job fits in
    ``vram_mb`` including the CUDA context. 1.0 when the card is no larger than the budget."""
    if vram_mb <= context_mb:
        raise ValueError(f"vram_mb={vram_mb} leaves nothing after the ~{context_mb:g} MB CUDA context")
    return min(1.0, (vram_mb - context_mb) * MiB / total_bytes)


def _wants_cpu(prefer: str | None) -> bool:
    want = (prefer or os.environ.get("WSVAD_DEVICE") or "auto").lower()
    if want not in ("auto", "cpu", "cuda"):
        raise ValueError(f"device preference {want!r}: expected auto, cpu or cuda (WSVAD_DEVICE)")
    return want == "cpu"


def _claim_slot_if_shared() -> int | None:
    """On a workstation with several cards and no card chosen for this job (no SLURM, no single
    CUDA_VISIBLE_DEVICES entry), take one with the slot allocator before CUDA initialises.
    Returns the slot's index among the cards, or None when no slot was taken."""
    from wsvad_core import gpu_slots

    if os.environ.get("SLURM_JOB_ID") or os.environ.get(gpu_slots.ENV_HELD):
        return None
    if len(gpu_slots.candidate_devices()) > 1:
        slot = gpu_slots.claim_gpu_slot_for_process()
        log.info("GPU slot %s taken (lock %s)", slot.device, slot.lock_path)
        return slot.index
    return None


def _runtime_device_count() -> int:
    try:
        return torch._C._cuda_getDeviceCount()
    except Exception:
        return 1


def deterministic_mode() -> bool:
    """With $WSVAD_DETERMINISTIC=1, make GPU runs repeatable bit for bit (on the same card model,
    driver, CUDA/cuDNN and torch versions), at some speed cost: deterministic algorithms where
    torch has them (a warning names any op without one), no cuDNN autotuning, no TF32. CPU runs
    are repeatable without it. Must run before the first CUDA call: cuBLAS reads its workspace
    setting when it creates its handle."""
    if os.environ.get("WSVAD_DETERMINISTIC", "").lower() not in ("1", "true", "yes"):
        return False
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    log.info("deterministic mode ($WSVAD_DETERMINISTIC): deterministic algorithms, no cuDNN "
             "benchmark, no TF32")
    return True


def select_device(vram_mb: float = 6144, prefer: str | None = None) -> torch.device:
    """CUDA device 0 of what CUDA_VISIBLE_DEVICES exposes, with the allocator capped to
    ``vram_mb``; else CPU. ``prefer`` (or $WSVAD_DEVICE): auto | cpu | cuda (cuda fails loudly
    when no card is usable instead of falling back). $WSVAD_DETERMINISTIC=1: see
    ``deterministic_mode``."""
    deterministic_mode()
    # CPU arithmetic on denormal floats (|x| < 1.2e-38) is ~100x slower on x86; weights under an
    # L2 penalty and optimiser states reach them in long runs (MIL's demo training slowed from 40
    # to 300 ms/step by step 300). Flushing them to zero changes only values below 1e-38.
    torch.set_flush_denormal(True)
    if _wants_cpu(prefer):
        log.info("device: cpu (%d threads), requested", torch.get_num_threads())
        return torch.device("cpu")
    slot_index = _claim_slot_if_shared()
    if not torch.cuda.is_available():
        if (prefer or os.environ.get("WSVAD_DEVICE") or "").lower() == "cuda":
            raise RuntimeError("a CUDA device was requested (prefer/WSVAD_DEVICE=cuda) but none is usable")
        log.info("device: cpu (%d threads), no CUDA device", torch.get_num_threads())
        return torch.device("cpu")
    device = torch.device("cuda", 0)
    if slot_index is not None and _runtime_device_count() > 1:
        # CUDA was initialised (by an earlier torch.cuda call) before the slot narrowed
        # CUDA_VISIBLE_DEVICES, so every card is still visible: address ours by its index.
        device = torch.device("cuda", slot_index)
    total = torch.cuda.get_device_properties(device).total_memory
    fraction = budget_fraction(vram_mb, total)
    torch.cuda.set_per_process_memory_fraction(fraction, device)
    torch.cuda.reset_peak_memory_stats(device)
    log.info("device: %s (%s, %.1f GB), VRAM budget %.0f MB -> allocator cap %.3f of the card, "
             "CUDA_VISIBLE_DEVICES=%s", device, torch.cuda.get_device_name(device), total / GiB,
             vram_mb, fraction, os.environ.get("CUDA_VISIBLE_DEVICES", "<unset>"))
    return device


# -- inside the budget --------------------------------------------------------------------------

def record_peak_memory(device: torch.device | str) -> dict:
    """Peak memory of this job so far, for logs and outputs. CUDA: allocator peaks since
    ``select_device`` (or the last reset); the GPU fields are None on CPU. Always: peak RSS."""
    device = torch.device(device)
    out = {"device": str(device), "peak_allocated_mb": None, "peak_reserved_mb": None,
           # ru_maxrss is in KiB on Linux
           "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}
    if device.type == "cuda":
        out["peak_allocated_mb"] = round(torch.cuda.max_memory_allocated(device) / MiB, 1)
        out["peak_reserved_mb"] = round(torch.cuda.max_memory_reserved(device) / MiB, 1)
    return out


@contextlib.contextmanager
def vram_guard(setting_hint: str, device: torch.device | str | None = None,
               budget_mb: float | None = None) -> Iterator[None]:
    """Turn a CUDA OOM inside the block into BudgetExceededError naming ``setting_hint``
    (e.g. ``feature_batch_hint("i3d_r50")``)."""
    try:
        yield
    except torch.cuda.OutOfMemoryError as e:
        peak = None
        if device is not None and torch.device(device).type == "cuda":
            with contextlib.suppress(Exception):
                peak = record_peak_memory(device)
        raise BudgetExceededError(setting_hint, budget_mb, peak, cause=e) from e
