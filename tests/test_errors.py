"""Bad input fails before any work, with a message naming the problem and the valid choices."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import initialize_config_module
from omegaconf import OmegaConf

from attnlab.data.loading.download import UnreadableDataError, read_lines
from attnlab.run import ConfigError, check_compatibility, load_run_config
from attnlab.run.errors import exit_on_unwritable_output, unknown_key_hints
from attnlab.run.generate import generate
from attnlab.run.hydra_hooks import CheckJobsFirst, sweep_jobs
from attnlab.run.train import train
from attnlab.run.translate import translate
from attnlab.run.validation import check_optimized_metric
from attnlab.tasks.base import Task
from tests.conftest import TINY_SETUP, compose_config, run_cli


def test_unknown_model_option_lists_choices(tmp_path: Path) -> None:
    result = run_cli("attnlab-train", "model=transfomer", cwd=tmp_path, check=False)
    assert result.returncode != 0
    assert "model/transfomer" in result.stderr
    assert "encdec" in result.stderr  # the valid choices are listed


def test_unknown_data_option_lists_choices(tmp_path: Path) -> None:
    result = run_cli("attnlab-train", "data=revers", cwd=tmp_path, check=False)
    assert result.returncode != 0
    assert "data/revers" in result.stderr
    assert "reverse" in result.stderr and "sort" in result.stderr


def test_misspelt_key_is_named_with_suggestion(tmp_path: Path) -> None:
    result = run_cli("attnlab-train", "trainer.max_epoch=3", cwd=tmp_path, check=False)
    assert result.returncode != 0
    assert "trainer.max_epoch" in result.stderr
    assert "trainer.max_epochs" in result.stderr  # did you mean
    assert not (tmp_path / "logs").exists() or not any((tmp_path / "logs").rglob("*.ckpt"))


def test_key_set_to_a_required_value_is_not_called_unknown() -> None:
    # bert_sst2_finetune declares init.pretrained: ??? ; filling it in is not a misspelling.
    hints = unknown_key_hints("train", ["experiment=bert_sst2_finetune", "init.pretrained=a.ckpt"])
    assert hints == []
    (hint,) = unknown_key_hints("train", ["experiment=bert_sst2_finetune", "init.pretraned=a.ckpt"])
    assert "Unknown key init.pretraned" in hint and "init.pretrained" in hint


def test_missing_checkpoint_file_is_named(train_config, tmp_path: Path) -> None:
    missing = tmp_path / "nope" / "last.ckpt"
    with pytest.raises(ConfigError, match=r"ckpt_path=.*nope/last\.ckpt does not exist"):
        train(train_config(f"ckpt_path={missing}"))
    assert not (tmp_path / "checkpoints").exists()  # failed before any work


def test_text_file_as_checkpoint_is_refused_by_name(train_config, tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("not a checkpoint\n")
    with pytest.raises(ConfigError, match=r"ckpt_path=.*notes\.txt"):
        train(train_config(f"ckpt_path={text}"))
    assert not (tmp_path / "checkpoints").exists()


@pytest.mark.slow  # a CLI start (~20 s): default-suite time (issue 28)
def test_eval_missing_checkpoint_cli(tmp_path: Path) -> None:
    result = run_cli("attnlab-eval", "ckpt_path=missing.ckpt", cwd=tmp_path, check=False)
    assert result.returncode != 0
    assert "ckpt_path=missing.ckpt does not exist" in result.stderr


def test_corrupt_checkpoint_is_reported_by_name(tmp_path: Path) -> None:
    bad = tmp_path / "broken.ckpt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ConfigError, match=r"broken\.ckpt is not a readable checkpoint"):
        load_run_config(str(bad))


def test_unsupported_model_task_pair_fails_at_config_time(train_config) -> None:
    cfg = train_config()
    cfg.task._target_ = "tests.test_errors.FakeTask"
    with pytest.raises(ConfigError, match=r"cannot do task 'fake'.*supports: seq2seq"):
        check_compatibility(cfg)


class FakeTask:
    name = "fake"


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("model.n_heads=3", r"model\.n_heads=3 .*d_model \(32\) must be divisible.*1, 2, 4, 8"),
        ("trainer.max_epochs=abc", r"trainer\.max_epochs='abc' is not valid: expected int or null"),
        ("trainer.max_epochs=2.5", r"trainer\.max_epochs=2\.5 is not valid: expected int"),
        ("trainer.precision=banana", r"trainer\.precision='banana' .*one of .*'bf16-mixed'"),
        ("trainer.accelerator=tpuu", r"trainer: .*accelerator='tpuu'.*Available names are: .*cpu"),
        ("trainer.gradient_clip_val=x", r"trainer\.gradient_clip_val='x' .*int or float or null"),
        ("data.batch_size=abc", r"data\.batch_size='abc' is not valid: expected int"),
        ("data.batch_size=0", r"data\.batch_size=0 is not valid: must be a positive number"),
        ("data.num_workers=-1", r"data\.num_workers=-1 is not valid: must be 0 or more"),
        # options a stable DataModule passes on to its source (data/stable.py)
        ("data.vocab_size=abc", r"data\.vocab_size='abc' is not valid: expected int"),
        ("data.transform=7", r"data\.transform=7 is not valid: expected str"),
        ("model.d_model=abc", r"model\.d_model='abc' is not valid: expected int"),
        ("model.n_heads=0", r"model\.n_heads=0 is not valid: must be a positive number"),
        (
            "model.dropout=1.5",
            r"model\.dropout=1\.5 is not valid: must be a probability in \[0, 1\)",
        ),
        ("optimizer.lr=abc", r"optimizer\.lr='abc' is not valid: must be a positive number"),
        ("optimizer.lr=-1", r"optimizer\.lr=-1 is not valid: must be a positive number"),
        ("task.label_smoothing=abc", r"task\.label_smoothing='abc' is not valid: expected float"),
        ("model.activation=tanh", r"model\.activation='tanh' .*relu.*gelu.*swiglu"),
        ("model.n_kv_heads=3", r"model\.n_kv_heads=3 .*n_heads \(2\) must be divisible by n_kv"),
        ("model.pos=none", r"model\.pos='none' .*is for decoder-only models.*'sinusoidal'"),
        ("task.beam_size=0", r"task\.beam_size=0 is not valid: must be a positive number"),
        ("model.pos=rotary_typo", r"model\.pos='rotary_typo' .*sinusoidal.*learned"),
        ("model.norm=batchnorm", r"model\.norm='batchnorm' .*layernorm"),
        ("data.transform=shuffle", r"data: .*'shuffle'.*copy.*reverse.*sort"),
        ("data.min_len=9", r"data\.min_len=9 is not valid: must be at most data\.max_len=8"),
        # issue 18: refused before any work, naming the key and what is valid
        (
            "optimized_metric=val/accuracy",
            r"optimized_metric=val/accuracy .*logs .*val/exact_match",
        ),
        ("data.num_train=0", r"data\.num_train=0 is not valid: must be a positive number"),
        ("model.max_len=4", r"model\.max_len=4 is not valid: data\.max_len=8 needs at least 8"),
        ("trainer.precision=16-true", r"trainer\.precision=16-true is not valid .*16-mixed"),
        ("trainer.accumulate_grad_batches=0", r"accumulate_grad_batches=0 .*a positive number"),
        ("trainer.gradient_clip_val=-1", r"gradient_clip_val=-1 is not valid: must be 0 or more"),
        ("optimizer.betas=[0.9]", r"optimizer\.betas=\[0\.9\] .*expected a list of 2: \[float"),
        ("seed=abc", r"seed='abc' is not valid: expected int or null"),
        ("model.n_kv_heads=0", r"model\.n_kv_heads=0 .*n_kv_heads can be 1, 2"),
        ("model.n_kv_heads=-2", r"model\.n_kv_heads=-2 .*n_kv_heads can be 1, 2"),
        # issue 31: tracebacks or a config tree before the line, until these
        ("scheduler.warmup_steps=-10", r"scheduler\.warmup_steps=-10 is not valid: must be 0 or"),
        ("task.label_smoothing=1.5", r"label_smoothing=1\.5 is not valid: must be a probability"),
        ("trainer.max_steps=-5", r"trainer\.max_steps=-5 is not valid: must be -1 \(no limit\)"),
        ("trainer.max_epochs=-2", r"trainer\.max_epochs=-2 is not valid: must be -1"),
        ("data.min_len=20", r"data\.min_len=20 is not valid: must be at most data\.max_len=8"),
        ("data.vocab_size=2", r"data: data\.vocab_size=2 must exceed the 3 specials"),
        ("task.val_beam_size=0", r"task\.val_beam_size=0 is not valid: must be a positive"),
        ("scheduler=inverse_sqrt", None),
        ("trainer.max_steps=-1", None),
    ],
)
def test_bad_values_name_key_and_choices(
    train_config, tmp_path: Path, override: str, expected: str | None
) -> None:
    if expected is None:  # a control: the same machinery accepts a good value
        train(train_config(override, "debug=fast"))
        return
    with pytest.raises(ConfigError, match=expected):
        train(train_config(override))
    assert not (tmp_path / "checkpoints").exists()


# --- issue 18: the CLI refuses bad input with one line, before any work ---------------------

SHORT = [*TINY_SETUP, "trainer.max_epochs=1", "trainer.limit_train_batches=2"]


def test_config_error_is_one_line_after_no_config_tree(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    args = [*SHORT, "print_config=true", "optimized_metric=val/accuracy"]
    result = run_cli("attnlab-train", *args, cwd=tmp_path, check=False)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "attnlab: optimized_metric=val/accuracy is not valid: task 'seq2seq' logs train/loss, "
        "train/acc, val/loss, val/acc, val/exact_match, val/bleu, progress/tokens_seen, "
        "progress/wall_time_s, train/tokens_per_sec, train/mfu"
    ]
    assert "_target_" not in result.stdout  # the config tree comes after the checks
    assert not list(tmp_path.rglob("*.ckpt"))
    monkeypatch.setenv("HYDRA_FULL_ERROR", "1")  # the traceback, when asked for
    result = run_cli("attnlab-train", *args, cwd=tmp_path, check=False)
    assert result.returncode != 0 and "Traceback" in result.stderr


def test_multirun_checks_every_job_before_the_first(tmp_path: Path) -> None:
    result = run_cli(
        "attnlab-train", "-m", "model.pos=rope,alibii", *SHORT, cwd=tmp_path, check=False
    )
    assert result.returncode == 2
    assert "attnlab: multirun job 1 of 2 (model.pos=alibii" in result.stderr
    assert not (tmp_path / ".lock").exists()  # checking a job claims no folder
    assert "model.pos='alibii' is not valid" in result.stderr
    assert not (tmp_path / "logs" / "train" / "multiruns").exists()  # job 0 never ran


def test_missing_resume_directory_is_refused(tmp_path: Path) -> None:
    missing = tmp_path / "no_such_run"
    result = run_cli("attnlab-train", f"resume={missing}", *SHORT, cwd=tmp_path, check=False)
    assert result.returncode == 2
    assert result.stderr.strip() == f"attnlab: resume={missing} is not valid: no such run directory"
    assert not missing.exists()  # no fresh run trained in its place


def test_optuna_choices_are_checked_without_stopping_the_search(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture
) -> None:
    """A sampled value that fails is a failed trial (test_sweeps.py); it is named at start."""
    cfg = compose_config(tmp_path, ["hparams_search=optuna", *TINY_SETUP])
    check = CheckJobsFirst("attnlab.run.train.check_config")
    OmegaConf.set_readonly(cfg.hydra, False)
    cfg.hydra.overrides.task = [*TINY_SETUP, "model.n_heads=choice(2,3)"]
    jobs, sampled = sweep_jobs(cfg)
    assert len(jobs) == 1 and "model.n_heads=3" in sampled and "model.pos=rope" not in sampled
    with initialize_config_module("attnlab.conf", version_base="1.3"):
        with caplog.at_level("WARNING"):
            check.on_multirun_start(cfg, config_name="train")
        assert "sweep value model.n_heads=3: its trials will fail" in caplog.text
        cfg.hydra.overrides.task = [*TINY_SETUP, "model.pos=rop"]  # fixed for every trial
        with pytest.raises(SystemExit) as stopped:
            check.on_multirun_start(cfg, config_name="train")
    assert stopped.value.code == 2
    assert "attnlab: multirun job 0 of 1" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("command", "override", "expected"),
    [
        ("generate", "num_samples=0", r"num_samples=0 is not valid: must be a positive number"),
        ("generate", "max_new_tokens=-5", r"max_new_tokens=-5 is not valid: must be a positive"),
        ("translate", "batch_size=0", r"batch_size=0 is not valid: must be a positive number"),
        ("translate", "text=''", r"text='' is not valid: give non-empty sentences"),
    ],
)
def test_command_settings_are_checked_before_loading(
    tmp_path: Path, command: str, override: str, expected: str
) -> None:
    function = {"generate": generate, "translate": translate}[command]
    missing = tmp_path / "never_read.ckpt"  # the check comes before the checkpoint is read
    text = ["text=Ein Hund."] if command == "translate" else []
    cfg = compose_config(tmp_path, [f"ckpt_path={missing}", *text, override], command)
    with pytest.raises(ConfigError, match=expected):
        function(cfg)


def test_binary_data_file_is_named(tmp_path: Path) -> None:
    binary = tmp_path / "train.de"
    binary.write_bytes(b"Ein Hund\n\xff\xfe\x00binary")
    with pytest.raises(UnreadableDataError, match=r"train\.de is not UTF-8 text \(byte 0xff"):
        read_lines(binary)


@pytest.mark.parametrize("where", ["file", "proc"])
def test_unwritable_output_directory_is_one_line_before_hydra(tmp_path: Path, where: str) -> None:
    if where == "proc" and not Path("/proc/self").exists():
        pytest.skip("no /proc on this system")
    (tmp_path / "a_file").write_text("in the way")
    target = tmp_path / "a_file" / "run" if where == "file" else Path("/proc/attnlab/run")
    result = run_cli("attnlab-train", f"hydra.run.dir={target}", cwd=tmp_path, check=False)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"attnlab: hydra.run.dir={target}: cannot write there "
        f"({'Not a directory' if where == 'file' else 'No such file or directory'})"
    ]


def test_a_quoted_output_directory_is_made_without_its_quotes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Lightning re-runs the command for each DDP rank with hydra.run.dir="<dir>", quoted: the
    check before Hydra made a directory named with the quotes in the working directory."""
    monkeypatch.chdir(tmp_path)
    exit_on_unwritable_output([f'hydra.run.dir="{tmp_path / "a run"}"', "--config-dir=/x"])
    assert [p.name for p in tmp_path.iterdir()] == ["a run"]
    exit_on_unwritable_output(["--cfg", "job", f"hydra.run.dir={tmp_path / 'not made'}"])
    assert not (tmp_path / "not made").exists()  # printing the config writes nothing


