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
    assert set(extras) == {
        "wandb",
        "tensorboard",
        "sweep",
        "compare",
        "hf",
        "lmeval",
        "fp8",
        "all",
        "dev",
    }
    features = [name for name in extras if name not in ("all", "dev")]
    # lm-eval is left out of `all` (pyproject.toml says why); the tests need it (dev).
    everything = [r for name in features if name != "lmeval" for r in _requirements(name)]
    assert _requirements("all") == everything
    assert set(_requirements("dev")) - set(everything) == {
        "lm-eval[hf]>=0.4.13,<0.5",
        "pytest>=8,<10",
        "pytest-timeout>=2.3,<3",
        "pytest-xdist>=3.5,<4",
        "ruff>=0.6,<0.18",
        "import-linter>=2.1,<3",
        "selenium>=4.20,<5",
    }
    core = {_name(r) for r in _requirements()}
    # The core is what training needs: no optional package in it.
    assert not core & {_name(r) for r in everything + _requirements("lmeval")}
    assert {"torch", "lightning", "hydra-core", "sacrebleu"} <= core
    # Every extra that extras.py names for a missing module exists.
    assert set(EXTRA_OF.values()) <= set(features)


def test_environment_yml_matches_pyproject() -> None:
    """environment.yml holds the core and every extra (what `make install` installs)."""
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    conda = {_name(dep): dep for dep in env["dependencies"] if isinstance(dep, str)}
    pip = next(dep["pip"] for dep in env["dependencies"] if isinstance(dep, dict))
    conda |= {_name(dep): dep for dep in pip if not dep.startswith("-")}  # pip-only packages
    wanted = _requirements() + _requirements("dev")
    for requirement in wanted:
        name = CONDA_NAMES.get(_name(requirement), _name(requirement))
        assert name in conda, f"{name} missing from environment.yml"
        bound = requirement[len(_name(requirement)) :]
        assert conda[name].endswith(bound), f"{conda[name]} != {requirement}"
    assert len(conda) - 2 == len(wanted)  # python and pip besides


def test_make_install_installs_every_extra() -> None:
    makefile = (ROOT / "Makefile").read_text()
    assert '$(PIP) install -e ".[all,dev]"' in makefile


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


def test_the_wheel_builds_without_setuptools_warnings(tmp_path: Path) -> None:
    """`make install` printed ~970 lines: one "Package 'attnlab.conf.callbacks' is absent from
    the `packages` configuration" block per conf/ folder. The wheel still ships every config."""
    import shutil
    import zipfile

    project = tmp_path / "project"
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True)
    for name in tracked.stdout.splitlines():  # the files a clean checkout has
        (project / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, project / name)
    build = "import setuptools.build_meta as b, sys; b.build_wheel(sys.argv[1])"
    result = subprocess.run(
        [sys.executable, "-W", "always", "-c", build, str(tmp_path / "dist")],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    assert "absent from the `packages` configuration" not in result.stderr, result.stderr
    assert "Warning" not in result.stderr, result.stderr
    (wheel,) = (tmp_path / "dist").glob("*.whl")
    shipped = set(zipfile.ZipFile(wheel).namelist())
    configs = {
        f"attnlab/conf/{p.relative_to(ROOT / 'conf')}" for p in (ROOT / "conf").rglob("*.yaml")
    }
    assert configs <= shipped and len(configs) > 90


def test_make_help_lines_up() -> None:
    result = subprocess.run(["make", "-s", "help"], cwd=ROOT, capture_output=True, text=True)
    lines = result.stdout.splitlines()
    assert len(lines) > 5
    columns = {len(line) - len(line.split(maxsplit=2)[2]) for line in lines}
    assert len(columns) == 1, result.stdout  # every description starts in one column


def test_the_documented_output_folders_are_git_ignored() -> None:
    """logs/ and data/ were; `attnlab-export out=exported/...` and `attnlab-prepare
    out=shards/...` (README, docs/data.md) were not."""
    paths = ["logs/x", "data/x", "exported/gpt2/config.json", "shards/corpus/index.json"]
    result = subprocess.run(
        ["git", "check-ignore", *paths], cwd=ROOT, capture_output=True, text=True
    )
    assert result.stdout.split() == paths


def test_the_readme_install_lines_are_the_ones_ci_runs() -> None:
    """The README leads with routes that work (a checkout, a git URL, a wheel), not with
    `pip install attnlab` (not published); scripts/check_core_install.sh runs the wheel and the
    git-URL lines (pip wheel, then pip install of the wheel; pip install "attnlab @ git+...")."""
    readme = (ROOT / "README.md").read_text()
    block = readme.split("### Installing", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    commands = [line.split("#")[0].strip() for line in block.splitlines() if line.strip()]
    assert "pip install attnlab" not in commands
    assert 'pip install ".[all]"' in commands
    script = (ROOT / "scripts" / "check_core_install.sh").read_text()
    assert "pip wheel --no-deps -w dist ." in commands
    assert re.search(r"pip wheel -q --no-deps -w \S+ \.", script)
    assert any(
        re.fullmatch(r'pip install "dist/attnlab-[^"]+\.whl\[[a-z,]+\]"', c) for c in commands
    )
    assert re.search(r'pip install -q "\$WHEEL"', script)
    assert any(re.fullmatch(r'pip install "attnlab\[all\] @ git\+\S+"', c) for c in commands)
    assert 'pip install -q --no-deps --force-reinstall "attnlab @ git+file://' in script
    assert "scripts/check_core_install.sh" in (ROOT / ".ci" / "run").read_text()
