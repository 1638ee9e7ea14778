"""The VRAM budget and GPU slot logic, on the CPU: CUDA calls are faked where a card is needed."""
import multiprocessing as mp
import os
import signal
import time
from types import SimpleNamespace

import pytest
import torch

from wsvad_core import device as dv
from wsvad_core import gpu_slots as gs

GiB = 2**30


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    """No inherited GPU/SLURM settings; slot locks in a private folder."""
    for k in ("CUDA_VISIBLE_DEVICES", "SLURM_JOB_ID", "WSVAD_DEVICE", gs.ENV_SLOTS, gs.ENV_HELD):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv(gs.ENV_DIR, str(tmp_path / "slots"))
    yield tmp_path / "slots"
    gs.release_process_slot()


@pytest.fixture
def fake_cuda(monkeypatch):
    """torch.cuda answering as if one 80 GB card were visible; records the memory cap."""
    calls = {}
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda d: SimpleNamespace(total_memory=80 * GiB))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda d: "Fake H100")
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", lambda d=None: None)
    monkeypatch.setattr(torch.cuda, "set_per_process_memory_fraction",
                        lambda f, d=None: calls.update(fraction=f, device=d))
    return calls


# -- device selection ---------------------------------------------------------------------------

def test_cpu_when_requested_even_with_a_card(clean_env, fake_cuda, monkeypatch):
    monkeypatch.setenv("WSVAD_DEVICE", "cpu")
    assert dv.select_device(6144) == torch.device("cpu")
    assert "fraction" not in fake_cuda


def test_cpu_when_no_cuda(clean_env):
    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device")
    assert dv.select_device(6144) == torch.device("cpu")


