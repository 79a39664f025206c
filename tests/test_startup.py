"""Commands that only print (`--help`, `--cfg job`, `--info`, a missing required value) answer
without importing torch or Lightning, and each command's `--help` lists its own config groups
(scripts/bench_startup.py times them)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from attnlab.utils.device import choose_device

# Every console script's entry point, by name (pyproject.toml's [project.scripts]).
ENTRY_POINTS = {
    "attnlab-train": "attnlab.run.train:main",
    "attnlab-eval": "attnlab.run.eval:main",
    "attnlab-generate": "attnlab.run.generate:main",
    "attnlab-translate": "attnlab.run.translate:main",
    "attnlab-fill-mask": "attnlab.run.fill_mask:main",
    "attnlab-compare": "attnlab.compare:main",
    "attnlab-data": "attnlab.run.datasets:cli",
    "attnlab-prepare": "attnlab.run.prepare:main",
}
PRINT_ONLY = [
    *[(name, "--help") for name in ENTRY_POINTS],
    ("attnlab-train", "--cfg", "job"),
    ("attnlab-train", "--cfg", "all"),
    ("attnlab-train", "--info"),
    # a config error found before any work: one line, exit 2 (it writes failure.json)
    ("attnlab-train", "experiment=bert_sst2_finetune", "hydra.run.dir=refused"),
]
HEAVY = (
    "torch",
    "lightning",
    "lightning.pytorch",
    "lightning.fabric",
    "torchmetrics",
    "transformers",
)

# Runs every command in one fresh interpreter (a subprocess each would cost seconds), then
# reports what each printed and which heavy modules got imported.
PROBE = """
import contextlib, importlib, io, json, sys
from hydra.core.global_hydra import GlobalHydra
commands, entry_points, heavy = json.loads(sys.argv[1])
printed = {}
for argv in commands:
    module, _, function = entry_points[argv[0]].partition(":")
    sys.argv = list(argv)
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        with contextlib.suppress(SystemExit):
            getattr(importlib.import_module(module), function)()
    GlobalHydra.instance().clear()
    printed[" ".join(argv)] = out.getvalue()
print(json.dumps({"printed": printed, "imported": [m for m in heavy if m in sys.modules]}))
"""


@pytest.fixture(scope="module")
def probe(tmp_path_factory: pytest.TempPathFactory) -> dict:
    result = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps([PRINT_ONLY, ENTRY_POINTS, HEAVY])],
        cwd=tmp_path_factory.mktemp("probe"),
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    return json.loads(result.stdout.splitlines()[-1])


def test_print_only_commands_import_no_torch(probe: dict) -> None:
    assert probe["imported"] == [], f"imported by --help/--cfg/--info: {probe['imported']}"
    for argv in PRINT_ONLY:
        assert probe["printed"][" ".join(argv)].strip(), f"{' '.join(argv)} printed nothing"
    assert "optimizer:" in probe["printed"]["attnlab-train --cfg job"]
    error = probe["printed"]["attnlab-train experiment=bert_sst2_finetune hydra.run.dir=refused"]
    assert error.startswith("attnlab: required values not set: init.pretrained"), error


def test_each_command_help_lists_its_own_groups(probe: dict) -> None:
    def groups(command: str) -> list[str]:
        text = probe["printed"][f"{command} --help"]
        section = text.split("== Configuration groups ==")[1].split("== Config ==")[0]
        return [line.split(":")[0] for line in section.splitlines()[2:] if ":" in line]

    assert {"model", "data", "trainer", "experiment"} <= set(groups("attnlab-train"))
    for command in ("attnlab-generate", "attnlab-translate", "attnlab-fill-mask"):
        assert groups(command) == ["paths"], command
    assert groups("attnlab-eval") == ["trainer", "logger", "paths"]
    # the usage comes from the command's config, not Hydra's "... is powered by Hydra"
    assert probe["printed"]["attnlab-generate --help"].startswith("attnlab-generate ckpt_path=")


def test_data_cli_names_the_catalog_datasets() -> None:
    """attnlab-data --help names the datasets without importing the catalog (torch)."""
    from attnlab.data.catalog import DATASETS
    from attnlab.run.datasets import DATASET_NAMES

    assert tuple(DATASETS) == DATASET_NAMES


@pytest.mark.parametrize(
    ("name", "cuda", "expected"),
    [
        ("auto", True, "cuda"),
        ("auto", False, "cpu"),
        ("cpu", True, "cpu"),
        ("cuda", True, "cuda"),
        ("cuda:1", True, "cuda:1"),
    ],
)
def test_choose_device(name: str, cuda: bool, expected: str) -> None:
    assert choose_device(name, cuda_available=cuda) == expected


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("gpu", "device='gpu' is not valid: choose one of auto, cpu, cuda"),
        ("cpu:0", "device='cpu:0' is not valid"),
        ("cuda", "device=cuda is not valid here: no CUDA device"),
    ],
)
def test_choose_device_refuses(name: str, message: str) -> None:
    from attnlab.run.errors import ConfigError

    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        choose_device(name, cuda_available=False)
