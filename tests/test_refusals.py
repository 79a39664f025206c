"""Bad input at the command line (issue 31's list): one line on stderr, exit 2, no config tree,
no traceback, nothing of an earlier run changed; refusals that need no torch are made before
anything imports it. The commands run in one interpreter each (a probe), as test_startup does."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import TINY

# Runs each (environment, argv) of argv[1] through its entry point in this one interpreter,
# and prints, per command, its exit code, what it printed and whether torch was loaded after.
PROBE = """
import contextlib, importlib, io, json, os, sys
from hydra.core.global_hydra import GlobalHydra
ENTRY = {"attnlab-train": "attnlab.run.train:main", "attnlab-eval": "attnlab.run.eval:main"}
results = []
for env, argv in json.loads(sys.argv[1]):
    saved = dict(os.environ)
    os.environ.update(env)
    module, _, function = ENTRY[argv[0]].partition(":")
    sys.argv = list(argv)
    out, err, code = io.StringIO(), io.StringIO(), 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            getattr(importlib.import_module(module), function)()
        except SystemExit as stop:
            code = stop.code
    GlobalHydra.instance().clear()
    os.environ.clear()
    os.environ.update(saved)
    results.append({"code": code, "out": out.getvalue(), "err": err.getvalue(),
                    "torch": "torch" in sys.modules})
