"""The one training loop every method shares: paired normal/abnormal batches, seeded, resumable.

Crash safety: the loop saves a resume state (model, optimiser, sampler, RNG, log rows so far)
every ``ckpt_every`` steps to ``resume.pt`` beside the outputs. Snakemake deletes a failed job's
declared outputs, but ``resume.pt`` is not one of them, so re-running the same target resumes
from the last saved step and produces exactly what an uninterrupted run would.
"""
from __future__ import annotations

import csv
import logging
import random
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from tqdm import tqdm

from wsvad_core.device import method_batch_hint, record_peak_memory, vram_guard
from wsvad_core.io import atomic_path
from wsvad_core.runs import RunRecord, checkpoint_path, save_checkpoint
from wsvad_core.training.data import PairedSampler, TrainingSet

log = logging.getLogger(__name__)

EvalFn = Callable[[torch.nn.Module], float]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _peak_mb(device: torch.device) -> float:
    """Peak memory so far: the allocator's on CUDA, the process RSS on the CPU."""
    peak = record_peak_memory(device)
    return peak["peak_allocated_mb"] if device.type == "cuda" else peak["peak_rss_mb"]


def _rng_state() -> dict:
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])


def train(model, hparams, data: TrainingSet, out_dir: str | Path, *, device: torch.device,
          optimizer: torch.optim.Optimizer, record: RunRecord, ckpt_every: int = 100,
          eval_fn: EvalFn | None = None, eval_every: int = 0, progress: bool = True,
          vram_mb: float | None = None) -> list[dict]:
    """Train ``model`` for ``hparams.max_steps`` steps; write ``checkpoint.pt`` (last step),
    ``checkpoint_best.pt`` when ``eval_fn`` is given, and ``train_log.csv`` into ``out_dir``;
    ``record`` is what the checkpoints say about the run (``wsvad_core/runs.py``)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    resume_path = out_dir / "resume.pt"
    seed_everything(hparams.seed)
    model.to(device)
    sampler = PairedSampler(len(data.normal), len(data.abnormal), hparams.batch_size, hparams.seed)
    rows: list[dict] = []
    best = {"step": -1, "score": -float("inf")}
    start = 0
    state = torch.load(resume_path, map_location=device, weights_only=False) if resume_path.exists() else None
    if state is not None and state.get("hparams") != asdict(hparams):
        # a resume state from other settings would silently mix two runs
        log.warning("ignoring %s: it was saved with other hyper-parameters (%s)", resume_path, state.get("hparams"))
        state = None
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        sampler.load_state_dict(state["sampler"])
        _set_rng_state(state["rng"])
        rows, best, start = state["rows"], state["best"], state["step"]
        log.info("resuming %s from step %d", out_dir, start)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    def save_resume(step: int) -> None:
        with atomic_path(resume_path) as tmp:
            torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                        "sampler": sampler.state_dict(), "rng": _rng_state(), "rows": rows,
                        "best": best, "step": step, "hparams": asdict(hparams)}, tmp)

    # official repos score the test set for "best" only after some step (RTFM: step > 200);
    # when training stops before it, the last step is scored so that a best checkpoint exists
    eval_min_step = hparams.eval_min_step
    if eval_fn is not None and eval_every and eval_min_step >= hparams.max_steps:
        log.info("eval_min_step %d >= max_steps %d: the best checkpoint is chosen at the last step only",
                 eval_min_step, hparams.max_steps)
        eval_min_step = hparams.max_steps - 1
    t0 = time.perf_counter()
    bar = tqdm(range(start, hparams.max_steps), initial=start, total=hparams.max_steps,
               desc=f"train {out_dir.parent.parent.name}", disable=not progress, leave=False)
    # a CUDA OOM under the job's VRAM cap becomes an error naming the setting to lower
    with vram_guard(method_batch_hint(record.method), device, vram_mb):
        for step in bar:
            model.train()
            n_idx, a_idx = sampler.next()
            normal = data.normal[n_idx].to(device, torch.float32, non_blocking=True)
            abnormal = data.abnormal[a_idx].to(device, torch.float32, non_blocking=True)
            cls_kw = ({} if getattr(data, "abnormal_classes", None) is None  # class-aware methods
                      else {"abnormal_classes": data.abnormal_classes[a_idx].to(device)})
            terms = model.loss(normal, abnormal, **cls_kw)
            done = step + 1
            if not torch.isfinite(terms["loss"]):  # before the step: keep the weights usable
                raise FloatingPointError(f"loss became {terms['loss'].item()} at step {done} in {out_dir}; "
                                         f"lower lr (now {hparams.lr}) or check the features for NaN/inf")
            optimizer.zero_grad(set_to_none=True)
            terms["loss"].backward()
            model.before_step()  # e.g. BN-WVAD's gradient clipping
            optimizer.step()
            model.after_step()
            row = {"step": done, **{k: float(v.detach()) for k, v in terms.items()},
                   "lr": optimizer.param_groups[0]["lr"], "time_s": round(time.perf_counter() - t0, 3),
                   "peak_mem_mb": _peak_mb(device)}
            rows.append(row)
            bar.set_postfix(loss=f"{row['loss']:.4f}")
            if (eval_fn is not None and eval_every and done > eval_min_step
                    and (done % eval_every == 0 or done == hparams.max_steps)):
                score = eval_fn(model)
                row["test_score"] = score
                if score > best["score"]:
                    best = {"step": done, "score": score}
                    save_checkpoint(checkpoint_path(out_dir, "best"), model, replace(record, step=done))
            if done % ckpt_every == 0 and done < hparams.max_steps:
                save_resume(done)
    save_checkpoint(checkpoint_path(out_dir, "last"), model,
                    replace(record, step=hparams.max_steps, peak_memory=record_peak_memory(device),
                            best=best if eval_fn is not None else None))
    _write_log(out_dir / "train_log.csv", rows)
    resume_path.unlink(missing_ok=True)
    return rows


def _write_log(path: Path, rows: list[dict]) -> None:
    fields: list[str] = []
    for row in rows:
        fields += [k for k in row if k not in fields]
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
