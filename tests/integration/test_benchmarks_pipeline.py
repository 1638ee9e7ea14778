"""The whole DAG through Snakemake on fabricated 30-video slices of UCF-Crime, ShanghaiTech and
XD-Violence: the shipped list files cut down to 30 videos, fake published features in each
family's official file names, imported, ground truth, training with "best on test", evaluation
and the tables.

The run's config is the shipped one (the Snakefile's config files, merged) with the three
benchmark entries pointed at the slices and narrowed to MIL, passed whole with
``--replace-workflow-config``: narrowing a shipped dataset drops mapping entries (UCF-Crime's
``method_overrides.s3r``, XD-Violence's CLIP import and test views), which a merged ``--configfile``
cannot do."""
import json
import math
import os
import re
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from configs import merged_config
from published_features import fabricate_published_features
from tiny_dag import make_workdir
from wsvad_core.data.benchmarks import benchmark_videos, dataset_files
from wsvad_core.features.importers import video_feature_paths

pytestmark = pytest.mark.slow
BENCHMARKS = ("ucf_crime", "shanghaitech", "xd_violence")


def _mentions(line: str, vid: str) -> bool:
    return re.search(rf"(^|[/\\\s,]){re.escape(vid)}(_i3d|__\d|\.mp4|[\s,]|$)", line) is not None