print(json.dumps(results))
"""


def probe(cases: list[tuple[dict[str, str], list[str]]], cwd: Path) -> list[dict]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    result = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(cases)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    return json.loads(result.stdout.splitlines()[-1])


def assert_one_line(result: dict, expected: str) -> None:
    assert result["code"] == 2, result
    assert result["err"].strip().splitlines() == [f"attnlab: {expected}"], result["err"]
    assert "config\n" not in result["out"] and "Traceback" not in result["err"], result


def records(run: Path) -> dict[Path, int]:
    """A run folder's records and when each was written (the lock file, Hydra's log file and
    the configs of an attempt are none)."""
    skip = (".lock", "train.log")
    files = [p for p in run.rglob("*") if p.is_file() and p.name not in skip]
    return {p: p.stat().st_mtime_ns for p in files if ".hydra" not in p.parts}


SMALL = [*TINY, "print_config=true"]  # the config tree is printed when a run starts


def test_refusals_that_need_no_torch_come_before_it(tmp_path: Path) -> None:
    (tmp_path / "a_file").write_text("not a folder of datasets\n")
    cases = {
        "scheduler.warmup_steps=-10": "scheduler.warmup_steps=-10 is not valid: must be 0 or more",
        "task.label_smoothing=1.5": "task.label_smoothing=1.5 is not valid: must be a "
        "probability in [0, 1]",
        "trainer.max_steps=-5": "trainer.max_steps=-5 is not valid: must be -1 (no limit) or more",
        "data.min_len=20": "data.min_len=20 is not valid: must be at most data.max_len=8",
        "task.beam_size=0": "task.beam_size=0 is not valid: must be a positive number",
        "model.pos=rotary": "model.pos='rotary' is not valid: choose one of ['sinusoidal', "
        "'learned', 'rope', 'alibi', 'none']",
    }
    argvs = [
        ({}, ["attnlab-train", *SMALL, f"hydra.run.dir={tmp_path / str(i)}", override])
        for i, override in enumerate(cases)
    ]
    data_dir = str(tmp_path / "a_file")
    argvs.append(
        (
            {"ATTNLAB_DATA_DIR": data_dir},
            [
                "attnlab-train",
                "experiment=gpt_shakespeare_char_cpu",
                f"hydra.run.dir={tmp_path / 'dd'}",
            ],
        )
    )
    argvs.append(({}, ["attnlab-train", "model.d_modle=64", f"hydra.run.dir={tmp_path / 'typo'}"]))
    results = probe(argvs, tmp_path)
    for result, expected in zip(results, cases.values(), strict=False):
        assert_one_line(result, expected)
    assert_one_line(
        results[-2],
        f"paths.data_dir={data_dir} is not valid: a file, not a directory (set "
        "ATTNLAB_DATA_DIR or paths.data_dir to the folder that holds the datasets)",
    )
    # Hydra's own error ("To append to your config use +model.d_modle=64", exit 1) never shows
    typo = results[-1]
    assert typo["code"] == 2 and "append" not in typo["err"], typo
    (line,) = typo["err"].strip().splitlines()
    assert line.startswith(
        "attnlab: Unknown key model.d_modle (value 64). Did you mean model.d_model?"
    )
    assert not (tmp_path / "typo").exists()  # refused before Hydra made the folder
    assert not any(result["torch"] for result in results), "torch was imported before a refusal"


def test_refusals_found_while_building_come_before_the_config_tree(tmp_path: Path) -> None:
    import torch

    run = tmp_path / "run"
    best = run / "checkpoints" / "best.ckpt"
    notes = tmp_path / "notes.txt"
    notes.write_text("not a checkpoint\n")
    empty = tmp_path / "data" / "multi30k"
    empty.mkdir(parents=True)
    (empty / "train.de").write_text("")
    train = ["attnlab-train", *SMALL]
    cases: list[tuple[dict[str, str], list[str], str]] = [
        ({}, [*train, "data.vocab_size=2"], "data: data.vocab_size=2 must exceed the 3 specials"),
        (
            {},
            [*train, f"ckpt_path={notes}"],
            f"ckpt_path={notes} is not a readable checkpoint: damaged, truncated or not a "
            "checkpoint (UnpicklingError: invalid load key, 'n'.)",
        ),
        (
            {},
            ["attnlab-train", f"resume={run}", *SMALL, "model.d_model=64"],
            f"resume: model.d_model was 32 in the run ({run / 'checkpoints' / 'last.ckpt'}) "
            "but is 64 now; continuing a run cannot change the model, task, data or "
            "optimizer/scheduler class: leave the override out, or start a fresh run",
        ),
        (
            {},
            ["attnlab-eval", f"ckpt_path={best}", "trainer.precision=banana"],
            "trainer.precision='banana' is not valid: expected one of 64, 32, 16, "
            "'transformer-engine', 'transformer-engine-float16', '16-true', '16-mixed', "
            "'bf16-true', 'bf16-mixed', '32-true', '64-true', '64', '32', '16', 'bf16' or null",
        ),
        (
            {"ATTNLAB_DATA_DIR": str(tmp_path / "data")},
            ["attnlab-train", "experiment=encdec_multi30k", "trainer.max_steps=1"],
            f"{empty / 'train.de'} is empty: multi30k needs its text",
        ),
    ]
    if not torch.cuda.is_available():
        cases.append(
            (
                {},
                [*train, "trainer=gpu", "trainer.accelerator=gpu"],  # TINY says cpu
                "trainer.accelerator=gpu is not valid here: this machine has no CUDA GPU that "
                "torch can see; use trainer=cpu (or trainer.accelerator=auto)",
            )
        )
    for number, (_, argv, _) in enumerate(cases):
        if not any(arg.startswith("resume=") for arg in argv):
            argv.append(f"hydra.run.dir={tmp_path / f'job{number}'}")
    from attnlab.run.api import train as train_run

    train_run([*TINY, f"hydra.run.dir={run}"])  # a finished run

    before = records(run)
    results = probe([(env, argv) for env, argv, _ in cases], tmp_path)
    for result, (_, _, expected) in zip(results, cases, strict=True):
        assert_one_line(result, expected)
    # The refused resume changed nothing of the run (its configs are kept in attempt-2, which
    # is never marked started: a later `resume=<run>` does not inherit model.d_model=64).
    attempt = run / ".hydra" / "attempt-2"
    assert not (attempt / "started").exists() and not (run / "failure.json").exists()
    assert records(run) == before


TOKENS = [
    *("model=gpt", "data=tokens", "model.d_model=32", "model.n_heads=2", "model.n_layers=1"),
    *("data.block_size=8", "data.batch_size=4", "trainer.max_steps=2", "print_config=true"),
    *("trainer.val_check_interval=2", "trainer.limit_val_batches=1", "trainer.accelerator=cpu"),
    *("trainer.limit_test_batches=1", "callbacks.rich_progress_bar=null"),
]


def test_shard_folders_and_a_resume_on_another_tokenizers_data(tmp_path: Path) -> None:
    """data=tokens with a missing, unprepared or truncated folder, and a finished run resumed
    with data.path= shards of another tokenizer (another vocabulary: `size mismatch` after
    failure.json was written into the finished run and its attempt marked started)."""
    from attnlab.data.corpus import PrepareSettings, prepare
    from attnlab.run.api import train as train_run
    from tests.data.test_prepare import corpus, write_lines

    text = write_lines(tmp_path / "a.txt", corpus(300, seed=1))
    shards = {}
    for tokenizer in ("char", "bpe"):
        shards[tokenizer] = tmp_path / tokenizer
        prepare(
            PrepareSettings(
                str(shards[tokenizer]),
                str(text),
                tokenizer=tokenizer,
                vocab_size=300,
                workers=1,
                val_fraction=0.1,
                test_fraction=0.1,
            )
        )
    truncated = tmp_path / "truncated"
    shutil.copytree(shards["char"], truncated)
    (truncated / "train-00000.bin").write_bytes(b"\0\0")
    (tmp_path / "unprepared").mkdir()
    run = tmp_path / "run"
    train_run([*TOKENS, f"data.path={shards['char']}", f"hydra.run.dir={run}"])
    before = records(run)
    bad_hf = tmp_path / "bad_hf"
    bad_hf.mkdir()
    (bad_hf / "config.json").write_text("{not json")
    cases = [
        (
            [*TOKENS, f"data.path={tmp_path / 'missing'}"],
            f"data.path={tmp_path / 'missing'} holds no index.json: prepare it first "
            f"(attnlab-prepare input=... out={tmp_path / 'missing'})",
        ),
        (
            [*TOKENS, f"data.path={tmp_path / 'unprepared'}"],
            f"data.path={tmp_path / 'unprepared'} holds no index.json: prepare it first "
            f"(attnlab-prepare input=... out={tmp_path / 'unprepared'})",
        ),
        (
            [*TOKENS, f"data.path={truncated}"],
            f"{truncated / 'train-00000.bin'} does not match {truncated / 'index.json'} (size or "
            f"first/last bytes changed): prepare again, or check with attnlab-prepare "
            f"out={truncated} verify=true",
        ),
        (
            [*TOKENS, f"init.from_hf={bad_hf}"],
            f"init.from_hf={bad_hf}: its config.json cannot be read (It looks like the config "
            f"file at '{bad_hf / 'config.json'}' is not a valid JSON file.)",
        ),
    ]
    argvs = [
        ({}, ["attnlab-train", *argv, f"hydra.run.dir={tmp_path / f'job{i}'}"])
        for i, (argv, _) in enumerate(cases)
    ]
    argvs.append(
        (
            {},
            [
                "attnlab-train",
                f"resume={run}",
                *TOKENS,
                f"data.path={shards['bpe']}",
                "trainer.max_steps=4",
            ],
        )
    )
    *results, resumed = probe(argvs, tmp_path)
    for result, (_, expected) in zip(results, cases, strict=True):
        assert_one_line(result, expected)
    assert resumed["code"] == 2 and "config\n" not in resumed["out"], resumed
    (line,) = resumed["err"].strip().splitlines()
    from attnlab.data.loading.shards import TokenIndex

    sizes = [TokenIndex.load(shards[t]).vocab_size for t in ("char", "bpe")]
    assert (
        line.startswith(
            f"attnlab: resume: network.tok_embed.embedding.weight is [{sizes[0]}, 32] in "
            f"{run / 'checkpoints'}"
        )
        and f"but [{sizes[1]}, 32] in the network built now" in line
    )
    assert f"(the data changed: data.path='{shards['char']}' -> '{shards['bpe']}')" in line
    assert not (run / "failure.json").exists()
    assert not (run / ".hydra" / "attempt-2" / "started").exists()  # not inherited by a resume
    assert records(run) == before


def test_compare_on_an_empty_folder_is_one_line(tmp_path: Path, capsys) -> None:
    from attnlab.compare.cli import main

    try:
        main([str(tmp_path)])
    except SystemExit as stop:
        assert stop.code == 2
    else:
        raise AssertionError("attnlab-compare on an empty folder did not stop")
    assert capsys.readouterr().err.strip().splitlines() == [
        f"attnlab-compare: error: no runs under {tmp_path}: expected job directories with "
        ".hydra/overrides.yaml (a Hydra multirun's sweep directory, or one run's directory)"
    ]
