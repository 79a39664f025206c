"""attnlab uses the `lightning` package (`import lightning.pytorch as pl`), never the separate
`pytorch_lightning` copy, whose classes do not mix with lightning.pytorch's; runs saved before
the move still load."""

from __future__ import annotations

import re
from pathlib import Path

from attnlab.run.checkpoints import load_run_config

ROOT = Path(__file__).resolve().parents[1]
OLD = re.compile(r"\b(pytorch_lightning|lightning_fabric)\b")


def test_no_code_or_config_names_the_old_packages():
    files = [*ROOT.glob("src/**/*.py"), *ROOT.glob("conf/**/*.yaml"), *ROOT.glob("scripts/*")]
    found = [
        f"{path.relative_to(ROOT)}:{number}"
        for path in files
        if path.is_file()
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if OLD.search(line) and path.name != "settings.py"  # its map of old names
    ]
    assert found == []


def test_old_checkpoints_targets_are_renamed_to_lightning():
    cfg = load_run_config(str(ROOT / "tests/fixtures/checkpoints/gpt.ckpt"))
    targets = [cfg.trainer._target_] + [v._target_ for v in cfg.logger.values() if v]
    assert targets[0] == "lightning.pytorch.Trainer"
    assert all(t.startswith("lightning.pytorch.") for t in targets), targets
