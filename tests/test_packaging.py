"""The package ships every subpackage and the config tree; environment.yml matches pyproject."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import tomllib
import yaml

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
CONDA_NAMES = {"torch": "pytorch"}


def test_every_subpackage_is_listed() -> None:
    listed = set(PYPROJECT["tool"]["setuptools"]["packages"])
    found = {
        ".".join(init.parent.relative_to(ROOT / "src").parts)
        for init in (ROOT / "src").rglob("__init__.py")
    }
    assert found | {"attnlab.conf"} == listed


def _name(requirement: str) -> str:
    return re.split(r"[<>=!\[ ;]", requirement, maxsplit=1)[0].lower()


def test_environment_yml_matches_pyproject() -> None:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    conda = {_name(dep): dep for dep in env["dependencies"] if isinstance(dep, str)}
    wanted = (
        PYPROJECT["project"]["dependencies"] + PYPROJECT["project"]["optional-dependencies"]["dev"]
    )
    for requirement in wanted:
        name = CONDA_NAMES.get(_name(requirement), _name(requirement))
        assert name in conda, f"{name} missing from environment.yml"
        bound = requirement[len(_name(requirement)) :]
        assert conda[name].endswith(bound), f"{conda[name]} != {requirement}"
    assert len(conda) - 2 == len(wanted)  # python and pip besides


def test_config_tree_is_importable_from_package() -> None:
    from importlib.resources import files

    conf = files("attnlab.conf")
    assert conf.joinpath("train.yaml").is_file()
    assert conf.joinpath("model", "encdec.yaml").is_file()


def test_python_dash_m_finds_the_packaged_configs(tmp_path: Path) -> None:
    """`python -m attnlab.train` (torchrun's default form) composes like `attnlab-train`, from
    any directory: the entry points name the config package, not a path beside the file."""
    result = subprocess.run(
        [sys.executable, "-m", "attnlab.train", "model=gpt", "data=toy_lm", "--cfg", "job"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "_target_: attnlab.models.DecoderOnly" in result.stdout
