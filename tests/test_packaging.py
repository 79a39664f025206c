"""The package ships every subpackage and the config tree; environment.yml matches pyproject."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import tomllib
import yaml

from attnlab.utils.extras import EXTRA_OF

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


def _requirements(group: str | None = None) -> list[str]:
    """The core's requirements, or an extra's with the extras it names expanded."""
    project = PYPROJECT["project"]
    found = []
    for requirement in (
        project["dependencies"] if group is None else project["optional-dependencies"][group]
    ):
        if requirement.startswith("attnlab["):  # another extra of ours
            for name in requirement[len("attnlab[") : -1].split(","):
                found += _requirements(name)
        else:
            found.append(requirement)
    return list(dict.fromkeys(found))


def test_extras() -> None:
    extras = PYPROJECT["project"]["optional-dependencies"]
    assert set(extras) == {"wandb", "tensorboard", "sweep", "compare", "hf", "fp8", "all", "dev"}
    features = [name for name in extras if name not in ("all", "dev")]
    everything = [r for name in features for r in _requirements(name)]
    assert _requirements("all") == everything
    assert set(_requirements("dev")) - set(everything) == {
        "pytest>=8",
        "pytest-timeout>=2.3",
        "pytest-xdist>=3.5",
        "ruff>=0.6",
        "import-linter>=2.1",
    }
    core = {_name(r) for r in _requirements()}
    # The core is what training needs: no optional package in it.
    assert not core & {_name(r) for r in everything}
    assert {"torch", "lightning", "hydra-core", "sacrebleu"} <= core
    # Every extra that extras.py names for a missing module exists.
    assert set(EXTRA_OF.values()) <= set(features)


def test_environment_yml_matches_pyproject() -> None:
    """environment.yml holds the core and every extra (what `make install` installs)."""
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    conda = {_name(dep): dep for dep in env["dependencies"] if isinstance(dep, str)}
    wanted = _requirements() + _requirements("dev")
    for requirement in wanted:
        name = CONDA_NAMES.get(_name(requirement), _name(requirement))
        assert name in conda, f"{name} missing from environment.yml"
        bound = requirement[len(_name(requirement)) :]
        assert conda[name].endswith(bound), f"{conda[name]} != {requirement}"
    assert len(conda) - 2 == len(wanted)  # python and pip besides


def test_make_install_installs_every_extra() -> None:
    makefile = (ROOT / "Makefile").read_text()
    assert 'pip install -q -e ".[all,dev]"' in makefile


def test_config_tree_is_importable_from_package() -> None:
    from importlib.resources import files

    conf = files("attnlab.conf")
    assert conf.joinpath("train.yaml").is_file()
    assert conf.joinpath("model", "encdec.yaml").is_file()


def test_python_dash_m_finds_the_packaged_configs(tmp_path: Path) -> None:
    """`python -m attnlab.run.train` (torchrun's default form) composes like `attnlab-train`, from
    any directory: the entry points name the config package, not a path beside the file."""
    result = subprocess.run(
        [sys.executable, "-m", "attnlab.run.train", "model=gpt", "data=toy_lm", "--cfg", "job"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "_target_: attnlab.models.DecoderOnly" in result.stdout
