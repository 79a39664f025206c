"""Run-level settings left the `model` group: `init.pretrained`, `init.freeze_layers`,
`init.body_lr_scale` and the top-level `compile`. The old keys fail with one line naming the new
place; configs stored in older checkpoints are translated when read."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from attnlab.run import MOVED_KEYS, ConfigError, check_required, load_run_config
from attnlab.run.errors import unknown_key_hints
from attnlab.run.settings import upgrade_run_config
from tests.conftest import run_cli

FIXTURES = Path(__file__).parent / "fixtures" / "checkpoints"
OLD_VALUES = {  # a value of the right kind for each moved key
    "model.pretrained": "a.ckpt",
    "model.freeze_layers": "2",
    "model.body_lr_scale": "0.3",
    "model.compile": "true",
}


@pytest.mark.parametrize("old", sorted(MOVED_KEYS))
@pytest.mark.parametrize("prefix", ["", "+"])
def test_moved_key_on_the_command_line_names_the_new_place(
    tmp_path: Path, old: str, prefix: str
) -> None:
    value = OLD_VALUES[old]
    result = run_cli(
        "attnlab-train", "model=bert", f"{prefix}{old}={value}", cwd=tmp_path, check=False
    )
    assert result.returncode == 2
    assert result.stderr.strip() == f"attnlab: {old} moved: use {MOVED_KEYS[old]}={value}"
    assert not (tmp_path / "logs").exists()  # nothing composed, nothing written


@pytest.mark.parametrize("old", sorted(MOVED_KEYS))
def test_moved_key_in_a_composed_config_names_the_new_place(train_config, old: str) -> None:
    # What `+model.pretrained=...` from Python, or an old experiment file, composes to.
    cfg = train_config(f"+{old}={OLD_VALUES[old]}")
    with pytest.raises(ConfigError, match=rf"^{old} moved: use {MOVED_KEYS[old]}="):
        check_required(cfg)


def test_a_moved_key_is_not_called_unknown() -> None:
    (hint,) = unknown_key_hints("train", ["model=gpt", "model.compile=true"])
    assert hint == "model.compile moved: use compile=True"


def test_new_keys_compose_and_check(train_config) -> None:
    cfg = train_config("init.freeze_layers=0", "init.body_lr_scale=0.5", "compile=false")
    check_required(cfg)
    assert cfg.init == {
        "pretrained": None,
        "from_hf": None,
        "freeze_layers": 0,
        "body_lr_scale": 0.5,
    }
    assert not any(leaf in cfg.model for leaf in ("pretrained", "freeze_layers", "compile"))


def test_old_style_stored_config_is_translated() -> None:
    rng = random.Random()
    values = {
        "pretrained": rng.choice([None, f"run{rng.randrange(100)}.ckpt"]),
        "freeze_layers": rng.randrange(4),
        "body_lr_scale": round(rng.uniform(0.1, 1.0), 3),
        "compile": rng.choice([True, False]),
    }
    stored = {"model": {"_target_": "attnlab.models.EncoderOnly", "d_model": 32, **values}}
    cfg = upgrade_run_config(OmegaConf.create(stored))
    assert OmegaConf.to_container(cfg.model) == {
        "_target_": "attnlab.models.EncoderOnly",
        "d_model": 32,
    }
    assert cfg.compile == values["compile"]
    assert cfg.init == {k: values[k] for k in ("pretrained", "freeze_layers", "body_lr_scale")}
    # A config stored by this version is left as it is.
    assert upgrade_run_config(OmegaConf.create(OmegaConf.to_container(cfg))) == cfg


@pytest.mark.parametrize("name", ["bert", "gpt"])
def test_old_checkpoint_config_loads_with_the_new_keys(name: str) -> None:
    path = FIXTURES / f"{name}.ckpt"
    stored = torch.load(path, weights_only=False)["hyper_parameters"]["config"]["model"]
    assert "compile" in stored  # written before the keys moved
    cfg = load_run_config(str(path))
    assert not set(cfg.model) & {"compile", "pretrained", "freeze_layers", "body_lr_scale"}
    assert cfg.compile is stored["compile"]
    check_required(cfg)  # no moved key left to complain about
