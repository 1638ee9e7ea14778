"""The conda environment of the rules (envs/wsvad.yaml) installs what pyproject.toml pins."""
from __future__ import annotations

import tomllib
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]


def test_rule_environment_pins_the_package_dependencies():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    runtime = {d for d in project["dependencies"] if not d.startswith("snakemake")}
    env = yaml.safe_load((REPO / "envs" / "wsvad.yaml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    assert set(pip) == runtime, (sorted(set(pip) - runtime), sorted(runtime - set(pip)))
    python = next(d for d in env["dependencies"] if isinstance(d, str) and d.startswith("python="))
    assert python.removeprefix("python=") in project["requires-python"].replace(">=", "").split(",")[0]