class UndeclaredTask(Task):
    """An extension's task that declares no metric_names."""

    name = "undeclared"


def test_optimized_metric_check_spares_other_logged_names_and_undeclared_tasks(
    train_config,
) -> None:
    for name in ("progress/tokens_seen", "train/lr/decay", "val/exact_match"):
        check_optimized_metric(train_config(f"optimized_metric={name}"))
    with pytest.raises(ConfigError, match=r"optimized_metric=val/accuracy is not valid"):
        check_optimized_metric(train_config("optimized_metric=val/accuracy"))
    cfg = train_config("optimized_metric=val/perplexity_of_my_own")
    cfg.task._target_ = "tests.test_errors.UndeclaredTask"
    check_optimized_metric(cfg)  # what it logs is not known: left to Lightning


@pytest.mark.parametrize("model", ["encdec", "gpt", "bert"])
@pytest.mark.parametrize("key", ["pos", "norm", "activation"])
def test_the_choices_checked_before_torch_are_the_models_own(
    tmp_path: Path, model: str, key: str
) -> None:
    """run/early_checks.py names the built-in networks' choices without importing models/:
    its refusal is the network's own, word for word."""
    from attnlab.models.registry import network_class_of
    from attnlab.run.early_checks import check_before_torch

    cfg = compose_config(tmp_path, [f"model={model}", f"model.{key}=bogus"])
    with pytest.raises(ConfigError) as early:
        check_before_torch(cfg)
    values = OmegaConf.to_container(cfg.model, resolve=True)
    with pytest.raises(ValueError) as late:
        network_class_of(values).check_arguments(values)
    assert str(early.value) == str(late.value)
