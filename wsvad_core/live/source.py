"""Live video sources through PyAV (FFmpeg): what SOURCE means, how it is opened, and the
decoding thread that survives a dropped stream.

* A **file** is a recording that may still be being written: FFmpeg's ``file`` protocol reads it
  with ``follow=1`` (at the end it waits for more bytes) and ``seekable=0`` (so the demuxer does
  not seek to the end to estimate the duration, which would wait); after ``timeout`` seconds
  without new bytes the recording is taken as finished. A container whose index is written last
  (an MP4 without fragments: the ``moov`` atom) cannot be read while it grows; a finished one is
  read once, as it is.
* A **stream** is a URL FFmpeg's protocols read (``rtsp://``, ``http://``, ``tcp://``,
  ``udp://``, ``rtmp://``, ``srt://`` ...; RTSP over TCP by default). Silence for ``timeout``
  seconds, an error or the end of the stream is a drop: it is reopened with exponential backoff
  (0.5 s doubling to 30 s) until ``reconnect_timeout`` seconds have passed, and the gap is
  reported.
* A **device** is a capture device of libavdevice: ``/dev/video*`` (v4l2), or any SOURCE with
  ``--format`` (``v4l2``, ``avfoundation``, ``dshow``, ``lavfi`` for FFmpeg's test sources ...).
  It is reopened like a stream.

PyAV is imported inside the functions: the rest of the package, and its tests, do not need it.
"""
from __future__ import annotations

import logging
import math
import os
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from wsvad_core.errors import VideoReadError
from wsvad_core.live.snippets import Frame

log = logging.getLogger(__name__)

__all__ = ["Source", "parse_source", "open_source", "Reader", "BACKOFF_START_S", "BACKOFF_MAX_S"]

STREAM_SCHEMES = ("rtsp", "rtsps", "rtmp", "rtmps", "http", "https", "tcp", "udp", "rtp", "srt", "mms", "mmsh")
# libavdevice's capture inputs (the ones that take --format)
DEVICE_FORMATS = ("v4l2", "video4linux2", "avfoundation", "dshow", "vfwcap", "gdigrab", "x11grab", "kmsgrab",
                  "fbdev", "decklink", "android_camera", "lavfi")
BACKOFF_START_S = 0.5
BACKOFF_MAX_S = 30.0
QUEUE_FRAMES = 64  # decoded frames waiting for the scorer (a few snippets: bounded memory)


@dataclass
class Source:
    label: str                  # SOURCE as given: every message names it
    url: str                    # what av.open gets
    kind: str                   # "file" | "stream" | "device"
    format: str | None = None   # FFmpeg input format (devices; a forced demuxer)
    options: dict = field(default_factory=dict)
    timeout: float = 10.0

    @property
    def reconnects(self) -> bool:
        return self.kind != "file"


def _us(seconds: float) -> str:
    return str(int(seconds * 1e6))


def parse_source(source: str, fmt: str | None = None, options: dict | None = None,
                 timeout: float = 10.0) -> Source:
    """What SOURCE is, and the FFmpeg options it is opened with (``options`` go on top)."""
    source = str(source)
    if timeout <= 0:
        raise ValueError(f"timeout must be > 0 seconds, got {timeout}")
    scheme = source.split("://", 1)[0].lower() if "://" in source else None
    user = {str(k): str(v) for k, v in (options or {}).items()}
    if scheme in STREAM_SCHEMES and fmt not in DEVICE_FORMATS:
        opts = {"analyzeduration": "1000000"}  # start within a second, not FFmpeg's 5
        if scheme.startswith("rtsp"):
            opts.update(rtsp_transport="tcp", timeout=_us(timeout))  # TCP: no lost packets on a busy LAN
        else:
            opts["rw_timeout"] = _us(timeout)
        return Source(source, source, "stream", fmt, {**opts, **user}, timeout)
    if fmt in DEVICE_FORMATS or (fmt is None and source.startswith("/dev/")):
        return Source(source, source, "device", fmt or "v4l2", user, timeout)
    if scheme not in (None, "file"):
        raise VideoReadError(source, f"unknown source scheme {scheme}://; a stream is one of "
                             + ", ".join(f"{s}://" for s in STREAM_SCHEMES[:8]) + " ..., a capture device "
                             "takes --format (v4l2, avfoundation, dshow, lavfi)")
    path = source.split("://", 1)[1] if scheme == "file" else source
    if not os.path.exists(path):
        raise VideoReadError(source, "no such file. SOURCE is a recording (a path, possibly still being "
                             "written), a stream URL (rtsp://, http://, tcp:// ...) or a capture device "
                             "(/dev/video0, or a device name with --format v4l2|avfoundation|dshow|lavfi)")
    if os.path.isdir(path):
        raise VideoReadError(source, "is a folder, not a recording")
    opts = {"follow": "1", "seekable": "0", "rw_timeout": _us(timeout)}
    return Source(source, path, "file", fmt, {**opts, **user}, timeout)


