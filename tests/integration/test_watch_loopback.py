"""`wsvad watch` on loopback sources only (127.0.0.1, a local file): a test video of the tiny
dataset remuxed to MPEG-TS and served over TCP and HTTP, written to a file that grows while it is
read, cut mid-way and served again (the gap is recorded), and stopped by SIGTERM. The live
scores of a finished stream are the windowed offline scores of the same file's stored features
(for the causal MIL: the run's own evaluation scores)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from loopback import GrowingFile, HttpStream, TcpStream, ts_bytes
from tiny_dag import tiny_dataset, tiny_run, tiny_store
from wsvad_core.cli import main
from wsvad_core.data.manifest import read_manifest
from wsvad_core.features.store import open_store
from wsvad_core.live.scoring import windowed_scores
from wsvad_core.live.watch import watch
from wsvad_core.runs import build_model
from wsvad_core.scoring import load_run

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
CLIP = 8  # the tiny recipe's snippet: 8 frames, stride 8; the test video has 32 frames


@pytest.fixture(scope="module")
def live(tmp_path_factory, one_thread):
    root = tmp_path_factory.mktemp("watch")
    ds = tiny_dataset(root)
    store = tiny_store(ds, root / "rtfm_i3d_r50.zarr")
    runs = {}
    for method in ("mil", "pel4vad"):  # causal, and one that mixes snippets along time
        runs[method] = root / "runs" / method / "rtfm_i3d_r50" / "seed0"
        tiny_run(ds, store, runs[method], method=method, max_steps=4)
    test = read_manifest(ds["manifest"]).query("split == 'test' and label == 1").iloc[0]
    feats = np.asarray(open_store(store)[test["video_id"]], dtype=np.float32)  # (views, T, D)
    return {"root": root, "runs": runs, "video": Path(test["path"]), "video_id": test["video_id"],
            "feats": feats, "ts": ts_bytes(test["path"])}


def offline(live, method: str, window: int | None = None) -> np.ndarray:
    record, state = load_run(live["runs"][method])
    return windowed_scores(build_model(record, state)[0], live["feats"], window)


def records(path: Path) -> list[dict]:
    lines = path.read_text().splitlines()
    return [json.loads(x) for x in lines]  # every line whole


def snippets(recs: list[dict]) -> list[dict]:
    return [r for r in recs if r["type"] == "snippet"]


@pytest.mark.parametrize("method, window", [("mil", None), ("pel4vad", 2)])
def test_a_finished_tcp_stream_scores_as_the_file_offline(live, tmp_path, method, window):
    server = TcpStream([live["ts"]])
    out, png = tmp_path / "w.jsonl", tmp_path / "w.png"
    try:
        end = watch(server.url, live["runs"][method], out, png, window=window, reconnect_timeout=0,
                    plot_every=2, progress=False, device="cpu")
    finally:
        server.close()
    recs = records(out)
    start, snips = recs[0], snippets(recs)
    assert start["type"] == "start" and start["kind"] == "stream" and start["stream"]["container"] == "mpegts"
    assert start["causal"] is (method == "mil") and start["window"] == (None if method == "mil" else 2)
    assert recs[-1] == {**end, "type": "end"} and end["reason"] == "source over: end of stream"
    assert [s["frames"] for s in snips] == [[k * CLIP, k * CLIP + CLIP - 1] for k in range(4)]
    assert [s["stream_s"] for s in snips] == [pytest.approx([k * 0.32, (k + 1) * 0.32]) for k in range(4)]  # 25 fps
    for s in snips:
        assert s["alert"] in ("off", "pending", "on") and s["latency_ms"] >= s["compute_ms"] >= 0
        assert {"wall_time", "score", "smoothed"} <= set(s)
    # the same frames, features and model: the windowed offline scores (W = 2 wraps the ring)
    live_scores = np.array([s["score"] for s in snips])
    np.testing.assert_allclose(live_scores, offline(live, method, window), rtol=0, atol=1e-5)
    if method == "mil":  # causal: the run's own whole-video evaluation scores
        with np.load(live["runs"]["mil"] / "scores.npz") as z:
            np.testing.assert_allclose(live_scores, z[f"snippet/{live['video_id']}"], rtol=0, atol=1e-5)
    # smoothed: a causal moving average of 3
    np.testing.assert_allclose([s["smoothed"] for s in snips],
                               [live_scores[max(0, k - 2):k + 1].mean() for k in range(4)], atol=1e-9)
    assert png.read_bytes()[:8] == PNG_MAGIC
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.jsonl", "w.png"]  # no temporaries left


def test_an_http_stream(live, tmp_path):
    server = HttpStream(live["ts"])
    try:
        end = watch(server.url, live["runs"]["mil"], tmp_path / "h.jsonl", window=None, reconnect_timeout=0,
                    progress=False, device="cpu")
    finally:
        server.close()
    snips = snippets(records(tmp_path / "h.jsonl"))
    assert end["snippets"] == 4 and end["gaps"] == 0
    np.testing.assert_allclose([s["score"] for s in snips], offline(live, "mil"), rtol=0, atol=1e-5)


def test_a_recording_read_while_it_grows(live, tmp_path):
    rec = GrowingFile(tmp_path / "camera.ts", live["ts"], pace=0.05)  # ~0.35 s of writing
    out = tmp_path / "g.jsonl"
    t0 = time.monotonic()
    # 2 s without new bytes ends it: 40 times the writer's pace, slack for a loaded machine
    end = watch(str(rec.path), live["runs"]["mil"], out, timeout=2.0, progress=False, device="cpu")
    rec.join()
    assert rec.appends >= 5  # it really grew while being read
    assert end["reason"] == "source over: no new data for 2 s" and end["frames"] == 32
    assert time.monotonic() - t0 < 15
    snips = snippets(records(out))
    assert records(out)[0]["kind"] == "file"
    np.testing.assert_allclose([s["score"] for s in snips], offline(live, "mil"), rtol=0, atol=1e-5)


def test_a_stream_cut_mid_way_is_reopened_and_the_gap_recorded(live, tmp_path):
    data = live["ts"]
    cut = len(data) // 2 + 97  # mid-packet: the frame being sent is lost
    # connection 1 drops mid-way; connection 2 (the camera back) sends the whole video; then
    # nothing listens, and the watch gives up after --reconnect-timeout
    server = TcpStream([data[:cut], data])
    out, png = tmp_path / "c.jsonl", tmp_path / "c.png"
    try:
        end = watch(server.url, live["runs"]["mil"], out, png, reconnect_timeout=1.5, plot_every=1,
                    progress=False, device="cpu")
    finally:
        server.close()
    recs = records(out)
    gaps = [r for r in recs if r["type"] == "gap"]
    assert server.connections == 2 and len(gaps) == 1 and end["gaps"] == 1
    gap = gaps[0]
    assert gap["reason"] == "end of stream" and gap["attempts"] >= 1 and gap["seconds"] >= 0.4  # backoff 0.5 s
    snips = snippets(recs)
    before = [s for s in snips if s["frames"][1] <= gap["after_frame"]]
    after = [s for s in snips if s["frames"][0] > gap["after_frame"]]
    assert len(before) + len(after) == len(snips) and len(after) == 4 and 1 <= len(before) < 4
    # the unfinished snippet at the cut is dropped; the new segment's snippets start at its first frame
    n_before = gap["after_frame"] + 1
    assert gap["frames_dropped"] == n_before - len(before) * CLIP
    assert [s["frames"] for s in after] == [[n_before + k * CLIP, n_before + (k + 1) * CLIP - 1] for k in range(4)]
    assert recs.index(gap) < recs.index(after[0])
    expected = offline(live, "mil")
    np.testing.assert_allclose([s["score"] for s in before], expected[:len(before)], rtol=0, atol=1e-5)
    np.testing.assert_allclose([s["score"] for s in after], expected, rtol=0, atol=1e-5)
    assert "not back after" in end["reason"] and end["frames"] == n_before + 32
    assert png.read_bytes()[:8] == PNG_MAGIC


def test_sigterm_flushes_and_closes_every_output(live, tmp_path):
    # a stream that stays open after the video: the watch would go on until stopped
    server = TcpStream([live["ts"]], pace=0.01, hold=True)
    out, png = tmp_path / "s.jsonl", tmp_path / "s.png"
    exe = Path(sys.executable).with_name("wsvad")
    env = {**os.environ, "WSVAD_DEVICE": "cpu", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([str(exe), "watch", server.url, "--run", str(live["runs"]["mil"]), "--out", str(out),
                             "--plot", str(png), "--plot-every", "100", "--timeout", "30", "-q"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline and proc.poll() is None:
            if out.exists() and '"type":"snippet"' in out.read_text():
                break
            time.sleep(0.1)
        assert proc.poll() is None, proc.stderr.read()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
        server.close()
    assert proc.returncode == 0, err
    recs = records(out)
    assert recs[-1]["type"] == "end" and recs[-1]["reason"] == "SIGTERM"
    assert 1 <= recs[-1]["snippets"] == len(snippets(recs))
    assert png.read_bytes()[:8] == PNG_MAGIC  # drawn on the way out, though --plot-every was not reached
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.jsonl", "s.png"]


def test_a_wrong_source_or_run_is_named(live, tmp_path, capsys):
    port = TcpStream([])  # listens, then closes at once: nothing there
    port.close()
    url = f"tcp://127.0.0.1:{port.port}"
    assert main(["watch", url, "--run", str(live["runs"]["mil"]), "--out", str(tmp_path / "x.jsonl"), "-q"]) == 1
    err = capsys.readouterr().err
    assert url in err and "connection refused" in err.lower()
    missing = tmp_path / "no_such_run"
    assert main(["watch", url, "--run", str(missing), "-q"]) == 1
    assert str(missing) in capsys.readouterr().err
    bad = tmp_path / "notes.ts"
    bad.write_text("not a video\n" * 50)
    assert main(["watch", str(bad), "--run", str(live["runs"]["mil"]), "--timeout", "1", "-q"]) == 1
    err = capsys.readouterr().err
    assert str(bad) in err and "error" in err
    assert not (tmp_path / "x.jsonl").exists()  # nothing written for a source that never opened


def test_a_capture_device_input(live, tmp_path):
    # libavdevice's lavfi input stands in for a camera: the device path (--format), no network
    out = tmp_path / "d.jsonl"
    assert main(["watch", "testsrc2=size=64x48:rate=25:duration=1", "--format", "lavfi", "--run",
                 str(live["runs"]["mil"]), "--out", str(out), "--reconnect-timeout", "0", "-q"]) == 0
    recs = records(out)
    assert recs[0]["kind"] == "device" and recs[0]["fps"] == 25
    # 25 frames: 3 whole snippets and one of a single frame, padded by the t_rule (ceil_loop)
    assert [s["frames"] for s in snippets(recs)] == [[0, 7], [8, 15], [16, 23], [24, 24]]
    assert snippets(recs)[-1]["padded"] is True and recs[-1]["frames"] == 25
