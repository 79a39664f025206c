"""Optional features: asked for without their extra, they stop before any work with one line
naming it. A missing package is simulated in-process (sys.modules[name] = None makes both
`import name` and importlib's find_spec fail, as for a package that is not installed)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from attnlab.compare.cli import compare
from attnlab.compare.cli import main as compare_main
from attnlab.run.validation import ConfigError, check_logger_extras
from attnlab.utils.extras import (
    MissingExtraError,
    exit_on_missing_extras,
    missing_extras,
    require,
)
from tests.conftest import compose_config


def uninstall(monkeypatch: pytest.MonkeyPatch, *modules: str) -> None:
    for module in modules:
        monkeypatch.setitem(sys.modules, module, None)


def test_require_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    require("yaml", "omegaconf")  # installed: nothing happens
    uninstall(monkeypatch, "wandb")
    with pytest.raises(MissingExtraError) as caught:
        require("wandb")
    assert (
        str(caught.value)
        == "wandb needs wandb, which is not installed: pip install 'attnlab[wandb]'"
    )
    assert "\n" not in str(caught.value)
    with pytest.raises(MissingExtraError, match=r"^pruning needs wandb.*attnlab\[sweep\]'$"):
        require("yaml", "wandb", extra="sweep", feature="pruning")


@pytest.mark.parametrize(
    ("args", "missing", "extra"),
    [
        (["logger=wandb"], ["wandb"], "wandb"),
        (["logger=[csv,tensorboard]"], ["tensorboardX", "tensorboard"], "tensorboard"),
        (["logger=many"], ["tensorboardX", "tensorboard"], "tensorboard"),
        (["-m", "hparams_search=optuna"], ["optuna"], "sweep"),
        (["-m", "hydra/launcher=submitit_local", "seed=1,2"], ["submitit"], "sweep"),
        (["hydra/launcher=slurm"], ["hydra_plugins.hydra_submitit_launcher"], "sweep"),
    ],
)
def test_command_line_features(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    missing: list[str],
    extra: str,
) -> None:
    assert missing_extras(["model=gpt", *args]) == []  # all installed here
    uninstall(monkeypatch, *missing)
    with pytest.raises(SystemExit) as caught:
        exit_on_missing_extras(["model=gpt", *args])
    assert caught.value.code == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("attnlab: ") and line.endswith(f"pip install 'attnlab[{extra}]'")
    exit_on_missing_extras(["model=gpt", *args, "--cfg", "job"])  # printing the config is fine


def test_logger_of_a_config_is_checked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A logger that an experiment (not the command line) chooses: a ConfigError, before work."""
    cfg = compose_config(tmp_path, ["logger=[csv,wandb]"])
    check_logger_extras(cfg)
    uninstall(monkeypatch, "wandb")
    with pytest.raises(ConfigError, match=r"^logger\.wandb .*pip install 'attnlab\[wandb\]'$"):
        check_logger_extras(cfg)
    check_logger_extras(compose_config(tmp_path, ["logger=csv"]))  # the core's default


def test_compare_without_matplotlib_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    uninstall(monkeypatch, "matplotlib")
    with pytest.raises(MissingExtraError, match=r"attnlab\[compare\]"):
        compare(tmp_path)
    with pytest.raises(SystemExit) as caught:
        compare_main([str(tmp_path)])
    assert caught.value.code == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line == (
        "attnlab-compare: attnlab-compare's plots needs matplotlib, which is not installed: "
        "pip install 'attnlab[compare]'"
    )
    assert list(tmp_path.iterdir()) == []


def test_compare_baseline_needs_scipy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    uninstall(monkeypatch, "scipy")
    with pytest.raises(MissingExtraError, match=r"--baseline needs scipy.*attnlab\[compare\]"):
        compare(tmp_path, baseline="x")


def test_optuna_sweeper_without_optuna(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from hydra_plugins.attnlab_sweepers.optuna_sweeper import OptunaSweeper

    uninstall(monkeypatch, "optuna")
    sweeper = OptunaSweeper(None, "min", None, "s", n_trials=1)
    with pytest.raises(
        MissingExtraError, match=r"^hparams_search=optuna needs optuna.*\[sweep\]'$"
    ):
        sweeper.setup(hydra_context=None, task_function=print, config=None)  # type: ignore[arg-type]


def test_lm_eval_tasks_without_lm_eval(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from attnlab.run.eval import evaluate_lm_eval

    uninstall(monkeypatch, "lm_eval")
    cfg = compose_config(tmp_path, ["ckpt_path=x.ckpt", "lm_eval.tasks=[arc_easy]"], "eval")
    with pytest.raises(ConfigError, match=r"^lm_eval.tasks needs lm-eval.*\[lmeval\]'$"):
        evaluate_lm_eval(cfg)
    assert list(tmp_path.iterdir()) == []  # nothing loaded, nothing written


def test_commands_without_optuna_print_no_plugin_warnings(tmp_path: Path) -> None:
    """Hydra imports every module of attnlab's plugin package on each start; without optuna
    (no attnlab[sweep]) the sweeper's helpers cannot import, and that says nothing. src/ on
    the path as an installed package has it: Hydra's scan does not see into the editable
    install's import hook (why `make test` alone never showed the warnings)."""
    import os
    import subprocess

    from tests.conftest import ROOT

    code = (
        "import sys; sys.modules['optuna'] = None\n"
        "sys.argv = ['attnlab-train', '--cfg', 'job', 'data=toy_lm']\n"
        "from attnlab.run.train import main; main()\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, env=env
    )
    assert result.returncode == 0, result.stderr
    assert "task_name: train" in result.stdout and result.stderr == ""