def _reason(err: BaseException) -> str:
    """FFmpeg's words for an error, without PyAV's repetition of the URL."""
    text = getattr(err, "strerror", None) or str(err)
    return " ".join(str(text).split())


def _hint(src: Source, why: str) -> str:
    low = why.lower()
    if "moov atom not found" in low:
        return (" (an MP4 being written has no index yet: its moov atom comes last; to watch a recording "
                "while it grows, record MPEG-TS (.ts), Matroska (.mkv) or fragmented MP4 "
                "(ffmpeg -movflags frag_keyframe+empty_moov))")
    if "connection refused" in low:
        return " (nothing listens there: is the camera or server up, the port right?)"
    if "timed out" in low or "immediate exit" in low:
        return f" (no answer within {src.timeout:g} s)"
    if "input/output error" in low and src.kind == "file":
        return f" (no readable video in it within {src.timeout:g} s: empty, or not being written?)"
    if "invalid data" in low and src.kind == "file":
        return " (not a video FFmpeg can read, or a recording cut before its first frame)"
    return ""


def open_source(src: Source):
    """``(container, info)``: the source opened by PyAV with its first video stream; a source
    that cannot be opened raises ``VideoReadError`` naming it with FFmpeg's reason."""
    import av

    def attempt(options: dict):
        c = av.open(src.url, format=src.format, options=options,
                    timeout=(src.timeout + 5.0, src.timeout + 5.0))  # PyAV's own guard, after FFmpeg's
        if not c.streams.video:
            kinds = ", ".join(f"{s.type} {s.codec_context.name if s.codec_context else '?'}" for s in c.streams)
            c.close()
            raise VideoReadError(src.label, f"no video stream (streams: {kinds or 'none'})")
        return c

    try:
        container = attempt(src.options)
    except av.FFmpegError as err:
        why = _reason(err)
        if src.kind != "file":
            raise VideoReadError(src.label, f"cannot be opened: {why}{_hint(src, why)}") from err
        # a finished file whose container needs seeking (an MP4 with its index at the end) is
        # read once, as a finished recording
        plain = {k: v for k, v in src.options.items() if k not in ("follow", "seekable", "rw_timeout")}
        try:
            container = attempt(plain)
        except av.FFmpegError:
            raise VideoReadError(src.label, f"cannot be opened: {why}{_hint(src, why)}") from err
        src.options = plain
        log.info("%s: read as a finished recording (its container cannot be followed while it grows)", src.label)
    stream = container.streams.video[0]
    ctx = stream.codec_context
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    fps = float(rate) if rate else None
    info = {"codec": ctx.name, "width": ctx.width, "height": ctx.height,
            "fps": fps if fps and math.isfinite(fps) and 0 < fps <= 1000 else None,
            "container": container.format.name}
    return container, info


