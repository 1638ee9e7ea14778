"""The one training loop every method shares: paired normal/abnormal batches, seeded, resumable.

What differs between the official recipes is declared by each method's hyper-parameters
(``TrainHParams``) and run here: the data order (``pairing``: RTFM's independently reshuffled
loaders, VadCLIP's zipped epochs, MGFN's fixed in-order pairing; ``sample_unit``: videos, or
(video, crop) rows as VadCLIP's per-crop lists), the test schedule (``eval_schedule``,
:func:`eval_due`), a MultiStepLR stepped per epoch (``lr_milestones``, ``lr_gamma``) and the
reload of the best-on-test weights after every epoch (``reload_best_each_epoch``).

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
from wsvad_core.training.data import TrainingSet, make_sampler

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
    # the data order, LR schedule, test schedule and best reloads the method declares
    # (TrainHParams: pairing, sample_unit, lr_milestones, eval_schedule, reload_best_each_epoch)
    per_crop = getattr(hparams, "sample_unit", "video") == "crop"
    crops = data.normal.shape[1]
    rows_per_video = crops if per_crop else 1
    sampler = make_sampler(hparams, len(data.normal) * rows_per_video,
                           len(data.abnormal) * rows_per_video)
    epoch_steps = max(1, sampler.epoch_steps)
    milestones = [int(m) for m in (getattr(hparams, "lr_milestones", ()) or ())]
    scheduler = (torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones,
                                                      getattr(hparams, "lr_gamma", 0.1))
                 if milestones else None)  # stepped once per epoch, as VadCLIP ucf_train.py:113
    reload_best = bool(getattr(hparams, "reload_best_each_epoch", False))
    if reload_best and eval_fn is None:
        log.info("reload_best_each_epoch: no test set to choose a best checkpoint on; not reloading")
        reload_best = False
    best_state: dict | None = None  # the best-on-test weights (CPU), for reload_best_each_epoch
    schedule = getattr(hparams, "eval_schedule", "steps")
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
        if scheduler is not None:
            scheduler.load_state_dict(state["scheduler"])
        best_state = state.get("best_state")
        _set_rng_state(state["rng"])
        rows, best, start = state["rows"], state["best"], state["step"]
        log.info("resuming %s from step %d", out_dir, start)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    def save_resume(step: int) -> None:
        with atomic_path(resume_path) as tmp:
            torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                        "sampler": sampler.state_dict(), "rng": _rng_state(), "rows": rows,
                        "best": best, "step": step, "hparams": asdict(hparams),
                        "scheduler": None if scheduler is None else scheduler.state_dict(),
                        "best_state": best_state}, tmp)

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
            normal = _rows(data.normal, n_idx, per_crop).to(device, torch.float32, non_blocking=True)
            abnormal = _rows(data.abnormal, a_idx, per_crop).to(device, torch.float32, non_blocking=True)
            a_vid = a_idx // crops if per_crop else a_idx
            cls_kw = ({} if getattr(data, "abnormal_classes", None) is None  # class-aware methods
                      else {"abnormal_classes": data.abnormal_classes[a_vid].to(device)})
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
                    and (eval_due(schedule, done, eval_every, epoch_steps)
                         or (done == hparams.max_steps and best["step"] < 0))):
                score = eval_fn(model)
                row["test_score"] = score
                if score > best["score"]:
                    best = {"step": done, "score": score}
                    save_checkpoint(checkpoint_path(out_dir, "best"), model, replace(record, step=done))
                    if reload_best:
                        best_state = {k: v.detach().to("cpu", copy=True)
                                      for k, v in model.state_dict().items()}
            if done % epoch_steps == 0 and scheduler is not None:
                scheduler.step()
            if reload_best and best_state is not None and (done % epoch_steps == 0
                                                          or done == hparams.max_steps):
                # VadCLIP ucf_train.py:116-117: after every epoch the best checkpoint's model
                # state is loaded back (the optimizer and scheduler go on); :119-120: the final
                # model is the best one
                model.load_state_dict(best_state)
            if done % ckpt_every == 0 and done < hparams.max_steps:
                save_resume(done)
    save_checkpoint(checkpoint_path(out_dir, "last"), model,
                    replace(record, step=hparams.max_steps, peak_memory=record_peak_memory(device),
                            best=best if eval_fn is not None else None))
    _write_log(out_dir / "train_log.csv", rows)
    resume_path.unlink(missing_ok=True)
    return rows


def eval_due(schedule: str, done: int, every: int, epoch_steps: int) -> bool:
    """Whether the test set is scored after step ``done`` (1-based) under ``eval_schedule``
    (``TrainHParams``): "steps": ``done % every == 0`` (RTFM main.py:65 ``step % 5 == 0``);
    "in_epoch": after the 0-based in-epoch iteration ``i`` with ``i % every == 0 and i != 0``
    (VadCLIP ucf_train.py:98-99: ``step = i * 128``, ``step % 1280 == 0 and step != 0``);
    "epoch_end": after the last step of every ``every``-th epoch (MGFN main.py:87)."""
    if schedule == "steps":
        return done % every == 0
    if schedule == "in_epoch":
        i = (done - 1) % epoch_steps
        return i % every == 0 and i != 0
    if schedule == "epoch_end":
        return done % epoch_steps == 0 and (done // epoch_steps) % every == 0
    raise ValueError(f"eval_schedule must be 'steps', 'in_epoch' or 'epoch_end', got {schedule!r}")


def _rows(feats: torch.Tensor, idx: torch.Tensor, per_crop: bool) -> torch.Tensor:
    """The batch of samples ``idx``: videos (B, C, S, D), or with ``per_crop`` (video, crop) rows
    numbered video-major as the official per-crop lists (row r = crop r % C of video r // C),
    as (B, 1, S, D)."""
    if not per_crop:
        return feats[idx]
    crops = feats.shape[1]
    return feats[idx // crops, idx % crops][:, None]


def _write_log(path: Path, rows: list[dict]) -> None:
    fields: list[str] = []
    for row in rows:
        fields += [k for k in row if k not in fields]
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
