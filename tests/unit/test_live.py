"""Live scoring's parts, without a stream (``wsvad_core/live/``): snippets cut from frames as the
offline reader cuts a file, every method's causal declaration against its scores, windowed
scoring against its definition, bounded buffers, alerts with hysteresis, sources parsed into
FFmpeg options, whole JSON lines, the atomic timeline. The streams themselves (PyAV, FFmpeg
servers on 127.0.0.1): tests/integration/test_watch.py."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from pngs import png
from wsvad_core.errors import VideoReadError
from wsvad_core.features.decode import snippet_indices
from wsvad_core.live.alerts import OFF, ON, PENDING, AlertTracker, Smoother
from wsvad_core.live.outputs import JsonLines, TimelinePlot
from wsvad_core.live.scoring import ContextScorer, windowed_scores
from wsvad_core.live.snippets import Frame, SnippetAssembler
from wsvad_core.live.source import parse_source
from wsvad_core.methods import create_method, get_method, list_methods

pytestmark = pytest.mark.usefixtures("one_thread")

D = 64
CLASSES = ("Normal", "Explosion", "Fighting")
TEXT = dict(text_width=32, text_heads=2, text_layers=1)
# small widths where the official ones make a forward slow; the architectures are unchanged
SMALL = {
    "mgfn": {"dims": (16, 32, 32), "dim_head": 16, "head_width": 16},
    "rtfm": {"aggregate_inner": 64},
    "urdmu": {"width": 32, "dim_head": 8, "mlp_dim": 32, "n_segments": 32},
    "bnwvad": {"width": 64, "dim_head": 16, "mlp_dim": 64, "n_segments": 32},
    "urdmu_patch": {"width": 16, "dim_head": 4, "heads": 2, "mlp_dim": 16, "cls_hidden": 8, "a_nums": 4,
                    "n_nums": 4, "patch_grid": (1, 2), "patch_heads": 2, "n_segments": 32},
    "ssrl": {"multi_patch_size": (12,), "ddp_world_size": 1},
    "vadclip": {**TEXT, "n_segments": 32},
    "tpwng": {**TEXT, "n_segments": 32, "tcsal_heads": 4},
    "gsmoe": {"n_segments": 32},
}


def build(name: str):
    spec = get_method(name)
    kw = dict(SMALL.get(name, {}))
    if spec.needs_class_labels:
        kw.setdefault("class_names", CLASSES)
    atoms = np.random.default_rng(0).normal(size=(5, D)).astype(np.float32) if spec.needs_dictionary else None
    model, hp = create_method(name, D, dictionary=atoms, **kw)
    crops = 2 + sum(r * c for r, c in hp.patch_grids())
    return model.eval(), hp, crops


# ------------------------------------------------------------------------- snippets

def frames_through(asm: SnippetAssembler, n: int, start: int = 0, lazy: list | None = None):
    """Push frames start..start+n-1 (pixel value = frame number) the way the decoding thread
    does: pixels for sampled frames, the raw frame otherwise; returns the snippets made."""
    out = []
    for i in range(n):
        pos_pixels = np.full((2, 2, 3), (start + i) % 256, np.uint8)
        sampled = asm.sampled(i)
        snip = asm.push(Frame(start + i, float(i), float(i), pos_pixels if sampled else None,
                              None if sampled else pos_pixels))
        if snip is not None:
            out.append(snip)
    return out


@pytest.mark.parametrize("clip,stride,per", [(16, 16, 16), (16, 16, 2), (16, 16, 1), (16, 8, 16), (8, 8, 4)])
@pytest.mark.parametrize("t_rule", ["ceil_loop", "ceil_last", "floor"])
@pytest.mark.parametrize("n", [5, 16, 17, 40, 44, 47])
def test_snippets_of_a_finished_stream_are_the_offline_readers(clip, stride, per, t_rule, n):
    converted = []

    def to_pixels(raw):
        converted.append(int(raw[0, 0, 0]))
        return raw

    asm = SnippetAssembler(clip, stride, per, t_rule, to_pixels=to_pixels)
    snips = frames_through(asm, n)
    assert not converted  # complete snippets only read the frames the decoding thread converted
    last = asm.finish()
    if last is not None:
        assert last.padded
        snips.append(last)
    got = np.array([s.frames[:, 0, 0, 0] for s in snips]).reshape(-1, per)
    np.testing.assert_array_equal(got, snippet_indices(n, clip, stride, per, t_rule))
    starts = [s.first for s in snips]
    assert starts == [k * stride for k in range(len(snips))]
    assert [s.index for s in snips] == list(range(len(snips)))


def test_a_gap_drops_the_unfinished_snippet_and_restarts_the_cut():
    asm = SnippetAssembler(8, 8, 8, "ceil_loop", to_pixels=lambda r: r)
    before = frames_through(asm, 20)
    assert [(s.first, s.last) for s in before] == [(0, 7), (8, 15)]
    assert asm.pending == 4 and asm.reset() == 4 and asm.pending == 0
    after = frames_through(asm, 17, start=20)  # frame numbers go on after the gap
    assert [(s.first, s.last, s.index) for s in after] == [(20, 27, 2), (28, 35, 3)]
    last = asm.finish()
    assert (last.first, last.last, last.padded) == (36, 36, True)
    assert list(last.frames[:, 0, 0, 0]) == [36] * 8  # one frame, looped


def test_assembler_keeps_one_snippet_of_frames():
    asm = SnippetAssembler(16, 16, 16, "ceil_loop")
    frames_through(asm, 1000)
    assert len(asm._buf) == 16  # a ring of clip_len frames, however long the stream


# ---------------------------------------------------------------------- methods

@pytest.mark.parametrize("name", list_methods())
def test_a_methods_causal_declaration_matches_its_scores(name):
    """causal = True must mean that a snippet scored alone gets its whole-video score (live
    scores are then the offline ones); a method that is not causal must need its context."""
    model, hp, crops = build(name)
    x = torch.randn(1, crops, 12, D, generator=torch.Generator().manual_seed(0))
    full = model.score(x)[0]
    alone = torch.cat([model.score(x[:, :, t:t + 1])[0] for t in range(12)])
    if model.causal:
        torch.testing.assert_close(alone, full, rtol=0, atol=1e-6)
        assert model.live_window() == 1
    else:
        assert (alone - full).abs().max() > 1e-4, (
            f"{name} scores every snippet alone as the whole video does: declare causal = True")
        assert model.live_window() == hp.n_segments


def test_mil_is_causal_and_rtfm_is_not():
    # the two the issue names: MIL's per-snippet MLP, RTFM's temporal network
    assert build("mil")[0].causal and build("timesformer_mil")[0].causal
    assert not build("rtfm")[0].causal


def test_windowed_scores_are_the_last_score_of_each_window():
    model, _, crops = build("rtfm")
    x = torch.randn(1, crops, 20, D, generator=torch.Generator().manual_seed(1))
    W = 5
    live = windowed_scores(model, x[0].numpy(), window=W)
    expected = np.array([float(model.score(x[:, :, max(0, t - W + 1):t + 1])[0, -1]) for t in range(20)])
    np.testing.assert_allclose(live, expected, rtol=0, atol=1e-6)
    # the first W snippets see the video's start, as whole-video scoring does, but not its future
    assert np.abs(live - model.score(x)[0].numpy()).max() > 1e-4
    default = ContextScorer(model)
    assert default.window == 32  # RTFM trains on 32 segments


def test_causal_scoring_needs_no_window():
    model, _, crops = build("mil")
    x = torch.randn(1, crops, 30, D, generator=torch.Generator().manual_seed(2))
    scorer = ContextScorer(model, window=8)
    assert scorer.causal and scorer.window == 1
    live = np.array([scorer.push(x[0, :, t].numpy()) for t in range(30)])
    np.testing.assert_allclose(live, model.score(x)[0].numpy(), rtol=0, atol=1e-6)


def test_context_memory_does_not_grow_with_the_stream():
    model, _, crops = build("rtfm")
    scorer = ContextScorer(model, window=4)
    feats = np.random.default_rng(3).normal(size=(crops, D)).astype(np.float32)
    scorer.push(feats)
    ring = scorer._ring
    for _ in range(200):
        scorer.push(feats)
    assert scorer._ring is ring and ring.shape == (crops, 4, D)


# ----------------------------------------------------------------------- alerts

def test_smoother_is_a_causal_moving_average():
    s = Smoother(3)
    assert [round(s(v), 6) for v in (0.3, 0.6, 0.9, 0.0)] == [0.3, 0.45, 0.6, 0.5]
    with pytest.raises(ValueError):
        Smoother(0)


def test_alert_needs_min_duration_and_clears_below_the_release_level():
    a = AlertTracker(threshold=0.5, hysteresis=0.1, min_duration=1.0)
    snippet = 0.5  # seconds of video per snippet
    states, events = [], []
    for i, v in enumerate([0.2, 0.6, 0.3, 0.6, 0.55, 0.45, 0.7, 0.42, 0.39, 0.9]):
        state, event = a.update(v, i * snippet, (i + 1) * snippet)
        states.append(state)
        events.append(event)
    # 0.6 then 0.3: a stray high snippet is dropped while pending; 0.6, 0.55: on after 1 s;
    # 0.45 and 0.42 stay above the release level 0.4 (hysteresis); 0.39 clears it
    assert states == [OFF, PENDING, OFF, PENDING, ON, ON, ON, ON, OFF, PENDING]
    assert events[4] == {"state": ON, "since_s": 1.5}
    assert events[8] == {"state": OFF, "since_s": 1.5, "duration_s": 2.5}
    assert a.alerts == 1 and [e for e in events if e] == [events[4], events[8]]


def test_alert_without_min_duration_goes_on_at_once():
    a = AlertTracker(0.5, hysteresis=0.0, min_duration=0.0)
    assert a.update(0.5, 0, 1) == (ON, {"state": ON, "since_s": 0})
    assert a.update(0.49, 1, 2)[0] == OFF


# ------------------------------------------------------------------------ sources

def test_sources_are_told_apart(tmp_path):
    rec = tmp_path / "cam.ts"
    rec.write_bytes(b"")
    f = parse_source(str(rec), timeout=3)
    assert f.kind == "file" and f.options == {"follow": "1", "seekable": "0", "rw_timeout": "3000000"}
    r = parse_source("rtsp://10.0.0.2/stream1", timeout=2)
    assert r.kind == "stream" and r.options["rtsp_transport"] == "tcp" and r.options["timeout"] == "2000000"
    h = parse_source("http://127.0.0.1:8080/live.ts", options={"rw_timeout": "1"})
    assert h.kind == "stream" and h.options["rw_timeout"] == "1"  # --option wins
    assert parse_source("/dev/video0").format == "v4l2"
    d = parse_source("testsrc2=size=64x48", fmt="lavfi")
    assert d.kind == "device" and d.format == "lavfi" and d.reconnects and not f.reconnects


@pytest.mark.parametrize("bad,problem", [("missing.ts", "no such file"), ("ftpx://host/a", "unknown source scheme"),
                                         (".", "is a folder")])
def test_a_wrong_source_is_named(tmp_path, bad, problem):
    src = str(tmp_path / bad) if not bad.startswith("ftpx") else bad
    with pytest.raises(VideoReadError) as err:
        parse_source(src)
    assert str(err.value).startswith(src.rstrip("/")) or str(err.value).startswith(src)
    assert problem in str(err.value)


# ------------------------------------------------------------------------ outputs

def test_json_lines_are_whole_and_append_mends_a_cut_line(tmp_path):
    out = tmp_path / "w.jsonl"
    jl = JsonLines(out)
    jl.write({"type": "snippet", "score": np.float32(0.25)})
    jl.write({"type": "end"})
    jl.close()
    assert [json.loads(x)["type"] for x in out.read_text().splitlines()] == ["snippet", "end"]
    with open(out, "ab") as f:  # an earlier run killed mid-line
        f.write(b'{"type":"snip')
    jl = JsonLines(out, append=True)
    jl.write({"type": "start"})
    jl.close()
    lines = out.read_text().splitlines()
    assert lines[-2] == '{"type":"snip' and json.loads(lines[-1]) == {"type": "start"}
    JsonLines(out).close()  # without --append the file starts over
    assert out.read_text() == ""


def test_timeline_is_replaced_atomically(tmp_path):
    path = tmp_path / "timeline.png"
    plot = TimelinePlot(path, threshold=0.5, release=0.4, title="cam / mil", every=3, span=8)
    t0 = 1.8e9
    for i in range(20):
        plot.add(t0 + i, (i % 10) / 10, 0.5, alert_on=7 <= i <= 12)
        if i == 10:
            plot.add_gap(t0 + 10.2, t0 + 10.8)
    plot.close(note="ended")
    assert plot.writes >= 2  # redrawn on the way, and once at the end
    assert png(path).shape[:2] == (300, 1000)
    assert sorted(os.listdir(tmp_path)) == ["timeline.png"]  # no temporaries left
    assert len(plot._t) == 8  # the last `span` snippets only
