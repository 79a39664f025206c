"""First-run traps (issue 22), each with a test that would catch it again."""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.utilities.model_summary.model_summary import get_human_readable_count

from attnlab.callbacks import RichProgressBar
from attnlab.run.train import optimized_value, train
from tests.conftest import TINY, compose_config, run_cli

SLOW = pytest.mark.slow


class CountValidations(pl.Callback):
    def __init__(self) -> None:
        self.at_steps: list[int] = []

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.sanity_checking:
            self.at_steps.append(trainer.global_step)


def test_a_short_run_validates_prints_progress_and_a_true_summary(
    train_config, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    """`attnlab-train trainer.max_steps=3 > log`: 8 batches an epoch, validation once an
    epoch, so the run ends before its first validation; output is not a terminal."""
    cfg = train_config(
        "trainer.max_steps=3",
        "trainer.log_every_n_steps=1",
        "callbacks.plain_progress.interval_s=0",  # a line at every logging step
        base=[arg for arg in TINY if not arg.startswith("callbacks.model_summary")],
    )
    counter = CountValidations()
    with caplog.at_level("INFO", logger="attnlab.callbacks.progress"):
        result = train(cfg, extra_callbacks=[counter])
    assert counter.at_steps == [3]
    assert optimized_value(cfg, result) == result["metrics"]["val/loss"]
    assert Path(result["best_checkpoint"]).is_file()  # and test used it
    lines = [r.getMessage() for r in caplog.records if r.name == "attnlab.callbacks.progress"]
    first, *lines, validation = lines  # issue 31: the first step and each validation say so
    assert re.fullmatch(r"first training batch done \d+\.\d s after fit began", first), first
    assert validation.startswith(
        f"validation at step 3: val/acc {result['metrics']['val/acc']:.4f}"
    )
    assert [line.split()[:2] for line in lines] == [
        ["step", "1/3"],
        ["step", "2/3"],
        ["step", "3/3"],
    ]
    for line in lines:
        assert re.search(r"loss \d+\.\d{4} .*tokens/s .*ETA \d+:\d\d:\d\d$", line), line
    assert lines[-1].endswith("ETA 0:00:00")
    summary = capsys.readouterr().out
    flops = get_human_readable_count(result["flops_per_token"]).strip()
    assert f"Training FLOPs per token: {flops} (at " in summary, summary
    assert "Total FLOPs" not in summary and "FLOPs " not in summary.split("Trainable")[0]


@SLOW
@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        # the last step validates anyway: no second validation
        (["trainer.max_steps=4", "trainer.val_check_interval=2"], [2, 4]),
        # epochs that never validate (every 5th epoch, 2 epochs)
        (["trainer.max_epochs=2", "trainer.check_val_every_n_epoch=5"], [16]),
    ],
)
def test_validation_at_the_last_step_only_when_none_ran(
    train_config, overrides: list[str], expected: list[int]
) -> None:
    cfg = train_config(*overrides)
    counter = CountValidations()
    result = train(cfg, extra_callbacks=[counter])
    assert counter.at_steps == expected
    assert optimized_value(cfg, result) == result["metrics"]["val/loss"]


@pytest.mark.parametrize(
    ("max_epochs", "expected"), [(-1, "Epoch 0"), (None, "Epoch 0"), (10, "Epoch 0/9")]
)
def test_progress_bar_names_no_negative_last_epoch(max_epochs: int | None, expected: str) -> None:
    bar = RichProgressBar()
    bar._trainer = SimpleNamespace(max_epochs=max_epochs, max_steps=-1)  # what it reads
    assert bar.train_description(0).strip() == expected


def test_progress_bar_counts_to_the_step_that_ends_the_run() -> None:
    """`trainer.max_steps=20` with max_epochs 10: the bar read `Epoch 0/9 20/3772 • 3:25:53`."""
    bar = RichProgressBar()
    trainer = dict(max_epochs=10, max_steps=20, num_training_batches=3772)
    bar._trainer = SimpleNamespace(**trainer, global_step=5, accumulate_grad_batches=2)
    assert bar.total_train_batches == 30  # 15 steps left, 2 batches each
    assert bar.train_description(0).strip() == "Epoch 0"
    bar._trainer = SimpleNamespace(**{**trainer, "max_steps": -1}, global_step=5)
    assert bar.total_train_batches == 3772


