"""The numbers the papers and official logs report, for the "reported" column of the result
tables. Each entry names its source: a paper table, or the training record in the official
repository (file named in the source). Values are in %. ``metric`` uses wsvad's names: ``auc``
frame ROC-AUC, ``ap_trapz`` ``auc(recall, precision)`` (what RTFM, S3R, MGFN, UR-DMU and BN-WVAD
print as AP), ``ap_step`` sklearn's ``average_precision_score`` (VadCLIP).

``features`` is the feature family the number was obtained on: one of wsvad's families
(``rtfm_i3d_r50``, ``kinetics_i3d``, ``vadclip_vitb16``), or a label for features wsvad has no
family of: ``c3d``, ``clip_vitb16`` for CLIP ViT-B/16 features of the paper's own extraction
(not VadCLIP's published files), ``video_features_i3d`` for I3D features made with
v-iashin/video_features. A table row on another family than the paper's shows the
paper's number with its ``features`` beside it; a method whose paper has no number on a
benchmark gets none (the papers' numbers of methods implemented from the paper alone, such as
GS-MoE, are left out: wsvad's model is not theirs)."""
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
             'Chen et al., MGFN, AAAI 2023, arXiv 2211.15098, UCF-Crime comparison, I3D row '
             '(its Video Swin row: 86.67)'),
    Reported('ucf_crime', 'urdmu', 'kinetics_i3d', 'auc', 86.97,
             'henrryzh1/UR-DMU outputs/ucf_best_record_2022.txt, step 1430'),
    Reported('ucf_crime', 'bnwvad', 'kinetics_i3d', 'auc', 87.24,
             'Zhou et al., BN-WVAD, arXiv 2311.15367 abstract (TCSVT 2024; README: XD only)'),
    Reported('ucf_crime', 'pel4vad', 'kinetics_i3d', 'auc', 86.76,
             'yujiangpu20/PEL4VAD README, Results and Models (with score smoothing; features of Wu et al.)'),
    Reported('ucf_crime', 'ssrl', 'rtfm_i3d_r50', 'auc', 87.43,
             'Li et al., SSRL, ECCV 2022, UCF-Crime comparison (I3D RGB with its patch features)'),
    Reported('ucf_crime', 'cliptsa', 'clip_vitb16', 'auc', 87.58,
             'Joo et al., CLIP-TSA, ICIP 2023, arXiv 2212.05136, UCF-Crime comparison (its own '
             'CLIP ViT-B/16 features, README "CLIP Features")'),
    Reported('ucf_crime', 'vadclip', 'vadclip_vitb16', 'auc', 88.02,
             'Wu et al., VadCLIP, AAAI 2024 (README and Table 1)'),
    Reported('ucf_crime', 'dsanet', 'vadclip_vitb16', 'auc', 89.44,
             'lessiYin/DSANet README, Results (VadCLIP\'s features)'),
    Reported('shanghaitech', 'rtfm', 'rtfm_i3d_r50', 'auc', 97.21,
             'Tian et al., RTFM, ICCV 2021, Table 1 (I3D RGB)'),
    Reported('shanghaitech', 's3r', 'rtfm_i3d_r50', 'auc', 97.40,
             'louisYen/S3R logs, shanghaitech i3d .score, best step 8645 (97.395)'),
    Reported('shanghaitech', 'pel4vad', 'video_features_i3d', 'auc', 98.14,
             'yujiangpu20/PEL4VAD README, Results and Models (I3D of v-iashin/video_features)'),
    # RTFM#33, #85: RTFM's XD-Violence runs used the I3D features of the XD-Violence site; the
    # S3R and MGFN repositories ship no XD-Violence lists, and no other I3D features of
    # XD-Violence were published
    Reported('xd_violence', 'rtfm', 'kinetics_i3d', 'ap_trapz', 77.81,
             'Tian et al., RTFM, ICCV 2021, Table 3 (I3D RGB; XD-Violence\'s I3D files, RTFM#85)'),
    Reported('xd_violence', 's3r', 'kinetics_i3d', 'ap_trapz', 80.26,
             'Wu, Hsieh et al., S3R, ECCV 2022, RGB without audio (value as on '
             'paperswithcode.com; louisYen/S3R has no XD-Violence log)'),
    Reported('xd_violence', 'mgfn', 'kinetics_i3d', 'ap_trapz', 79.19,
             'Chen et al., MGFN, AAAI 2023, arXiv 2211.15098, XD-Violence comparison, I3D row '
             '(80.11 is its Video Swin row)'),
    Reported('xd_violence', 'urdmu', 'kinetics_i3d', 'ap_trapz', 81.66,
             'henrryzh1/UR-DMU outputs/xd_best_record_2022.txt, step 840'),
    Reported('xd_violence', 'bnwvad', 'kinetics_i3d', 'ap_trapz', 84.93,
             'cool-xuan/BN-WVAD logs/xd_best_record_2022.txt, step 900'),
    Reported('xd_violence', 'pel4vad', 'kinetics_i3d', 'ap_trapz', 85.59,
             'yujiangpu20/PEL4VAD README, Results and Models (with score smoothing; infer.py: '
             'auc(recall, precision))'),
    Reported('xd_violence', 'cliptsa', 'clip_vitb16', 'ap_trapz', 82.19,
             'Joo et al., CLIP-TSA, ICIP 2023, arXiv 2212.05136, XD-Violence comparison (its own '
             'CLIP ViT-B/16 features; test_10crop.py: auc(recall, precision))'),
    Reported('xd_violence', 'vadclip', 'vadclip_vitb16', 'ap_step', 84.51,
             'Wu et al., VadCLIP, AAAI 2024 (README, Table 2); average_precision_score'),
    Reported('xd_violence', 'dsanet', 'vadclip_vitb16', 'ap_step', 86.95,
             'lessiYin/DSANet README, Results (xd_test.py: average_precision_score)'),
)


def reported_for(dataset: str, method: str, family: str) -> Reported | None:
    """The reported number for a table row: the one on the row's feature family if the paper
    used it, else the method's number on the dataset with other features (its ``features``
    says which), else None."""
    hits = [r for r in REPORTED if r.dataset == dataset and r.method == method]
    exact = [r for r in hits if r.features == family]
    return (exact or hits or [None])[0]
