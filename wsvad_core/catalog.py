"""What the workflow must know at DAG-build time, without importing torch: the names in the
method and backbone registries and the few facts the DAG depends on. `tests/test_catalog.py`
keeps this in step with the registries themselves (tests/test_methods.py::test_catalog_matches_registry)."""

# backbone name -> feature family
BACKBONE_FAMILIES = {
    "i3d_r50": "i3d",
    "clip_vitb16": "clip",
    "i3d_kinetics": "i3d",  # UR-DMU family (Kinetics I3D, 1024-d): imported features only, no extractor
    "i3d_r50_patch": "i3d_patch",  # patch features (features/patches.py): never a run's own store
    "timesformer": "timesformer",
}

# method name -> (feature families accepted, needs the S3R dictionary)
METHODS = {
    "mil": (("i3d", "clip"), False),
    "rtfm": (("i3d", "clip"), False),
    "s3r": (("i3d", "clip"), True),
    "mgfn": (("i3d", "clip"), False),
    "urdmu": (("i3d", "clip"), False),
    "bnwvad": (("i3d", "clip"), False),
    "ssrl": (("i3d",), False),
    "timesformer_mil": (("timesformer",), False),
    "urdmu_patch": (("i3d",), False),
    "cliptsa": (("clip", "i3d"), False),
    "vadclip": (("clip",), False),
    "tpwng": (("clip",), False),
    "gsmoe": (("i3d", "clip"), False),
}

# methods built from the paper's description alone (no official code to match): the result
# tables mark them
PAPER_ONLY = {"tpwng", "gsmoe", "timesformer_mil", "urdmu_patch"}

# methods that also read the dataset's patch feature sets (family "<family>_patch")
PATCH_METHODS = {"ssrl", "urdmu_patch"}


def needs_dictionary(method: str) -> bool:
    return METHODS[method][1]


def needs_patches(method: str) -> bool:
    return method in PATCH_METHODS
