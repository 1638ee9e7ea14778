"""Smoothed scores and an alert state with hysteresis and a minimum duration.

The alert goes ``pending`` when the smoothed score reaches ``threshold``, and ``on`` once it has
stayed above the release level ``threshold - hysteresis`` for ``min_duration`` seconds of video
since; it is cleared (or the pending one dropped) when the score falls below the release level.
So a score hovering around the threshold does not make the alert flicker, and one stray snippet
does not raise it. Durations are in stream time (frame numbers / fps), so the
same video gives the same alerts however fast it is scored.
"""
from __future__ import annotations

from collections import deque

__all__ = ["Smoother", "AlertTracker", "OFF", "PENDING", "ON"]

OFF, PENDING, ON = "off", "pending", "on"


class Smoother:
    """Causal moving average of the last ``k`` scores (k = 1: the scores themselves)."""

    def __init__(self, k: int = 1):
        if k < 1:
            raise ValueError(f"smoothing window must be >= 1 snippet, got {k}")
        self.k = int(k)
        self._last: deque[float] = deque(maxlen=self.k)

    def __call__(self, score: float) -> float:
        self._last.append(float(score))
        return sum(self._last) / len(self._last)


class AlertTracker:
    """``update(smoothed, start_s, end_s)`` per snippet (its first frame's and its end's stream
    time) -> ``(state, event)``; ``event`` is None or a dict when the alert goes on or off."""

    def __init__(self, threshold: float, hysteresis: float = 0.1, min_duration: float = 0.0):
        if hysteresis < 0 or min_duration < 0:
            raise ValueError(f"hysteresis ({hysteresis}) and min_duration ({min_duration}) must be >= 0")
        self.threshold, self.hysteresis, self.min_duration = float(threshold), float(hysteresis), float(min_duration)
        self.state = OFF
        self._since: float | None = None  # stream time the score went above the threshold
        self._on_at: float | None = None
        self.alerts = 0

    @property
    def release(self) -> float:
        return self.threshold - self.hysteresis

    def update(self, smoothed: float, start_s: float, end_s: float) -> tuple[str, dict | None]:
        event = None
        if self.state == OFF and smoothed >= self.threshold:
            self.state, self._since = PENDING, start_s
        elif self.state in (PENDING, ON) and smoothed < self.release:
            if self.state == ON:
                event = {"state": OFF, "since_s": round(self._on_at, 3), "duration_s": round(start_s - self._on_at, 3)}
            self.state, self._since, self._on_at = OFF, None, None
            return self.state, event
        if self.state == PENDING and end_s - self._since >= self.min_duration:
            self.state, self._on_at = ON, self._since
            self.alerts += 1
            event = {"state": ON, "since_s": round(self._since, 3)}
        return self.state, event
