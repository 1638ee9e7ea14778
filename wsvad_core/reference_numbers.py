"""The numbers the papers and official logs report, for the "reported" column of the result
tables. Each entry names its source: a paper table, or the official repository's training record
(copies in ``../shared/benchmarks/reference_logs``). Values are in %. ``metric`` uses wsvad's
names: ``auc`` frame ROC-AUC, ``ap_trapz`` ``auc(recall, precision)`` (what RTFM, S3R, MGFN, UR-DMU
and BN-WVAD print as AP), ``ap_step`` sklearn's ``average_precision_score`` (VadCLIP).
``features`` is the feature family the number was obtained on (``c3d``: none of ours)."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Reported:
    dataset: str
    method: str
    features: str
    metric: str
    value: float
    source: str


REPORTED = (
    Reported('ucf_crime', 'mil', 'c3d', 'auc', 75.41,
             'Sultani, Chen, Shah, CVPR 2018, Table 2 (C3D features)'),
    Reported('ucf_crime', 'rtfm', 'rtfm_i3d_r50', 'auc', 84.30,
             'Tian et al., RTFM, ICCV 2021, Table 2 (I3D RGB)'),
    Reported('ucf_crime', 's3r', 'rtfm_i3d_r50', 'auc', 85.99,
             'louisYen/S3R logs, ucf-crime i3d .score, best step 2935'),
    Reported('ucf_crime', 'mgfn', 'rtfm_i3d_r50', 'auc', 86.98,
             'Chen et al., MGFN, AAAI 2023, arXiv 2211.15098 (value as on paperswithcode.com)'),
    Reported('ucf_crime', 'urdmu', 'kinetics_i3d', 'auc', 86.97,
             'henrryzh1/UR-DMU outputs/ucf_best_record_2022.txt, step 1430'),
    Reported('ucf_crime', 'bnwvad', 'kinetics_i3d', 'auc', 87.24,
             'Zhou et al., BN-WVAD, arXiv 2311.15367 abstract (TCSVT 2024; README: XD only)'),
    Reported('ucf_crime', 'vadclip', 'vadclip_vitb16', 'auc', 88.02,
             'Wu et al., VadCLIP, AAAI 2024 (README and Table 1)'),
    Reported('shanghaitech', 'rtfm', 'rtfm_i3d_r50', 'auc', 97.21,
             'Tian et al., RTFM, ICCV 2021, Table 1 (I3D RGB)'),
    Reported('shanghaitech', 's3r', 'rtfm_i3d_r50', 'auc', 97.40,
             'louisYen/S3R logs, shanghaitech i3d .score, best step 8645 (97.395)'),
    Reported('xd_violence', 'rtfm', 'rtfm_i3d_r50', 'ap_trapz', 77.81,
             'Tian et al., RTFM, ICCV 2021, Table 3 (I3D RGB)'),
    Reported('xd_violence', 's3r', 'rtfm_i3d_r50', 'ap_trapz', 80.26,
             'Wu, Hsieh et al., S3R, ECCV 2022, RGB without audio (value as on '
             'paperswithcode.com; louisYen/S3R has no XD-Violence log)'),
    Reported('xd_violence', 'mgfn', 'rtfm_i3d_r50', 'ap_trapz', 80.11,
             'Chen et al., MGFN, AAAI 2023, arXiv 2211.15098 (value as on paperswithcode.com)'),
    Reported('xd_violence', 'urdmu', 'kinetics_i3d', 'ap_trapz', 81.66,
             'henrryzh1/UR-DMU outputs/xd_best_record_2022.txt, step 840'),
    Reported('xd_violence', 'bnwvad', 'kinetics_i3d', 'ap_trapz', 84.93,
             'cool-xuan/BN-WVAD logs/xd_best_record_2022.txt, step 900'),
    Reported('xd_violence', 'vadclip', 'vadclip_vitb16', 'ap_step', 84.51,
             'Wu et al., VadCLIP, AAAI 2024 (README, Table 2); average_precision_score'),
)


def reported_for(dataset: str, method: str, feature_set: str) -> Reported | None:
    """The reported number for a table row: on the same feature family if the paper used it,
    else the method's number on the dataset with other features (its ``features`` says which)."""
    hits = [r for r in REPORTED if r.dataset == dataset and r.method == method]
    exact = [r for r in hits if r.features == feature_set]
    return (exact or hits or [None])[0]
