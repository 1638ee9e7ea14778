"""Methods trained in stages inside one run (SSRL's clip stage then one stage per patch grid;
urdmu_patch's UR-DMU stage then its patch stage): the step counter, saved with every checkpoint
so that a resumed or reloaded model sits in its stage, the stage it implies, and the switch of
what learns when the stage changes."""

from __future__ import annotations

import abc

import numpy as np
import torch

from .base import WSVADModel

__all__ = ["StagedModel", "stage_ends"]


def stage_ends(stage_steps, max_steps: int, n_stages: int, method: str) -> list[int]:
    """Cumulative step at which each stage ends. ``stage_steps`` None: ``max_steps`` split
    equally (the remainder to the last stage); else one count per stage summing to max_steps."""
    steps = [int(s) for s in stage_steps or ()]
    if stage_steps is None:
        base = max_steps // n_stages
        steps = [base] * (n_stages - 1) + [max_steps - base * (n_stages - 1)]
    if len(steps) != n_stages or min(steps) < 0:
        raise ValueError(f"{method}: stage_steps {list(stage_steps)} needs {n_stages} non-negative "
                         "step counts (one per stage), or null to split max_steps equally")
    if sum(steps) != max_steps:
        raise ValueError(f"{method}: max_steps {max_steps} must equal sum(stage_steps) = "
                         f"{sum(steps)} (stage_steps {list(stage_steps)}); or set stage_steps: null")
    return np.cumsum(steps).tolist()


class StagedModel(WSVADModel):
    """A model whose training runs through stages. Subclasses set ``self.stage_ends``
    (:func:`stage_ends`), call :meth:`_start_stages` at the end of ``__init__`` and say in
    :meth:`_apply_stage` which modules learn in the current stage; the training loop's
    :meth:`after_step` advances the counter."""

    stage_ends: list[int]

    def _start_stages(self) -> None:
        self.register_buffer("step", torch.zeros((), dtype=torch.long))
        self._apply_stage()

    @property
    def stage(self) -> int:
        """1-based stage of the current step; the last stage once training is done."""
        s = int(self.step)
        for i, end in enumerate(self.stage_ends):
            if s < end:
                return i + 1
        return len(self.stage_ends)

    def enter_stage(self, k: int) -> None:
        """Put the model at the end of stage ``k`` (1-based), as a checkpoint trained through
        stage k is: ``step`` = the last step of stage k (``max_steps`` for the last stage), so
        that it scores and trains as stage k does."""
        n = len(self.stage_ends)
        if not 1 <= k <= n:
            raise ValueError(f"stage {k} does not exist: this model has stages 1..{n}")
        start = 0 if k == 1 else self.stage_ends[k - 2]
        end = self.stage_ends[k - 1]
        if k < n and end <= start:
            raise ValueError(f"stage {k} has no steps (stage ends {self.stage_ends}): a model of "
                             f"that stage cannot be represented; give it steps in stage_steps")
        self.step.fill_(end if k == n else end - 1)
        self._apply_stage()

    @abc.abstractmethod
    def _apply_stage(self) -> None:
        """Set what learns (requires_grad) in ``self.stage``."""

    def after_step(self) -> None:
        before = self.stage
        self.step += 1
        if self.stage != before:
            self._apply_stage()

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        out = super().load_state_dict(state_dict, strict=strict, assign=assign)
        self._apply_stage()  # the loaded step may sit in another stage
        return out
