"""The `wsvad` command: `score` reproduces a run's own evaluation on one of its test videos,
`info` summarises a store, `--quiet` silences progress, bad inputs give one-line errors."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import zarr

from synthetic import write_frames  # before decord: the two ffmpeg builds crash a process that imports av second
from tiny_dag import tiny_dataset, tiny_run, tiny_store
from wsvad_core.cli import main, score_video
from wsvad_core.data.manifest import read_manifest


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    ds = tiny_dataset(root)
    store = tiny_store(ds, root / "rtfm_i3d_r50.zarr")
    run_dir = root / "runs" / "mil" / "rtfm_i3d_r50" / "seed0"
    tiny_run(ds, store, run_dir)
    test = read_manifest(ds["manifest"]).query("split == 'test' and label == 1").iloc[0]
    return {"ds": ds, "store": store, "run": run_dir, "video": Path(test["path"]), "video_id": test["video_id"]}


def test_score_reproduces_the_runs_evaluation(run, tmp_path, capsys):
    out = tmp_path / "out" / "v.json"
    assert main(["score", str(run["video"]), "--run", str(run["run"]), "--out", str(out), "--device", "cpu"]) == 0
    assert "extract i3res50" in capsys.readouterr().err  # the progress bar of the long step
    saved = json.loads(out.read_text())
    with np.load(run["run"] / "scores.npz") as z:
        expected = z[f"snippet/{run['video_id']}"]
    # same recipe, same float16 store round trip, same model: the very scores of the evaluation
    np.testing.assert_allclose(saved["snippet_scores"], expected, rtol=0, atol=1e-6)
    assert saved["method"] == "mil" and saved["feature_set"] == "rtfm_i3d_r50" and saved["weights"] == "random-init"
    assert saved["n_frames"] == 32 and len(saved["frame_scores"]) == 32 and saved["n_snippets"] == 4
    # frame scores repeat each snippet score over its 8 frames
    assert np.allclose(np.asarray(saved["frame_scores"]).reshape(4, 8), np.asarray(saved["snippet_scores"])[:, None])
    png = Path(saved["timeline_png"])
    assert png == out.parent / f"{run['video'].stem}.timeline.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in out.parent.iterdir()) == sorted([out.name, png.name])  # no temporaries


def test_quiet_and_the_console_script(run, tmp_path, capsys):
    out = tmp_path / "q.json"
    rec = score_video(run["video"], run["run"], out, device="cpu", progress=False)
    assert rec["scores_json"] == str(out) and out.exists()
    assert main(["score", str(run["video"]), "--run", str(run["run"]), "--out", str(out), "--quiet"]) == 0
    captured = capsys.readouterr()
    assert captured.err == ""  # no progress bar, no log (not even the random-init warning)
    assert "mil / rtfm_i3d_r50: 32 frames" in captured.out and str(out) in captured.out
    exe = Path(sys.executable).with_name("wsvad")
    if not exe.exists():
        pytest.fail(f"{exe} missing: the console script comes with `pip install -e .` (scripts/setup.sh)")
    res = subprocess.run([str(exe), "info", str(run["store"]), "--quiet"], capture_output=True, text=True)
    assert res.returncode == 0 and res.stderr == "", res.stderr
    assert "videos     6" in res.stdout
    res = subprocess.run([str(exe), "info", str(run["store"]), "--check"], capture_output=True, text=True)
    assert res.returncode == 0 and "check:" in res.stderr  # the bar of the long step


def test_info_summarises_the_store(run, capsys):
    assert main(["info", str(run["store"]), "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "backbone   i3res50 (i3d; family rtfm_i3d_r50), 2048-d, 1 view(s): center" in text
    assert "videos     6: test 2, train 4; abnormal 3, normal 3" in text
    assert "snippets   24 (per video min 4, median 4, max 4)" in text
    assert "RANDOM-INIT" in text
    assert main(["info", str(run["store"]), "--json", "--check", "--quiet"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["videos"] == 6 and info["dim"] == 2048 and info["non_finite"] == {}
    assert info["recipe"]["clip_len"] == 8 and info["provenance"]["weights"] == "random-init"
    assert (info["kind"], info["family"], info["views"]) == ("i3d", "rtfm_i3d_r50", ["center"])


def test_info_check_finds_damaged_arrays(run, tmp_path, capsys):
    store = Path(shutil.copytree(run["store"], tmp_path / "copy.zarr"))
    z = zarr.open_array(str(store / run["video_id"]), mode="r+")
    z[0, 1, :3] = np.inf
    assert main(["info", str(store), "--check", "--quiet"]) == 1
    assert f"1 video(s) with NaN/inf: {run['video_id']} (3)" in capsys.readouterr().out


def test_info_check_accepts_float32_stores(tmp_path, capsys):
    from wsvad_core.features.store import finalize_store, write_video_array

    store = tmp_path / "f32.zarr"
    write_video_array(store, "v", np.ones((1, 3, 4), np.float32),
                      {"n_frames": 48, "fps": 25.0, "label": 0, "split": "test"}, dtype="float32")
    finalize_store(store, {"recipe": {"store_dtype": "float32", "kind": "i3d"}, "views": ["center"]})
    assert main(["info", str(store), "--check", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "check      all values finite" in out and "not written by wsvad" not in out


@pytest.mark.parametrize("case", ["corrupt video", "missing video", "too short video", "not a run", "not a store"])
def test_bad_inputs_give_one_line_errors(run, tmp_path, capsys, case):
    out = tmp_path / "o.json"
    if case == "corrupt video":
        bad = tmp_path / "bad.mp4"
        bad.write_bytes(run["video"].read_bytes()[:48] + b"\0" * 4000)
        argv, named = ["score", str(bad), "--run", str(run["run"]), "--out", str(out)], str(bad)
    elif case == "missing video":
        argv, named = ["score", str(tmp_path / "nope.mp4"), "--run", str(run["run"])], "nope.mp4: file does not exist"
    elif case == "too short video":
        short = write_frames(tmp_path / "short.mp4", 5)  # the run's recipe has 8-frame snippets
        argv, named = ["score", str(short), "--run", str(run["run"]), "--out", str(out)], \
            f"{short}: 5 frame(s): shorter than one 8-frame snippet of the run's feature recipe, so there is nothing " \
            "to score"
    elif case == "not a run":
        argv, named = ["score", str(run["video"]), "--run", str(tmp_path), "--out", str(out)], \
            f"{tmp_path}/checkpoint.pt: no such checkpoint"
    else:
        argv, named = ["info", str(tmp_path)], f"feature store {tmp_path}: no zarr.json"
    assert main([*argv, "--quiet"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"wsvad {argv[0]}: error: ") and named in err and err.count("\n") == 1, err
    assert "list" not in err.replace(str(tmp_path), "")  # one video, no dataset: no advice to edit its lists
    assert not out.exists() and not list(tmp_path.glob("*.png"))
