"""Every option of every config group composes, and everything in it instantiates."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

import pytest
import yaml
from hydra.utils import get_class, instantiate
from omegaconf import OmegaConf

from attnlab import run as build
from tests.conftest import compose_config

CONF = files("attnlab.conf")
GROUPS = [
    "data",
    "model",
    "init",
    "optimizer",
    "scheduler",
    "trainer",
    "logger",
    "callbacks",
    "debug",
    "experiment",
    "paths",
    "hydra",
    "hydra/launcher",
    "hparams_search",
    "ladder",
]


def options(group: str) -> list[str]:
    return sorted(
        p.name.removesuffix(".yaml")
        for p in CONF.joinpath(*group.split("/")).iterdir()
        if p.name.endswith(".yaml")
    )


CASES = [(group, option) for group in GROUPS for option in options(group)]
# the entry points' own configs
PRIMARY = ["train", "eval", "generate", "fill_mask", "translate", "prepare", "export"]


def task_of_data(option: str) -> str:
    """The task a data option picks in its defaults, or inherits from the data option it extends."""
    defaults = yaml.safe_load(CONF.joinpath("data", f"{option}.yaml").read_text())["defaults"]
    for entry in defaults:
        if isinstance(entry, dict) and "/task@_global_.task" in entry:
            return entry["/task@_global_.task"]
    return task_of_data(next(e for e in defaults if isinstance(e, str) and e != "_self_"))


def supported_tasks(model: str) -> tuple[str, ...]:
    target = OmegaConf.load(str(CONF.joinpath("model", f"{model}.yaml")))._target_
    return get_class(target).supported_tasks


def with_partner(group: str, option: str) -> list[str]:
    """The override under test, plus a model (or data) option that fits it."""
    if group == "data":
        model = next(m for m in options("model") if task_of_data(option) in supported_tasks(m))
        return [f"data={option}", f"model={model}"]
    if group == "model":
        data = next(d for d in options("data") if task_of_data(d) in supported_tasks(option))
        return [f"model={option}", f"data={data}"]
    return [f"{group}={option}"]


def test_every_config_file_is_covered() -> None:
    """Each YAML file is a tested option, a primary config, or a task picked by a data option."""
    root = Path(str(CONF))
    files_on_disk = {str(p.relative_to(root)) for p in root.rglob("*.yaml")}
    covered = (
        {f"{group}/{option}.yaml" for group, option in CASES}
        | {f"{name}.yaml" for name in PRIMARY}
        | {f"experiment/matched/{name}.yaml" for name in options("experiment/matched")}
        # the Optuna sweeper's own groups: tests/test_sweeps.py builds each
        | {str(p.relative_to(root)) for p in root.joinpath("hydra", "sweeper").rglob("*.yaml")}
        | {"hydra/help/command.yaml"}  # the commands' --help: tests/test_startup.py
    )
    tasks = {f"task/{p.name}" for p in root.joinpath("task").glob("*.yaml")}
    picked = {
        line.split(":")[-1].strip()
        for p in root.joinpath("data").glob("*.yaml")
        for line in p.read_text().splitlines()
        if "/task@" in line
    }
    assert {f"task/{name}.yaml" for name in picked} == tasks
    assert files_on_disk - covered - tasks == set()


MATCHED = options("experiment/matched")


@pytest.mark.parametrize("name", MATCHED)
def test_matched_sizes_apply_to_their_experiment_and_model(tmp_path: Path, name: str) -> None:
    """experiment/matched/<experiment>_<model>.yaml is merged over the experiment when that
    model is chosen: each of its model keys reaches the composed config and the network."""
    experiment, model = name.rsplit("_", 1)
    assert experiment in options("experiment") and model in options("model")
    cfg = compose_config(tmp_path, [f"experiment={experiment}", f"model={model}"])
    matched = OmegaConf.load(str(CONF.joinpath("experiment", "matched", f"{name}.yaml")))
    assert matched.model and all(cfg.model[k] == v for k, v in matched.model.items())
    build.check_compatibility(cfg)
    network_cls = get_class(cfg.model._target_)
    kwargs = build.network_arguments(build.build_datamodule(cfg).spec)
    network = build.instantiate_section(cfg, "model", **kwargs)
    assert isinstance(network, network_cls)


def test_scheduler_can_be_switched_off(tmp_path: Path) -> None:
    cfg = compose_config(tmp_path, ["scheduler=none"])
    datamodule = build.build_datamodule(cfg)
    assert build.build_module(cfg, datamodule).scheduler_factory is None


@pytest.mark.parametrize(("group", "option"), CASES, ids=[f"{g}={o}" for g, o in CASES])
def test_option_composes_and_instantiates(tmp_path: Path, group: str, option: str) -> None:
    extra = []
    # shards of a tiny corpus, prepared on first use
    if (group, option) in (("data", "tokens"), ("ladder", "gpt_small")):
        text = tmp_path / "corpus.txt"
        text.write_text("".join(f"line {i} of a tiny corpus\n" for i in range(2000)))
        prepare = f"{{input: '{text}', tokenizer: char, workers: 1, val_fraction: 0.05}}"
        extra = [f"data.path={tmp_path / 'shards'}", f"data.prepare={prepare}"]
    overrides = [*with_partner(group, option), *extra, "trainer.accelerator=cpu"]
    cfg = compose_config(tmp_path, overrides)
    assert cfg.hydra.runtime.choices[group] == option
    OmegaConf.to_container(cfg, resolve=True)  # every interpolation resolves
    build.check_compatibility(cfg)
    datamodule = build.build_datamodule(cfg)
    module = build.build_module(cfg, datamodule)
    assert sum(p.numel() for p in module.network.parameters()) > 0
    callbacks = build.build_callbacks(cfg)
    loggers = build.build_loggers(cfg) if group == "logger" else []
    if group == "trainer" and option in ("gpu", "ddp"):
        return  # needs CUDA to build a Trainer; composition and resolution are checked above
    trainer = build.build_trainer(cfg, callbacks, loggers)
    assert trainer is not None
    if group == "scheduler" and cfg.scheduler is not None:
        scheduler = instantiate(cfg.scheduler)(
            instantiate(cfg.optimizer)(module.network.parameters()), total_steps=100
        )
        assert scheduler.get_last_lr()[0] >= 0


@pytest.mark.parametrize("name", [p for p in PRIMARY if p not in ("train", "prepare")])
def test_entry_point_config_composes(tmp_path: Path, name: str) -> None:
    """eval, generate and fill_mask: compose with their required values set."""
    required = {"ckpt_path": "x.ckpt", "text": "'a [MASK] .'", "out": "exported"}
    cfg = compose_config(
        tmp_path,
        [
            f"{k}={v}"
            for k, v in required.items()
            if k in yaml.safe_load(CONF.joinpath(f"{name}.yaml").read_text())
        ],
        config_name=name,
    )
    assert cfg.ckpt_path == "x.ckpt"
    assert cfg.task_name == name
    assert not [k for k in OmegaConf.missing_keys(cfg) if not k.startswith("hydra.")]


def test_data_dir_follows_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ATTNLAB_DATA_DIR", "/some/where")
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with initialize_config_module("attnlab.conf", version_base="1.3"):
        cfg = compose("train", return_hydra_config=True)
    assert cfg.paths.data_dir == "/some/where"
    monkeypatch.delenv("ATTNLAB_DATA_DIR")
    GlobalHydra.instance().clear()
    with initialize_config_module("attnlab.conf", version_base="1.3"):
        cfg = compose("train", return_hydra_config=True)
    from hydra.core.hydra_config import HydraConfig

    HydraConfig.instance().set_config(cfg)
    assert cfg.paths.data_dir == str(Path.cwd() / "data")
    GlobalHydra.instance().clear()


def test_network_registry_matches_the_model_group() -> None:
    """Each conf/model option is registered under its own name (models/registry.py) as the
    class its YAML builds, so error messages name the options that exist."""
    targets = {
        name: get_class(OmegaConf.load(str(CONF.joinpath("model", f"{name}.yaml")))._target_)
        for name in options("model")
    }
    assert {name: build.model_options()[name] for name in targets} == targets


@pytest.mark.parametrize("name", options("model"))
def test_model_group_holds_network_arguments_only(tmp_path: Path, name: str) -> None:
    """Every key of a model option is an argument of its network's constructor: its own, or
    a block setting it passes to ModelConfig (**settings)."""
    import inspect

    from attnlab.models.config import MODEL_SETTINGS

    cfg = compose_config(tmp_path, [f"model={name}"])
    parameters = set(inspect.signature(get_class(cfg.model._target_)).parameters)
    assert set(cfg.model) - {"_target_"} <= parameters | set(MODEL_SETTINGS)
