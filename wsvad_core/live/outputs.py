"""What ``wsvad watch`` writes: JSON lines, a timeline PNG, a status line.

* :class:`JsonLines`: one JSON object per line, to stdout or a file. A record goes out in one
  ``write`` call of a whole line and is flushed at once, so a reader tailing the file sees whole
  lines only, and whatever was written before a crash is intact.
* :class:`TimelinePlot`: the last ``span`` snippets against wall-clock time (score, smoothed
  score, threshold and release level, alert spans, gaps), redrawn every ``every`` snippets in a
  background thread (drawing never holds up scoring; a redraw still running is not queued
  twice) and replaced atomically (``io.atomic_path``): a viewer never sees a half-written PNG.
* :class:`StatusLine`: a tqdm line on stderr when it is a terminal.
"""
from __future__ import annotations

import json
import os
import sys
import threading
from collections import deque
from datetime import datetime
from pathlib import Path

import numpy as np

from wsvad_core.io import atomic_path, json_default

__all__ = ["JsonLines", "TimelinePlot", "StatusLine", "OutputClosed"]

SCORE_COLOR = "#1f4e9c"
SMOOTH_COLOR = "#f2a900"
ALERT_COLOR = "#e4572e"


class OutputClosed(Exception):
    """The reader of stdout went away (``wsvad watch ... | head``): stop as if interrupted."""