def test_cuda_requested_but_absent_fails_loudly(clean_env, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(RuntimeError, match="WSVAD_DEVICE=cuda"):
        dv.select_device(6144, prefer="cuda")


def test_card_from_cuda_visible_devices_is_capped_to_budget(clean_env, fake_cuda, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")  # e.g. set by SLURM or the user
    dev = dv.select_device(6144)
    assert dev == torch.device("cuda", 0)  # index into what CUDA_VISIBLE_DEVICES exposes
    assert fake_cuda["fraction"] == pytest.approx((6144 - dv.CUDA_CONTEXT_MB) / (80 * 1024))
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "3"
    assert not clean_env.exists()  # one card chosen already: no slot taken


def test_multi_gpu_workstation_takes_a_slot_before_cuda(clean_env, fake_cuda, monkeypatch):
    monkeypatch.setenv(gs.ENV_SLOTS, "2")
    dev = dv.select_device(6144)
    assert dev == torch.device("cuda", 0)
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "0" == os.environ[gs.ENV_HELD]
    # The other card is what a second concurrent job gets.
    with gs.acquire_gpu_slot(timeout=0) as other:
        pass
    assert other.source == "inherited"  # same process: reuses its own card, no self-deadlock
    gs.release_process_slot()
    assert "CUDA_VISIBLE_DEVICES" not in os.environ


def test_slot_still_honoured_when_cuda_was_initialised_first(clean_env, fake_cuda, monkeypatch):
    monkeypatch.setenv(gs.ENV_SLOTS, "2")
    monkeypatch.setattr(dv, "_runtime_device_count", lambda: 2)  # runtime saw both cards
    with gs.acquire_gpu_slot():  # another job holds card 0 ... in this process, for the test
        monkeypatch.delenv(gs.ENV_HELD)
        monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
        assert dv.select_device(6144) == torch.device("cuda", 1)
        assert fake_cuda["device"] == torch.device("cuda", 1)


def test_slurm_choice_is_left_alone(clean_env, fake_cuda, monkeypatch):
    monkeypatch.setenv("SLURM_JOB_ID", "42")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    monkeypatch.setenv(gs.ENV_SLOTS, "4")
    assert dv.select_device(6144) == torch.device("cuda", 0)
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "1"
    assert not clean_env.exists()


@pytest.mark.parametrize("vram_mb,total_gb,expected", [
    (6144, 80, 5.5 / 80),   # big card: capped
    (6144, 6, 5.5 / 6),     # a 6 GB card: leave room for the context
    (6144, 4, 1.0),         # smaller than the budget: whole card
])
def test_budget_fraction(vram_mb, total_gb, expected):
    assert dv.budget_fraction(vram_mb, total_gb * GiB, context_mb=512) == pytest.approx(expected)


def test_budget_fraction_rejects_budget_below_context():
    with pytest.raises(ValueError, match="vram_mb=400 leaves nothing after the ~512 MB CUDA context"):
        dv.budget_fraction(400, 80 * GiB, context_mb=512)


# -- errors, guard ------------------------------------------------------------------------------

def test_budget_error_message_says_what_to_lower():
    err = dv.BudgetExceededError(dv.method_batch_hint("rtfm", dataset="demo"), budget_mb=6144,
                                 peak={"peak_allocated_mb": 5400.0, "peak_reserved_mb": 5500.0},
                                 cause=RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB\nmore"))
    msg = str(err)
    assert "methods.rtfm.batch_size" in msg
    assert "datasets.demo.method_overrides.rtfm.batch_size" in msg
    assert "6144 MB" in msg and "vram_mb" in msg
    assert "5400 MB allocated" in msg and "Tried to allocate 2.00 GiB" in msg
    assert "\n" not in msg  # one line in the Snakemake log


def test_vram_guard_converts_oom():
    hint = dv.feature_batch_hint("vadclip_vitb16")
    with pytest.raises(dv.BudgetExceededError) as info:
        with dv.vram_guard(hint, device="cpu", budget_mb=6144):
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 1.50 GiB")
    assert "feature_sets.vadclip_vitb16.batch_size" in str(info.value)
    assert isinstance(info.value.__cause__, torch.cuda.OutOfMemoryError)
    assert info.value.setting_hint == hint


def test_vram_guard_passes_other_errors_and_success():
    with pytest.raises(ValueError):
        with dv.vram_guard("x"):
            raise ValueError("not memory")
    with dv.vram_guard("x"):
        y = 1
    assert y == 1


def test_record_peak_memory_on_cpu():
    peak = dv.record_peak_memory(torch.device("cpu"))
    assert peak["device"] == "cpu"
    assert peak["peak_allocated_mb"] is None and peak["peak_reserved_mb"] is None
    assert peak["peak_rss_mb"] > 0


# -- GPU slots ----------------------------------------------------------------------------------

def _hold_slot(slot_dir, n_slots, hold_s, queue):
    os.environ[gs.ENV_DIR] = slot_dir
    os.environ[gs.ENV_SLOTS] = str(n_slots)
    for k in ("CUDA_VISIBLE_DEVICES", "SLURM_JOB_ID", gs.ENV_HELD):
        os.environ.pop(k, None)
    with gs.acquire_gpu_slot(timeout=30, poll=0.02) as slot:
        t0 = time.monotonic()
        seen = os.environ.get("CUDA_VISIBLE_DEVICES")
        time.sleep(hold_s)
        t1 = time.monotonic()
    queue.put((os.getpid(), slot.device, seen, t0, t1))


def test_concurrent_jobs_never_share_a_card(tmp_path):
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    procs = [ctx.Process(target=_hold_slot, args=(str(tmp_path), 2, 0.25, q)) for _ in range(6)]
    for p in procs:
        p.start()
    records = [q.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(10)
        assert p.exitcode == 0
    assert all(dev == seen for _, dev, seen, _, _ in records)  # the job sees only its card
    assert {dev for _, dev, *_ in records} == {"0", "1"}
    for i, a in enumerate(records):
        for b in records[i + 1:]:
            overlap = a[3] < b[4] and b[3] < a[4]
            assert not (overlap and a[1] == b[1]), f"two holders of card {a[1]} at once: {a} {b}"
    # never more holders than cards at any moment
    for _, _, _, t0, _ in records:
        assert sum(r[3] <= t0 < r[4] for r in records) <= 2


def _hold_forever(slot_dir, ready):
    os.environ[gs.ENV_DIR] = slot_dir
    os.environ[gs.ENV_SLOTS] = "1"
    os.environ.pop("CUDA_VISIBLE_DEVICES", None)
    with gs.acquire_gpu_slot():
        ready.set()
        time.sleep(60)


def test_killed_job_releases_its_card(clean_env, monkeypatch):
    monkeypatch.setenv(gs.ENV_SLOTS, "1")
    ctx = mp.get_context("fork")
    ready = ctx.Event()
    p = ctx.Process(target=_hold_forever, args=(str(clean_env), ready))
    p.start()
    assert ready.wait(20)
    with pytest.raises(TimeoutError, match="--resources gpu="):
        with gs.acquire_gpu_slot(timeout=0.3):
            pass
    os.kill(p.pid, signal.SIGKILL)
    p.join(10)
    with gs.acquire_gpu_slot(timeout=5) as slot:
        assert slot.device == "0" and slot.source == "lock"


def test_slot_restores_environment_and_honours_user_list(clean_env, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,5")  # user restricted the job to two cards
    with gs.acquire_gpu_slot(timeout=1) as a:
        assert a.device == os.environ["CUDA_VISIBLE_DEVICES"] == "2"
        with gs.acquire_gpu_slot(timeout=1) as nested:
            assert nested.device == "2" and nested.source == "inherited"
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "2,5"
    assert gs.ENV_HELD not in os.environ


def test_slurm_job_keeps_the_schedulers_card(clean_env, monkeypatch):
    monkeypatch.setenv("SLURM_JOB_ID", "7")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    monkeypatch.setenv(gs.ENV_SLOTS, "4")
    with gs.acquire_gpu_slot() as slot:
        assert slot.source == "slurm" and slot.device == "1"
        assert os.environ["CUDA_VISIBLE_DEVICES"] == "1"
    assert not clean_env.exists()


def test_no_cards_no_slot(clean_env, monkeypatch):
    monkeypatch.setenv(gs.ENV_SLOTS, "0")
    with gs.acquire_gpu_slot() as slot:
        assert slot.device is None and slot.source == "none"
    assert "CUDA_VISIBLE_DEVICES" not in os.environ
