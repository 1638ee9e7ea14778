"""The config the workflow sees, for tests that check config functions without Snakemake: the
files the Snakefile's ``configfile:`` lines name, merged in that order as Snakemake merges them
(nested mappings key by key, everything else replaced), then the schema's defaults filled in;
optionally test configs from ``tests/configs/`` on top (what ``--configfile`` does)."""
from __future__ import annotations

import re
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
SNAKEFILE = REPO / "Snakefile"
SCHEMA = REPO / "schemas" / "config.schema.yaml"
TEST_CONFIGS = REPO / "tests" / "configs"


def snakefile_configfiles() -> list[Path]:
    """The ``configfile:`` entries of the Snakefile, in order (read from it, not restated here)."""
    names = re.findall(r'^configfile:\s*os\.path\.join\(workflow\.basedir,\s*"([^"]+)"\)',
                       SNAKEFILE.read_text(), flags=re.M)
    assert names, f"{SNAKEFILE}: no configfile: lines found"
    return [REPO / n for n in names]


def config_file(name: str) -> Path:
    """A checked-in test config, ``tests/configs/<name>.yaml``."""
    p = TEST_CONFIGS / f"{name}.yaml"
    assert p.is_file(), p
    return p


def merged_config(*extra: str | Path, validate: bool = True) -> dict:
    """The shipped config (plus ``extra`` test configs: names under tests/configs or paths),
    merged and, with ``validate``, checked against the schema with its defaults filled in, as
    every Snakemake run does."""
    from snakemake.utils import update_config

    config: dict = {}
    files = snakefile_configfiles() + [p if isinstance(p, Path) else config_file(p) for p in extra]
    for f in files:
        update_config(config, yaml.safe_load(f.read_text()) or {})
    if validate:
        from wsvad_core.config import validate_config

        validate_config(config, str(SCHEMA))
    return config