def make_slice(cfg: dict, name: str, work: Path, per_group=(8, 7, 8, 7), seed=0) -> dict:
    """The dataset entry of a 30-video slice: its list files (official formats, cut to the
    videos kept) under work/<name>/lists and fake features under work/<name>/features/<fs>.
    Test videos are the shortest of each label; T = ceil(n/16) where the lists give n."""
    ds = json.loads(json.dumps(cfg["datasets"][name]))
    files = dataset_files(ds)
    videos = benchmark_videos(ds["layout"], files)
    keep = []
    for (split, label), n in zip([("train", 1), ("train", 0), ("test", 1), ("test", 0)], per_group):
        group = [v for v in videos if (v.split, v.label) == (split, label)]
        keep += sorted(group, key=lambda v: v.n_frames if v.n_frames > 0 else 0)[:n]
    ids = {v.video_id for v in keep}
    lists = work / name / "lists"
    lists.mkdir(parents=True)
    for path in files.values():
        if path.is_dir():  # ShanghaiTech's test_frame_mask folder
            (lists / path.name).mkdir()
            for f in path.glob("*.npy"):
                if f.stem in ids:
                    (lists / path.name / f.name).write_bytes(f.read_bytes())
            continue
        lines = [ln for ln in path.read_text().splitlines() if ln.strip()]
        header = lines[:1] if lines and "," in lines[0] and not any(_mentions(lines[0], v) for v in ids) else []
        kept = [ln for ln in lines if any(_mentions(ln, v) for v in ids)]
        (lists / path.name).write_text("\n".join(header + kept) + "\n")
    ds["annotation_dir"] = str(lists)
    sliced = benchmark_videos(ds["layout"], dataset_files(ds))
    assert {v.video_id for v in sliced} == ids
    rng = np.random.default_rng(seed)
    t = {v.video_id: math.ceil(v.n_frames / 16) if v.n_frames > 0 else int(rng.integers(8, 24))
         for v in sliced}
    if ds["layout"] == "xd_violence":  # no frame counts: cover each annotated interval
        from wsvad_core.data.annotations import parse_xd_violence_annotation

        ann = parse_xd_violence_annotation(files["test_annotation"])
        t.update({v: max(e // 16 + 2 for _, e in iv) for v, iv in ann.items() if v in t})
    for fs, spec in ds["import_features"].items():
        spec["root"] = str(work / name / "features" / fs)
        fabricate_published_features([v.as_row() for v in sliced], spec, t, seed=seed, abnormal_shift=0.5)
    ds.update(n_shards=1, seeds=[0], methods=["mil"],
              method_overrides={"mil": {"max_steps": 8, "batch_size": 4, "eval_every": 4}})
    ds.pop("dictionary", None)  # S3R's, and S3R does not run here
    ds["snippets"] = t  # for the assertions; removed before the config is written
    return ds


def smk(snakemake_bin, repo, work, *args):
    """snakemake ... [flags] -- tables (list-valued options would swallow the target)."""
    cmd = [snakemake_bin, "--snakefile", str(repo / "Snakefile"), "--directory", str(work),
           "--configfile", str(work / "benchmarks.yaml"), "--replace-workflow-config", "--cores", "2",
           "--resources", "gpu=1", *args, "--", "tables"]
    return subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          env={**os.environ, "WSVAD_DEVICE": "cpu"})


@pytest.fixture(scope="module")
def sliced_run(repo, snakemake_bin, tmp_path_factory):
    work = make_workdir(tmp_path_factory.mktemp("benchmarks"))
    cfg = merged_config()
    snippets = {}
    # one feature set per family: all three on UCF-Crime, one each on the others (fewer jobs)
    xd = cfg["datasets"]["xd_violence"]
    xd["feature_sets"] = ["xd_i3d"]
    xd["import_features"].pop("vadclip_vitb16")
    xd.get("test_views", {}).pop("vadclip_vitb16", None)
    for name in BENCHMARKS:
        cfg["datasets"][name] = make_slice(cfg, name, work)
        snippets[name] = cfg["datasets"][name].pop("snippets")
    cfg["run_datasets"] = list(BENCHMARKS)
    (work / "benchmarks.yaml").write_text(yaml.safe_dump(cfg))

    # a missing published file fails the dry run, naming the video and the file
    spec = cfg["datasets"]["ucf_crime"]["import_features"]["deepmil_i3d"]
    from wsvad_core.features.importers import normalize_import_spec

    victim = next(v for v in benchmark_videos("ucf_crime", dataset_files(cfg["datasets"]["ucf_crime"]))
                  if v.split == "test")
    gone = video_feature_paths(victim.as_row(), normalize_import_spec(spec))[4]
    data = gone.read_bytes()
    gone.unlink()
    dry = smk(snakemake_bin, repo, work, "-n")
    gone.write_bytes(data)

    res = smk(snakemake_bin, repo, work)
    assert res.returncode == 0, res.stdout[-6000:]
    return work, cfg, snippets, dry, (victim.video_id, gone.name)


def test_dry_run_names_missing_videos(sliced_run):
    _, _, _, dry, (video, file_name) = sliced_run
    assert dry.returncode != 0
    assert video in dry.stdout and file_name in dry.stdout and "missing feature files" in dry.stdout


def test_tables_label_selection_provenance_and_reported(sliced_run):
    work, cfg, _, _, _ = sliced_run
    for name in BENCHMARKS:
        table = pd.read_csv(work / f"results/tables/{name}.csv")
        fsets = cfg["datasets"][name]["feature_sets"]
        assert len(table) == 2 * len(fsets)  # one row per feature set and selection
        assert set(table["selection"]) == {"last", "best"}
        layouts = {fs: cfg["datasets"][name]["import_features"][fs]["file_layout"] for fs in fsets}
        assert dict(zip(table["feature_set"], table["weights"])) == \
            {fs: f"published:{lay}" for fs, lay in layouts.items()}
        assert table["auc_mean"].between(0, 1).all() and table["video_f1_mean"].notna().all()
        md = (work / f"results/tables/{name}.md").read_text()
        assert all(f"| mil | {fs} | published:{layouts[fs]} | {sel} | 1 |" in md
                   for fs in fsets for sel in ("last", "best"))
        assert all(lay in md for lay in layouts.values())
        tex = (work / f"results/tables/{name}.tex").read_text()
        assert tex.startswith(r"\begin{tabular}") and "best on test" in tex and "last step" in tex
    ucf = (work / "results/tables/ucf_crime.md").read_text()
    assert "75.41 AUC, c3d [1]" in ucf and "Sultani" in ucf  # MIL's published number, with its source
    assert "Per-class frame AUC" in ucf


def test_ground_truth_and_protocol_per_family(sliced_run):
    """The scoring protocol (test views, primary metric) reaches evaluation as an argument of the
    rule (no longer inside the GT file); metrics.json says what was used, and the feature family."""
    work, cfg, snippets, _, _ = sliced_run
    from wsvad_core.data.ground_truth import load_ground_truth

    gt = load_ground_truth(work / "results/ucf_crime/gt/rtfm_i3d_r50.npz")
    assert sum(len(g) for g in gt.values()) == 16 * sum(snippets["ucf_crime"][v] for v in gt)
    xd = json.loads((work / "results/xd_violence/runs/mil/xd_i3d/seed0/metrics.json").read_text())
    assert xd["primary_metric"] == "ap_trapz" and xd["test_views"] is None and xd["family"] == "kinetics_i3d"
    # VadCLIP's UCF-Crime test crop (file __5) by its name
    m = json.loads((work / "results/ucf_crime/runs/mil/vadclip_vitb16/seed0/metrics.json").read_text())
    assert m["test_views"] == ["flip_center"] and m["family"] == "vadclip_vitb16"
    assert m["primary_metric"] == "auc" and set(m["selections"]) == {"last", "best"}
    assert m["selections"]["best"]["step"] in (4, 8) and m["selections"]["last"]["step"] == 8
    assert set(m["per_class_auc"]) <= {"Abuse", "Arrest", "Arson", "Assault", "Burglary", "Explosion", "Fighting",
                                       "RoadAccidents", "Robbery", "Shooting", "Shoplifting", "Stealing", "Vandalism"}
    sh = load_ground_truth(work / "results/shanghaitech/gt/rtfm_i3d_r50.npz")
    assert sum(1 for g in sh.values() if g.any()) == 8  # the 8 abnormal test videos of the slice
    log = pd.read_csv(work / "results/xd_violence/runs/mil/xd_i3d/seed0/train_log.csv")
    assert log["test_score"].notna().sum() == 2  # scored every 4 of 8 steps


def test_rerun_is_a_no_op(sliced_run, repo, snakemake_bin):
    work = sliced_run[0]
    res = smk(snakemake_bin, repo, work, "-n")
    assert "Nothing to be done" in res.stdout, res.stdout[-3000:]