def test_a_redirected_log_reads_well(tmp_path: Path) -> None:
    """`attnlab-train ... > log`: no progress bar frames, the first step and each validation
    with its metrics, and each of Lightning's lines once (it printed them twice)."""
    args = [arg for arg in TINY if not arg.startswith("callbacks.rich_progress_bar")]
    args += ["trainer.max_steps=4", "trainer.max_epochs=10", "trainer.val_check_interval=2"]
    args += ["trainer.log_every_n_steps=2", "callbacks.plain_progress.interval_s=0"]
    result = run_cli("attnlab-train", *args, f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    log = result.stdout + result.stderr
    assert "it/s" not in log and "Epoch 0" not in log, log  # no progress bar frame
    assert log.count("GPU available: False") == 1, log
    assert "first training batch done" in log
    assert [
        line.split(": ")[0].split("- ")[-1] for line in log.splitlines() if "validation at" in line
    ] == ["validation at step 2", "validation at step 4"]
    assert re.search(r"step 4/4 \(100%\)  loss \d", log), log  # the ETA counts to max_steps
    assert re.search(r"validation at step 4: val/acc \d\.\d{4}  val/bleu", log), log


def test_the_python_api_is_as_quiet_as_the_cli(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    recwarn: pytest.WarningsRecorder,
) -> None:
    """attnlab.train printed Lightning's tip, the LeafSpec deprecation, and with
    callbacks.model_summary=null Lightning's own summary ("Total FLOPs: 0")."""
    import attnlab

    with caplog.at_level("INFO"):
        attnlab.train([*TINY, f"hydra.run.dir={tmp_path / 'run'}"])
    printed = capsys.readouterr()
    text = printed.out + printed.err + caplog.text
    assert "Tip:" not in text and "Total FLOPs" not in text and "| Name" not in text, text
    assert not [w for w in recwarn if "LeafSpec" in str(w.message)]


def test_config_tree_is_printed_whole_when_output_is_not_a_terminal(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from omegaconf import OmegaConf

    from attnlab.run.config_report import print_config

    long = "/" + "/".join(f"folder{i}" for i in range(30)) + "/end"  # 250 columns
    print_config(OmegaConf.create({"paths": {"data_dir": long}, "seed": 1}))
    lines = capsys.readouterr().out.splitlines()
    assert any(f"data_dir: {long}" in line for line in lines), "\n".join(lines)


def test_uninformative_warnings_are_silenced_and_real_ones_kept(
    caplog: pytest.LogCaptureFixture,
) -> None:
    import warnings

    from lightning.pytorch.loggers import WandbLogger
    from lightning.pytorch.utilities import rank_zero_info
    from torch.utils._pytree import LeafSpec

    from attnlab.utils.quiet import quiet_loggers, silence_uninformative_warnings

    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            silence_uninformative_warnings()
            LeafSpec()  # what Lightning's _pytree does at every step's flatten
            warnings.warn("a real warning", UserWarning, stacklevel=1)
        assert [str(w.message) for w in caught] == ["a real warning"]
        with caplog.at_level("INFO", logger="lightning.pytorch.utilities.rank_zero"):
            rank_zero_info("💡 Tip: For seamless cloud logging, try installing litlogger")
            rank_zero_info("Trainer already configured with model summary callbacks: [...]")
            rank_zero_info("GPU available: False, used: False")
        assert [r.getMessage() for r in caplog.records] == ["GPU available: False, used: False"]
    finally:
        silence_uninformative_warnings(False)
    logger = WandbLogger(offline=True)  # its arguments to wandb.init, not yet called
    quiet_loggers([logger])
    assert "anonymous" not in logger._wandb_init and logger._wandb_init["resume"] == "allow"


def test_ignore_warnings_is_a_train_key_defaulting_to_true(train_config) -> None:
    cfg = train_config()
    assert cfg.extras.ignore_warnings is True
    # Optuna's storage: alembic's "setup plugin ..." INFO lines, before and in every job
    for logging_config in (cfg.hydra.hydra_logging, cfg.hydra.job_logging):
        assert logging_config.loggers.alembic.level == "WARNING"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_generate_runs_on_the_gpu_when_there_is_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """attnlab-generate's default device=auto: the network is on the GPU."""
    from attnlab import run as build
    from attnlab.run.generate import generate

    loaded = {}
    load = build.load_trained_module

    def spy(*args: object, **kwargs: object) -> object:
        loaded["result"] = load(*args, **kwargs)
        return loaded["result"]

    monkeypatch.setattr(build, "load_trained_module", spy)
    checkpoint = Path(__file__).parent / "fixtures" / "checkpoints" / "gpt.ckpt"
    cfg = compose_config(
        tmp_path,
        [f"ckpt_path={checkpoint}", "prompt=' 1 2 3'", "max_new_tokens=4"],  # toy tokens: ids
        config_name="generate",
    )
    assert cfg.device == "auto"
    (text,) = generate(cfg)
    module = loaded["result"][2]
    assert next(module.network.parameters()).device.type == "cuda"
    assert len(text) > 0


@pytest.mark.parametrize(
    ("fast_dev_run", "checkpointing", "reason"),
    [(1, None, "fast_dev_run"), (False, None, "checkpointing is off"), (False, 1, "no validation")],
)
def test_no_best_checkpoint_message_names_the_reason(fast_dev_run, checkpointing, reason) -> None:
    from attnlab.run.train import _no_best

    trainer = SimpleNamespace(fast_dev_run=fast_dev_run, checkpoint_callback=checkpointing)
    assert _no_best(trainer).startswith(reason)
