"""Checkpoints carry a checksum of their payload, checked on every load; damaged files are
named and skipped; unwritable paths fail with one line naming the path (issue 18, defect 5,
defect 7's `ckpt_path=<a text file>`, defect 8's full disk)."""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from attnlab.run import ConfigError, load_checkpoint, resume_checkpoint
from attnlab.run.artefacts import ArtefactWriteError, write_json
from attnlab.run.checkpoint_io import (
    CHECKSUM_KEY,
    AtomicCheckpointIO,
    DamagedCheckpointError,
    read_checkpoint,
)
from attnlab.run.train import train
from tests.conftest import ROOT, TINY, run_cli

FIXTURES = Path(__file__).parent / "fixtures" / "checkpoints"


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished small run with best.ckpt and last.ckpt (both written with a checksum).
    Wide enough (256 KB matrices) that 15% into best.ckpt is inside tensor data, as in a
    real run, rather than on a zip header."""
    run_dir = tmp_path_factory.mktemp("integrity") / "run"
    run_cli(
        "attnlab-train",
        *TINY,
        "model.d_model=128",
        "model.d_ff=512",
        "test=false",
        f"hydra.run.dir={run_dir}",
        cwd=run_dir.parent,
    )
    assert (run_dir / "checkpoints" / "best.ckpt").is_file()
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    return run_dir


def copy_run(run_dir: Path, dest: Path) -> Path:
    shutil.copytree(run_dir / "checkpoints", dest / "checkpoints")
    return dest


def damage(path: Path, at: float = 0.15, size: int = 4096, seed: int = 0) -> None:
    """Overwrite `size` random bytes at `at` of the file, as a bad disk block would."""
    data = bytearray(path.read_bytes())
    start = int(len(data) * at)
    noise = torch.randint(0, 256, (size,), generator=torch.Generator().manual_seed(seed))
    data[start : start + size] = bytes(noise.to(torch.uint8).tolist())[: len(data) - start]
    path.write_bytes(bytes(data))


def truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def resume_cfg(run_dir: Path, **keys: object) -> OmegaConf:
    return OmegaConf.create(
        {"resume": "auto", "ckpt_path": None, **keys, "paths": {"output_dir": str(run_dir)}}
    )


def test_checkpoint_carries_checksum_and_round_trips(trained_run: Path) -> None:
    best = trained_run / "checkpoints" / "best.ckpt"
    raw = torch.load(best, map_location="cpu", weights_only=False)
    assert isinstance(raw[CHECKSUM_KEY], str) and len(raw[CHECKSUM_KEY]) == 64
    assert read_checkpoint(best)["state_dict"].keys() == raw["state_dict"].keys()


@pytest.mark.parametrize("name", ["encdec.ckpt", "gpt.ckpt"])
def test_old_checkpoint_without_checksum_still_loads(name: str) -> None:
    checkpoint = load_checkpoint(str(FIXTURES / name))
    assert CHECKSUM_KEY not in checkpoint and "state_dict" in checkpoint


def test_random_bytes_inside_best_ckpt_refused_by_eval_naming_the_file(
    trained_run: Path, tmp_path: Path
) -> None:
    """Defect 5: 4 KB of random bytes at 15% of best.ckpt used to load silently (test/loss nan,
    exit 0). Now attnlab-eval fails naming the file and the intact last.ckpt beside it."""
    run = copy_run(trained_run, tmp_path / "run")
    best = run / "checkpoints" / "best.ckpt"
    damage(best)
    # What attnlab before checksums did: the file loads, with garbage weights.
    torch.load(best, map_location="cpu", weights_only=False)
    with pytest.raises(DamagedCheckpointError, match="no longer match the checksum"):
        read_checkpoint(best)
    result = run_cli(
        "attnlab-eval",
        f"ckpt_path={best}",
        "trainer.accelerator=cpu",
        f"hydra.run.dir={tmp_path / 'eval'}",
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if str(best) in line]
    assert lines, result.stderr[-2000:]
    assert "damaged" in lines[-1] and "last.ckpt" in lines[-1], lines[-1]
    assert not (tmp_path / "eval" / "metrics.json").exists()


def test_flipped_bytes_inside_tensor_data_caught_by_checksum(
    trained_run: Path, tmp_path: Path
) -> None:
    """Damage that leaves the zip readable (inside a tensor's bytes: torch checks no CRC)
    loads without error; only the checksum catches it."""
    best = Path(shutil.copy(trained_run / "checkpoints" / "best.ckpt", tmp_path / "best.ckpt"))
    state = torch.load(best, map_location="cpu", weights_only=False)["state_dict"]
    weight = max(state.values(), key=lambda t: t.numel())
    data = bytearray(best.read_bytes())
    start = data.find(weight.contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    assert start > 0
    data[start + 100 : start + 104] = b"\xff\xff\xff\x7f"  # one float becomes nan
    best.write_bytes(bytes(data))
    torch.load(best, map_location="cpu", weights_only=False)  # loads silently ...
    with pytest.raises(DamagedCheckpointError, match="no longer match the checksum"):
        read_checkpoint(best)  # ... but is refused


@pytest.mark.parametrize("offset", [0.02, 0.3, 0.6, 0.9, 0.999])
def test_damage_anywhere_is_caught(trained_run: Path, tmp_path: Path, offset: float) -> None:
    best = shutil.copy(trained_run / "checkpoints" / "best.ckpt", tmp_path / "best.ckpt")
    damage(Path(best), at=offset, size=64, seed=int(offset * 1000))
    with pytest.raises(DamagedCheckpointError, match=str(best)):
        read_checkpoint(best)


def test_truncated_last_ckpt_resume_falls_back_to_intact_best(
    trained_run: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Defect 5: a truncated last.ckpt on resume gave a zip-error traceback naming no file."""
    run = copy_run(trained_run, tmp_path / "run")
    last, best = run / "checkpoints" / "last.ckpt", run / "checkpoints" / "best.ckpt"
    os.utime(best, (1, 1))  # older than last.ckpt
    truncate(last)
    with caplog.at_level("WARNING"):
        assert resume_checkpoint(resume_cfg(run)) == str(best)
    assert any(str(last) in r.getMessage() and "\n" not in r.getMessage() for r in caplog.records)

    damage(best)
    with pytest.raises(ConfigError) as error:
        resume_checkpoint(resume_cfg(run))
    assert str(last) in str(error.value) and str(best) in str(error.value)
    assert "\n" not in str(error.value)


def test_lightning_load_path_verifies_too(trained_run: Path, tmp_path: Path) -> None:
    """trainer.fit(ckpt_path=...) and trainer.test(ckpt_path=best) read through the plugin."""
    best = Path(shutil.copy(trained_run / "checkpoints" / "best.ckpt", tmp_path / "best.ckpt"))
    assert "state_dict" in AtomicCheckpointIO().load_checkpoint(best)
    damage(best)
    with pytest.raises(DamagedCheckpointError, match=str(best)):
        AtomicCheckpointIO().load_checkpoint(best)


def test_text_file_as_ckpt_path_refused_before_work(tmp_path: Path) -> None:
    """Defect 7: `ckpt_path=<a text file>` in training gave `IndexError: pop from empty list`."""
    text = tmp_path / "notes.txt"
    text.write_text("not a checkpoint\n")
    with pytest.raises(ConfigError, match=str(text)) as error:
        resume_checkpoint(OmegaConf.create({"resume": None, "ckpt_path": str(text)}))
    assert "\n" not in str(error.value)
    run_dir = tmp_path / "run"
    result = run_cli(
        "attnlab-train",
        *TINY,
        f"ckpt_path={text}",
        f"hydra.run.dir={run_dir}",
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode != 0
    last = [line for line in result.stderr.splitlines() if line.strip()][-2:]
    assert any(str(text) in line and "not a readable checkpoint" in line for line in last), (
        result.stderr[-2000:]
    )
    assert not (run_dir / "checkpoints").exists()  # no work done


def test_full_disk_on_checkpoint_save_is_one_line_naming_the_path(
    trained_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    checkpoint = torch.load(trained_run / "checkpoints" / "best.ckpt", weights_only=False)
    target = tmp_path / "ckpts" / "last.ckpt"

    def full(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(torch, "save", full)
    with pytest.raises(ArtefactWriteError) as error:
        AtomicCheckpointIO().save_checkpoint(checkpoint, target)
    assert str(error.value) == f"cannot write {target}: No space left on device"
    assert not target.exists() and not list(target.parent.iterdir())  # no temp file left

    def torch_full(*args: object, **kwargs: object) -> None:  # how torch itself reports it
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 64 vs 0")

    monkeypatch.setattr(torch, "save", torch_full)
    with pytest.raises(ArtefactWriteError, match=f"cannot write {target}"):
        AtomicCheckpointIO().save_checkpoint(checkpoint, target)


def test_unwritable_paths_are_one_line_naming_the_path(tmp_path: Path) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    for path in (blocker / "metrics.json", Path("/proc/attnlab_test/metrics.json")):
        with pytest.raises(ArtefactWriteError) as error:
            write_json(path, {"x": 1})
        message = str(error.value)
        assert message.startswith(f"cannot write {path}: ") and "\n" not in message
    with pytest.raises(ArtefactWriteError, match=str(blocker / "c.ckpt")):
        AtomicCheckpointIO().save_checkpoint({"x": torch.zeros(2)}, blocker / "c.ckpt")


def test_resume_cli_with_truncated_last_ckpt_continues_from_best(
    trained_run: Path, tmp_path: Path
) -> None:
    """`attnlab-train resume=<run>` with last.ckpt cut in half: one warning naming it, then
    training continues from best.ckpt (epoch 1 of 2) and finishes. (The damaged file is left
    as it is: the resumed run writes its checkpoints beside it.)"""
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    (run / "metrics.json").unlink(missing_ok=True)
    last, best = run / "checkpoints" / "last.ckpt", run / "checkpoints" / "best.ckpt"
    os.utime(best, (1, 1))
    truncate(last)
    result = run_cli(
        "attnlab-train",
        *TINY,
        "model.d_model=128",
        "model.d_ff=512",
        "test=false",
        "trainer.max_epochs=2",
        f"resume={run}",
        cwd=tmp_path,
    )
    output = result.stdout + result.stderr
    assert f"resume: skipping {last} is not a readable checkpoint" in output, output[-3000:]
    assert f"Resuming from {best}" in output
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["status"] == "done" and metrics["global_step"] == 16  # 8 steps an epoch


def test_full_disk_cli_is_one_line_naming_the_checkpoint(tmp_path: Path) -> None:
    """attnlab-train on a disk that fills at the first checkpoint: one line naming the file
    and the reason, exit 1, no traceback."""
    run = tmp_path / "run"
    result = subprocess.run(
        [
            str(Path(sys.executable).parent / "attnlab-train"),
            *TINY,
            f"hydra.run.dir={run}",
            "+callbacks.disk_full._target_=tests.kill_points.DiskFullOnSave",
        ],
        env={**os.environ, "PYTHONPATH": str(ROOT), "WANDB_MODE": "offline"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 1, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("attnlab:")]
    assert line.startswith(f"attnlab: cannot write {run / 'checkpoints'}")
    assert line.endswith("No space left on device")


def test_a_resume_reads_its_checkpoint_once(
    train_config, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The checkpoint a resume starts from is read and hashed once (checked before any work,
    then handed to Lightning's fit), not three times (check, config comparison, fit): start-up
    costs one read of a checkpoint that may be tens of GB."""
    train(train_config())
    reads: list[str] = []
    real_load = torch.load

    def counting_load(path, *args, **kwargs):
        reads.append(Path(path).name)
        return real_load(path, *args, **kwargs)

    monkeypatch.setattr(torch, "load", counting_load)
    result = train(train_config("resume=auto", "trainer.max_epochs=2"))
    assert result["global_step"] == 16  # resumed at step 8, trained epoch 2
    assert reads.count("last.ckpt") == 1
    assert reads[-1] == "best.ckpt"  # the final test of the best checkpoint reads it afresh


def test_a_kept_checkpoint_is_read_again_once_its_file_changes(tmp_path: Path) -> None:
    path = tmp_path / "a.ckpt"
    AtomicCheckpointIO().save_checkpoint({"step": 1, "w": torch.zeros(3)}, path)
    assert read_checkpoint(path, keep=True)["step"] == 1
    AtomicCheckpointIO().save_checkpoint({"step": 2, "w": torch.ones(3)}, path)
    assert read_checkpoint(path)["step"] == 2  # replaced in between: read afresh
