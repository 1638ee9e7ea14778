"""Plots (timeline, ROC/PR, table bars) and the Snakemake report, rendered in a real headless
browser (Debian's chromium, from scripts/install_test_tools.sh; skipped, saying why, without it).
Set WSVAD_SCREENSHOTS=<folder> to keep the browser's screenshots for a look."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.image import imread

from wsvad_core.reporting.plots import (label_intervals, plot_curves, plot_table, plot_timeline, table_bars,
                                        table_html)

from tiny_dag import make_workdir, smk, tiny_config

GT_RGB = np.array([0xE4, 0x57, 0x2E]) / 255 * 0.22 + (1 - 0.22)  # the GT shade on white


def png(path: Path) -> np.ndarray:
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", path
    return imread(path)[..., :3]


def shaded_columns(img: np.ndarray) -> np.ndarray:
    """Columns where a third or more of the pixels have the ground-truth shade."""
    close = np.abs(img - GT_RGB).max(axis=-1) < 0.02
    return np.flatnonzero(close.mean(axis=0) > 0.3)


def test_label_intervals():
    assert label_intervals([0, 1, 1, 0, 0, 1]) == [(1, 2), (5, 5)]
    assert label_intervals(np.zeros(4)) == []
    assert label_intervals([1, 1]) == [(0, 1)]


def test_timeline_shades_exactly_the_ground_truth(tmp_path):
    scores = np.linspace(0, 1, 200)
    everything = shaded_columns(png(plot_timeline(scores, tmp_path / "all.png", gt=np.ones(200), fps=25)))
    gt = np.zeros(200, np.uint8)
    gt[50:100] = 1
    band = shaded_columns(png(plot_timeline(scores, tmp_path / "t.png", gt=gt, fps=25, title="v", threshold=0.5)))
    # the plot area is what a full shade covers (vertical grid lines cut a few columns out)
    left, width = everything[0], everything[-1] - everything[0] + 1
    span = band[-1] - band[0] + 1
    assert len(band) > 0.9 * span  # one band
    assert abs(span / width - 0.25) < 0.02  # frames 50..99 of 200
    assert abs((band[0] - left) / width - 0.25) < 0.02
    assert len(shaded_columns(png(plot_timeline(scores, tmp_path / "n.png", fps=25)))) == 0
    with pytest.raises(ValueError, match="200 frame scores but 10 ground-truth frames"):
        plot_timeline(scores, tmp_path / "x.png", gt=gt[:10])
    assert not (tmp_path / "x.png").exists()


def test_curves_and_table_plots(tmp_path):
    rng = np.random.default_rng(0)
    gt = {"a": np.r_[np.zeros(30), np.ones(20)].astype(np.uint8), "b": np.zeros(40, np.uint8)}
    scores = {"a": np.r_[rng.uniform(0, .6, 30), rng.uniform(.4, 1, 20)], "b": rng.uniform(0, .6, 40)}
    img = png(plot_curves(scores, gt, tmp_path / "c.png", title="run"))
    assert img.shape[1] > img.shape[0]  # two panels side by side
    with pytest.raises(KeyError, match="no frame scores for 1 test videos"):
        plot_curves({"a": scores["a"]}, gt, tmp_path / "bad.png")
    table = pd.DataFrame({"method": ["mil", "mil", "rtfm"], "feature_set": ["i3d_r50", "clip_vitb16", "i3d_r50"],
                          "selection": "last", "weights": "random-init", "seeds": [3, 3, 1],
                          **{f"{k}_{s}": [0.9, 0.8, 0.7] if s == "mean" else [0.01, 0.02, 0.0]
                             for k in ("auc", "ap_step", "ap_trapz", "auc_abnormal", "far_normal")
                             for s in ("mean", "std")}})
    png(plot_table(table, tmp_path / "t.png", title="demo"))
    html = table_html(table, tmp_path / "t.html", title="demo").read_text()
    assert html.count("<tr>") == 4 and "90.00 ± 1.00" in html and "random-init" in html



def test_table_bars_split_by_checkpoint_selection(tmp_path):
    """A benchmark table has a `last` and a `best` row per method × feature set: each gets its
    own, labelled bar; a table with one selection keeps one bar per feature set."""
    metrics = ("auc", "ap_step", "ap_trapz", "auc_abnormal", "far_normal")
    table = pd.DataFrame({"method": ["rtfm", "rtfm", "mil", "mil", "rtfm", "rtfm"],
                          "feature_set": ["i3d_r50"] * 4 + ["clip_vitb16"] * 2,
                          "selection": ["last", "best", "best", "last", "last", "best"],
                          "weights": "published", "seeds": 3,
                          **{f"{k}_mean": [0.80, 0.85, 0.70, 0.60, 0.75, 0.78] for k in metrics},
                          **{f"{k}_std": [0.01, 0.02, 0.03, 0.04, 0.05, 0.06] for k in metrics}})
    methods, series = table_bars(table, "auc")
    assert methods == ["mil", "rtfm"]
    got = {s["label"]: (s["mean"], s["std"]) for s in series}
    assert set(got) == {"i3d_r50 · last step", "i3d_r50 · best on test", "clip_vitb16 · last step",
                        "clip_vitb16 · best on test"}
    assert np.allclose(got["i3d_r50 · last step"], ([60, 80], [4, 1]))
    assert np.allclose(got["i3d_r50 · best on test"], ([70, 85], [3, 2]))
    assert np.isnan(got["clip_vitb16 · best on test"][0][0]) and got["clip_vitb16 · best on test"][0][1] == 78
    png(plot_table(table, tmp_path / "t.png", title="ucf"))
    _, last_only = table_bars(table[table["selection"] == "last"], "auc")
    assert [s["label"] for s in last_only] == ["clip_vitb16", "i3d_r50"]
    with pytest.raises(ValueError, match="not unique per method × feature_set × selection"):
        table_bars(pd.concat([table, table.iloc[:1]]), "auc")

# ------------------------------------------------------------------------ end to end, report

@pytest.fixture(scope="module")
def finished(repo, snakemake_bin, tmp_path_factory):
    work = make_workdir(tmp_path_factory.mktemp("report"), tiny_config(repo))
    res = smk(snakemake_bin, repo, work)
    assert res.returncode == 0, res.stdout[-5000:]
    return work


@pytest.mark.slow
def test_pipeline_writes_the_plots(finished):
    plots = finished / "results/plots/demo"
    manifest = pd.read_csv(finished / "results/demo/manifest.csv")
    test_ids = sorted(manifest.loc[manifest["split"] == "test", "video_id"])
    timelines = plots / "mil/i3d_r50/seed0/timelines"
    assert sorted(p.stem for p in timelines.glob("*.png")) == test_ids
    with np.load(finished / "results/demo/gt/i3d_r50.npz") as gt:
        for vid in test_ids:  # the abnormal video's timeline is shaded, the normal one's is not
            assert (len(shaded_columns(png(timelines / f"{vid}.png"))) > 0) == bool(gt[vid].any()), vid
    png(plots / "mil/i3d_r50/seed0/curves.png")
    png(plots / "table.png")
    assert "mil" in (plots / "table.html").read_text()
    # no temporaries left (Snakemake marks folder outputs with .snakemake_timestamp)
    assert [p.name for p in plots.rglob(".*")] == [".snakemake_timestamp"]
    settings = (plots / "settings.html").read_text()
    assert "crop_size: 32" in settings and "max_steps: 60" in settings


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def render(browser: str, report: Path, js: str, out: Path, profile: Path) -> str:
    """Open ``report`` with ``js`` run once the page has loaded; screenshot to ``out`` and
    return the DOM the scripts built (a page that did not render has no such DOM)."""
    html = report.read_text()
    cut = html.rindex("</body>")
    page = profile.parent / f"{out.stem}.html"
    page.write_text(html[:cut] + "<script>window.addEventListener('load', () => setTimeout(async () => {"
                    "const wait = ms => new Promise(r => setTimeout(r, ms));" + js + "}, 200));</script>"
                    + html[cut:])
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", f"--user-data-dir={profile}",
             "--window-size=1400,900", "--virtual-time-budget=8000"]
    for extra in ([f"--screenshot={out}"], ["--dump-dom"]):
        res = subprocess.run([browser, *flags, *extra, page.as_uri()], capture_output=True, text=True, timeout=180)
        assert res.returncode == 0, res.stderr[-2000:]
    return res.stdout


def show(category: str, path: str | None = None) -> str:
    js = f"app.showCategory({category!r}); await wait(300);"
    if path:
        js += (f"const r = results[{path!r}]; app.setView({{content: r.mime_type.startsWith('image') ? 'img' : 'html',"
               f" contentPath: r.data_uri, resultPath: {path!r}}});")
    return js


@pytest.mark.slow
def test_report_renders_in_a_headless_browser(finished, repo, snakemake_bin, tmp_path):
    report = finished / "report.html"
    res = smk(snakemake_bin, repo, finished, "--report", str(report))
    assert res.returncode == 0, res.stdout[-3000:]
    text = report.read_text()
    for needle in ("results/plots/demo/table.png", "results/plots/demo/table.html", "results/tables/demo.csv",
                   "results/plots/demo/mil/i3d_r50/seed0/curves.png", "timelines/Explosion002_x264.png",
                   "results/plots/demo/settings.html", "Run settings: checkpoint selection"):
        assert needle in text, needle
    browser = chromium()
    if browser is None:
        pytest.skip("chromium is not installed (bash scripts/install_test_tools.sh installs it): "
                    "the report was built but not rendered")
    shots = Path(os.environ.get("WSVAD_SCREENSHOTS") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    manifest = pd.read_csv(finished / "results/demo/manifest.csv")
    normal = manifest.query("split == 'test' and label == 0")["video_id"].iloc[0]
    timelines = "results/plots/demo/mil/i3d_r50/seed0/timelines"
    views = {
        "home": ("", ["Tables", "Curves", "Timelines", "Settings", "demo_dataset_demo"]),
        "table": (show("Tables", "results/plots/demo/table.html"), ["bar chart", "table (csv)", "<iframe"]),
        "timeline": (show("Timelines", f"{timelines}/Explosion002_x264.png"), ["Explosion002_x264", normal, "<img"]),
        "curves": (show("Curves", "results/plots/demo/mil/i3d_r50/seed0/curves.png"), ["i3d_r50", "<img"]),
        "settings": (show("Settings", "results/plots/demo/settings.html"), ["run settings", "<iframe"]),
    }
    for name, (js, expected) in views.items():
        dom = render(browser, report, js, shots / f"report_{name}.png", tmp_path / "chromium")
        for needle in expected:
            assert needle in dom, f"{name}: {needle!r} not in the rendered page"
        img = png(shots / f"report_{name}.png")
        assert img.std() > 0.05, f"{name}: the screenshot is blank"
