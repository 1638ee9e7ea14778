"""Live scoring: a camera stream, a network stream or a recording still being written, scored
snippet by snippet with a trained run (``wsvad watch``).

The pieces, in the order a frame goes through them:

* :mod:`.source` opens the source with PyAV (FFmpeg does every protocol and container: a file
  read with FFmpeg's ``follow`` option while it grows, ``rtsp://``, ``http://``, ``tcp://`` ...,
  a capture device through libavdevice) and decodes it in a background thread into a bounded
  queue; a dropped stream is reopened with exponential backoff and the gap is reported.
* :mod:`.snippets` cuts the frames into the run's snippets exactly as the offline reader cuts a
  finished video (``features/decode.py``: ``clip_len``, ``stride``, the sampled frames, the
  ``t_rule`` padding of a last short snippet when the stream ends).
* :mod:`.scoring` embeds each snippet with the run's recipe and backbone (the offline
  extractor's ``_embed`` and the store's float dtype), then scores it with the run's model: a
  causal method (``WSVADModel.causal``) from the snippet alone, any other from a sliding window
  of the last W snippets, the newest at its right edge. :func:`.scoring.windowed_scores` is the
  same scoring on a finished video's features: the live scores of a finished stream are those.
* :mod:`.alerts` smooths the scores and raises an alert with hysteresis and a minimum duration.
* :mod:`.outputs` writes JSON lines (one ``write`` per record), a timeline PNG replaced
  atomically every N snippets, and a status line on a terminal.
* :mod:`.watch` puts them together, with signal handling (SIGINT / SIGTERM flush and close every
  output) and bounded memory: every buffer is a ring of fixed size, nothing grows with the
  stream's length (``benchmarks/live.py`` measures it).
"""
from wsvad_core.live.alerts import AlertTracker, Smoother
from wsvad_core.live.scoring import ContextScorer, SnippetEmbedder, windowed_scores
from wsvad_core.live.snippets import Frame, Snippet, SnippetAssembler
from wsvad_core.live.source import Source, parse_source

__all__ = ["AlertTracker", "Smoother", "ContextScorer", "SnippetEmbedder", "windowed_scores", "Frame",
           "Snippet", "SnippetAssembler", "Source", "parse_source", "watch"]


def watch(*args, **kwargs):
    """:func:`wsvad_core.live.watch.watch` (imported on use: it pulls in torch and PyAV)."""
    from wsvad_core.live.watch import watch as _watch

    return _watch(*args, **kwargs)
