"""Each private Hydra name attnlab uses (utils/hydra_compat.py), exercised against the installed
Hydra. A failure here after upgrading Hydra names what moved: fix hydra_compat.py."""

from __future__ import annotations

import random

import hydra

from attnlab.utils import hydra_compat

VERSION = f"hydra-core {hydra.__version__}"


def test_every_private_name_still_exists() -> None:
    missing = hydra_compat.missing_private_names()
    assert not missing, (
        f"{VERSION} no longer has {', '.join(missing)}: `attnlab-train resume=<run>` reads the "
        "command line with it; update src/attnlab/utils/hydra_compat.py"
    )


def test_args_parser_reads_the_command_line_as_hydra_main_does() -> None:
    value = random.randrange(1000)
    args = ["-m", "--config-name", "train", f"trainer.max_epochs={value}", "resume=auto"]
    parsed = hydra_compat.args_parser().parse_known_args(args)[0]
    assert parsed.multirun and parsed.config_name == "train", VERSION
    assert parsed.overrides == [f"trainer.max_epochs={value}", "resume=auto"], VERSION
    single = hydra_compat.args_parser().parse_known_args(["resume=auto"])[0]
    assert not single.multirun and single.overrides == ["resume=auto"], VERSION


def test_a_missing_private_name_is_named(monkeypatch) -> None:
    monkeypatch.setitem(hydra_compat.PRIVATE_NAMES, "hydra._internal.utils", ("no_such_name",))
    assert hydra_compat.missing_private_names() == ["hydra._internal.utils.no_such_name"]