class Reader(threading.Thread):
    """Decodes the source into ``self.q``: ``("frame", Frame)``, ``("gap", info)`` after a drop
    and a reopen, ``("end", reason)`` when the source is over, ``("error", exception)``.

    ``sampled(pos)`` says which frames of a segment a complete snippet samples (they are
    converted to RGB and through ``host`` here, off the scoring thread); the others keep the
    decoded frame in case the last, padded snippet needs them."""

    def __init__(self, src: Source, container, sampled: Callable[[int], bool],
                 host: Callable[[np.ndarray], np.ndarray] | None, reconnect_timeout: float = math.inf):
        super().__init__(name="wsvad-watch-decode", daemon=True)
        self.src, self.container, self.sampled, self.host = src, container, sampled, host
        self.reconnect_timeout = float(reconnect_timeout)
        self.q: queue.Queue = queue.Queue(maxsize=QUEUE_FRAMES)
        self.stop = threading.Event()
        self.frames = 0          # frames decoded since the watch began
        self.corrupt_packets = 0

    def pixels(self, frame) -> np.ndarray:
        rgb = frame.to_ndarray(format="rgb24")  # the same conversion decord makes offline
        return self.host(rgb[None])[0] if self.host is not None else rgb

    def _put(self, item) -> bool:
        while not self.stop.is_set():
            try:
                self.q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def run(self) -> None:
        try:
            container = self.container
            while True:
                why = self._pump(container)
                _close(container)
                if self.stop.is_set():
                    return
                if not self.src.reconnects or self.reconnect_timeout <= 0:
                    self._put(("end", why))
                    return
                container, gap = self._reopen(why)
                if container is None:
                    if gap is not None:
                        self._put(("end", gap["reason"]))
                    return
                if not self._put(("gap", gap)):
                    _close(container)
                    return
        except BaseException as err:  # handed to the scoring thread, which raises it
            self._put(("error", err))

    def _pump(self, container) -> str:
        """Decode until the source ends or drops; returns why."""
        import av

        stream = container.streams.video[0]
        pos, size = 0, None

        def emit(frame) -> bool:
            nonlocal pos, size
            arrival, wall = time.perf_counter(), time.time()
            if size is not None and (frame.width, frame.height) != size:
                # frames of one snippet must have one size: a new segment starts here
                gap = {"reason": f"frame size changed from {size[0]}x{size[1]} to {frame.width}x{frame.height}",
                       "seconds": 0.0, "attempts": 0, "since": wall, "until": wall, "after_frame": self.frames - 1}
                if not self._put(("gap", gap)):
                    return False
                pos = 0
            size = (frame.width, frame.height)
            pixels = self.pixels(frame) if self.sampled(pos) else None
            item = Frame(self.frames, arrival, wall, pixels, None if pixels is not None else frame)
            pos += 1
            self.frames += 1
            return self._put(("frame", item))

        try:
            for packet in container.demux(stream):
                if self.stop.is_set():
                    return "stopped"
                try:
                    frames = packet.decode()
                except av.FFmpegError as err:  # one damaged packet (a cut mid-packet): skip it
                    self.corrupt_packets += 1
                    log.debug("%s: skipped a packet FFmpeg cannot decode: %s", self.src.label, _reason(err))
                    continue
                for frame in frames:
                    if not emit(frame):
                        return "stopped"
            return "end of stream"
        except (av.FFmpegError, OSError) as err:
            why = _reason(err)
            if self.src.kind == "file" and ("input/output error" in why.lower() or "timed out" in why.lower()):
                why = f"no new data for {self.src.timeout:g} s"
            # the frames the decoder still holds (B-frame reordering) are whole: hand them on
            try:
                for frame in stream.codec_context.decode(None):
                    if not emit(frame):
                        return "stopped"
            except (av.FFmpegError, OSError):
                pass
            return why

    def _reopen(self, why: str):
        """``(container, gap)`` once the source opens again; ``(None, gap)`` when it stays down
        past ``reconnect_timeout`` (gap["reason"] says so), ``(None, None)`` when stopped."""
        t0, wall0 = time.monotonic(), time.time()
        delay, attempts, last = BACKOFF_START_S, 0, why
        log.warning("%s: %s after frame %d; reopening (backoff %.1f s doubling to %g s)", self.src.label, why,
                    self.frames - 1, delay, BACKOFF_MAX_S)
        while not self.stop.wait(delay):
            attempts += 1
            try:
                container, _ = open_source(self.src)
            except VideoReadError as err:
                last = err.problem
                down = time.monotonic() - t0
                if down >= self.reconnect_timeout:
                    return None, {"reason": f"{why}; not back after {down:.1f} s ({attempts} attempts; last: {last})"}
                log.info("%s: reopening failed (%s); next attempt in %.1f s", self.src.label, last,
                         min(delay * 2, BACKOFF_MAX_S))
                delay = min(delay * 2, BACKOFF_MAX_S)
                continue
            seconds = time.monotonic() - t0
            log.warning("%s: reopened after %.1f s (%d attempt(s))", self.src.label, seconds, attempts)
            return container, {"reason": why, "seconds": round(seconds, 3), "attempts": attempts,
                               "since": wall0, "until": time.time(), "after_frame": self.frames - 1}
        return None, None


def _close(container) -> None:
    try:
        container.close()
    except Exception:  # closing a dropped connection may fail again; nothing is left to save
        pass
