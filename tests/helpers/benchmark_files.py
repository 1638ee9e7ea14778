"""The benchmark list and annotation files shipped in ``data/benchmarks/`` (their sources:
``data/benchmarks/README.md``). Tests read them from there only; a missing file is an error of
the checkout, never a reason to skip."""
from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BENCHMARKS = REPO / "data" / "benchmarks"

# the shipped benchmarks' list files, as the dataset entries of config/benchmarks.yaml name them
FILES = {
    "ucf_crime": {"annotation_dir": BENCHMARKS / "ucf_crime", "train_list": "Anomaly_Train.txt",
                  "test_annotation": "UCF_Annotation.txt", "test_list": "ucf-i3d-test.list"},
    "shanghaitech": {"annotation_dir": BENCHMARKS / "shanghaitech", "train_list": "shanghai-i3d-train-10crop.list",
                     "test_list": "shanghai-i3d-test-10crop.list", "test_annotation": "test_frame_mask",
                     "test_frame_counts": "SH_Test_num_frames.csv", "abnormal_train_list": "SH_Train_abnormal.txt"},
    "xd_violence": {"annotation_dir": BENCHMARKS / "xd_violence", "train_list": "XD_Train_videos.txt",
                    "test_list": "XD_Test_videos.txt", "test_annotation": "annotations.txt"},
}


def bench(rel: str) -> Path:
    """``data/benchmarks/<rel>``; fails (does not skip) when the checkout lacks it."""
    p = BENCHMARKS / rel
    assert p.exists(), f"{p} is missing from the checkout (data/benchmarks/README.md lists what ships)"
    return p


def benchmark_files(layout: str) -> dict[str, Path]:
    """The list/annotation files of a shipped benchmark, resolved as the workflow resolves them."""
    from wsvad_core.data.benchmarks import dataset_files

    return dataset_files({"root": "/no/videos", **FILES[layout]})