class JsonLines:
    def __init__(self, path: str | os.PathLike | None = None, append: bool = False):
        self.path = None if path in (None, "-") else Path(path)
        if self.path is None:
            self._fd = None
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if append else os.O_TRUNC)
            self._fd = os.open(self.path, flags, 0o666)
            if append and os.fstat(self._fd).st_size:
                # a line cut by a crash of an earlier run must not swallow this run's first record
                with open(self.path, "rb") as f:
                    f.seek(-1, os.SEEK_END)
                    if f.read(1) != b"\n":
                        os.write(self._fd, b"\n")
        self.records = 0

    def write(self, record: dict) -> None:
        line = json.dumps(record, default=json_default, separators=(",", ":")) + "\n"
        try:
            if self._fd is None:
                sys.stdout.write(line)
                sys.stdout.flush()
            else:
                data = line.encode()
                while data:  # a regular file takes it in one call; a short write is finished here
                    data = data[os.write(self._fd, data):]
        except BrokenPipeError as err:
            raise OutputClosed("stdout was closed") from err
        self.records += 1

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class TimelinePlot:
    def __init__(self, path: str | os.PathLike, threshold: float, release: float, title: str = "",
                 every: int = 25, span: int = 600):
        if every < 1 or span < 2:
            raise ValueError(f"plot every {every} snippets over {span}: need every >= 1, span >= 2")
        self.path, self.threshold, self.release, self.title = Path(path), threshold, release, title
        self.every, self.span = int(every), int(span)
        self._t: deque[float] = deque(maxlen=self.span)      # wall time of each snippet's last frame
        self._score: deque[float] = deque(maxlen=self.span)
        self._smooth: deque[float] = deque(maxlen=self.span)
        self._alert: deque[bool] = deque(maxlen=self.span)
        self._gaps: deque[tuple[float, float]] = deque(maxlen=64)
        self._n = 0
        self._worker: threading.Thread | None = None
        self.error: BaseException | None = None
        self.writes = 0

    def add(self, wall: float, score: float, smoothed: float, alert_on: bool, note: str = "") -> None:
        self._t.append(wall)
        self._score.append(score)
        self._smooth.append(smoothed)
        self._alert.append(alert_on)
        self._n += 1
        if self._n % self.every == 0 and (self._worker is None or not self._worker.is_alive()):
            snap = self._snapshot(note)
            self._worker = threading.Thread(target=self._draw_safe, args=(snap,), name="wsvad-watch-plot",
                                            daemon=True)
            self._worker.start()

    def add_gap(self, since: float, until: float) -> None:
        self._gaps.append((since, until))

    def _snapshot(self, note: str) -> dict:
        return {"t": np.array(self._t), "score": np.array(self._score), "smooth": np.array(self._smooth),
                "alert": np.array(self._alert, dtype=bool), "gaps": list(self._gaps), "note": note}

    def _draw_safe(self, snap: dict) -> None:
        try:
            self._draw(snap)
        except BaseException as err:  # reported by close(); the watch goes on
            self.error = err

    def _draw(self, snap: dict) -> None:
        import matplotlib.dates as mdates
        from matplotlib.figure import Figure

        t = [datetime.fromtimestamp(x) for x in snap["t"]]
        fig = Figure(figsize=(10, 3.0), layout="constrained")
        ax = fig.add_subplot()
        if len(t):
            x = mdates.date2num(t)
            # a snippet's score holds over the snippet, which ends at its x
            ax.step(x, snap["score"], where="pre", color=SCORE_COLOR, lw=1.3, label="snippet score")
            ax.plot(x, snap["smooth"], color=SMOOTH_COLOR, lw=1.6, label="smoothed")
            # alert spans: runs of snippets in the "on" state
            on = snap["alert"]
            edges = np.flatnonzero(np.diff(np.concatenate([[False], on, [False]]).astype(np.int8)))
            step = np.median(np.diff(x)) if len(x) > 1 else 0.0
            for k, (a, b) in enumerate(zip(edges[::2], edges[1::2])):
                ax.axvspan(x[a] - step, x[b - 1], color=ALERT_COLOR, alpha=0.2, lw=0,
                           label="alert" if k == 0 else None)
            lo = x[0] - step
            for k, (g0, g1) in enumerate(snap["gaps"]):
                g0, g1 = mdates.date2num(datetime.fromtimestamp(g0)), mdates.date2num(datetime.fromtimestamp(g1))
                if g1 >= lo:
                    ax.axvspan(max(g0, lo), g1, color="0.6", alpha=0.35, lw=0, hatch="//",
                               label="stream down" if k == 0 else None)
            ax.set_xlim(lo, x[-1] + (step or 1e-5))
            loc = mdates.AutoDateLocator()
            ax.xaxis.set_major_locator(loc)
            ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(loc))
        ax.axhline(self.threshold, color="0.35", lw=0.9, ls="--", label=f"threshold {self.threshold:g}")
        if self.release != self.threshold:
            ax.axhline(self.release, color="0.55", lw=0.8, ls=":", label=f"release {self.release:g}")
        ax.set_ylim(-0.02, 1.02)
        ax.set_ylabel("anomaly score")
        ax.set_xlabel("wall-clock time of the snippet's last frame")
        ax.grid(alpha=0.25, lw=0.6)
        ax.legend(loc="upper left", fontsize=7, framealpha=0.85, ncol=3)
        head = "\n".join(x for x in (self.title, snap["note"]) if x)
        if head:
            ax.set_title(head, fontsize=8.5, loc="left")
        with atomic_path(self.path, suffix=".png") as tmp:
            fig.savefig(tmp, format="png", dpi=100)
        self.writes += 1

    def close(self, note: str = "") -> None:
        """The last picture, drawn now; an error of a background redraw is raised here."""
        if self._worker is not None:
            self._worker.join()
        if self.error is not None:
            raise self.error
        if self._n:
            self._draw(self._snapshot(note))


class StatusLine:
    def __init__(self, enabled: bool, desc: str = "watch"):
        from tqdm import tqdm

        self._bar = tqdm(total=None, unit="snippet", desc=desc, file=sys.stderr, mininterval=0.5,
                         disable=not (enabled and sys.stderr.isatty()), leave=True, dynamic_ncols=True)

    def update(self, text: str) -> None:
        self._bar.set_postfix_str(text, refresh=False)
        self._bar.update(1)

    def close(self) -> None:
        self._bar.close()
