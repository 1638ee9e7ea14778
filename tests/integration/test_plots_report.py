"""The plots and the Snakemake report of a real run of the tiny DAG, the report rendered in a real
headless browser (Debian's chromium, from scripts/install_test_tools.sh; skipped, saying why,
without it). Set WSVAD_SCREENSHOTS=<folder> to keep the browser's screenshots for a look."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from pngs import png, shaded_columns
from tiny_dag import DATASET, make_workdir, smk
from wsvad_core.data.manifest import read_manifest

pytestmark = pytest.mark.slow


PLOTS = f"results/plots/{DATASET}"


@pytest.fixture(scope="module")
def finished(repo, snakemake_bin, tmp_path_factory):
    work = make_workdir(tmp_path_factory.mktemp("report"))
    res = smk(snakemake_bin, repo, work)
    assert res.returncode == 0, res.stdout[-5000:]
    return work


def test_pipeline_writes_the_plots(finished):
    plots = finished / PLOTS
    manifest = read_manifest(finished / f"results/{DATASET}/manifest.csv")
    test_ids = sorted(manifest.loc[manifest["split"] == "test", "video_id"])
    timelines = plots / "mil/rtfm_i3d_r50/seed0/timelines"
    assert sorted(p.stem for p in timelines.glob("*.png")) == test_ids
    with np.load(finished / f"results/{DATASET}/gt/rtfm_i3d_r50.npz") as gt:
        for vid in test_ids:  # the abnormal video's timeline is shaded, the normal one's is not
            assert (len(shaded_columns(png(timelines / f"{vid}.png"))) > 0) == bool(gt[vid].any()), vid
    png(plots / "mil/rtfm_i3d_r50/seed0/curves.png")
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


def test_report_renders_in_a_headless_browser(finished, repo, snakemake_bin, tmp_path):
    report = finished / "report.html"
    res = smk(snakemake_bin, repo, finished, "--report", str(report))
    assert res.returncode == 0, res.stdout[-3000:]
    text = report.read_text()
    for needle in (f"{PLOTS}/table.png", f"{PLOTS}/table.html", f"results/tables/{DATASET}.csv",
                   f"{PLOTS}/mil/rtfm_i3d_r50/seed0/curves.png", "timelines/Explosion002_x264.png",
                   f"{PLOTS}/settings.html", "Run settings: checkpoint selection"):
        assert needle in text, needle
    browser = chromium()
    if browser is None:
        pytest.skip("chromium is not installed (bash scripts/install_test_tools.sh installs it): "
                    "the report was built but not rendered")
    shots = Path(os.environ.get("WSVAD_SCREENSHOTS") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    manifest = read_manifest(finished / f"results/{DATASET}/manifest.csv")
    normal = manifest.query("split == 'test' and label == 0")["video_id"].iloc[0]
    timelines = f"{PLOTS}/mil/rtfm_i3d_r50/seed0/timelines"
    views = {
        "home": ("", ["Tables", "Curves", "Timelines", "Settings", f"demo_dataset_{DATASET}"]),
        "table": (show("Tables", f"{PLOTS}/table.html"), ["bar chart", "table (csv)", "<iframe"]),
        "timeline": (show("Timelines", f"{timelines}/Explosion002_x264.png"), ["Explosion002_x264", normal, "<img"]),
        "curves": (show("Curves", f"{PLOTS}/mil/rtfm_i3d_r50/seed0/curves.png"), ["rtfm_i3d_r50", "<img"]),
        "settings": (show("Settings", f"{PLOTS}/settings.html"), ["run settings", "<iframe"]),
    }
    for name, (js, expected) in views.items():
        dom = render(browser, report, js, shots / f"report_{name}.png", tmp_path / "chromium")
        for needle in expected:
            assert needle in dom, f"{name}: {needle!r} not in the rendered page"
        img = png(shots / f"report_{name}.png")
        assert img.std() > 0.05, f"{name}: the screenshot is blank"
