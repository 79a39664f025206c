"""The Python API (attnlab/run/api.py): compose + train without a Hydra app, attnlab.train(...),
attnlab.load(...), and `attnlab.train`, the API function (the command: attnlab/run/train.py)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig

import attnlab
from attnlab.run import ConfigError

TINY_GPT = [
    "model=gpt",
    "data=toy_lm",
    "model.d_model=32",
    "model.n_heads=2",
    "model.n_layers=1",
    "data.block_size=16",
    "data.train_samples_per_epoch=128",
    "data.num_val_tokens=2048",
    "data.num_test_tokens=2048",
    "trainer.accelerator=cpu",
    "trainer.max_epochs=1",
    "trainer.limit_val_batches=2",
    "trainer.limit_test_batches=2",
    "callbacks.rich_progress_bar=null",
    "callbacks.model_summary=null",
]


@pytest.fixture
def no_hydra_app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A notebook's state: no Hydra app ran (earlier tests set HydraConfig), cwd tmp_path."""
    monkeypatch.chdir(tmp_path)
    saved = HydraConfig.instance().cfg
    HydraConfig.instance().cfg = None
    GlobalHydra.instance().clear()
    yield tmp_path
    HydraConfig.instance().cfg = saved
    GlobalHydra.instance().clear()


def test_paths_resolve_without_a_hydra_app(no_hydra_app: Path) -> None:
    """Was: InterpolationResolutionError ... HydraConfig was not set (paths.*)."""
    with initialize_config_module("attnlab.conf", version_base="1.3"):
        cfg = compose("train", overrides=TINY_GPT)
    run_dir = Path(cfg.paths.output_dir)
    assert run_dir.parent == no_hydra_app / "logs" / "train" / "runs"
    assert cfg.paths.output_dir == str(run_dir)  # one folder, however often it is read
    assert Path(cfg.paths.log_dir) == no_hydra_app / "logs"
    with initialize_config_module("attnlab.conf", version_base="1.3"):
        other = compose("train", overrides=TINY_GPT)
    assert other.paths.output_dir != str(run_dir)  # each composition its own folder
    fixed = attnlab.compose_train_config(TINY_GPT)
    assert Path(fixed.paths.output_dir).parent == run_dir.parent and "hydra" not in fixed


@pytest.mark.slow
def test_compose_then_train_without_a_hydra_app(no_hydra_app: Path) -> None:
    from attnlab.run.train import train

    with initialize_config_module("attnlab.conf", version_base="1.3"):
        cfg = compose("train", overrides=[*TINY_GPT, "trainer.max_steps=2", "test=false"])
    result = train(cfg)
    run_dir = Path(cfg.paths.output_dir)
    assert run_dir.parent == no_hydra_app / "logs" / "train" / "runs"
    assert json.loads((run_dir / "metrics.json").read_text())["global_step"] == 2
    assert result["global_step"] == 2 and (run_dir / "checkpoints").is_dir()


def test_train_then_load_and_generate(no_hydra_app: Path) -> None:
    saved = HydraConfig.instance().cfg
    result = attnlab.train(TINY_GPT)  # 4 steps: 128 samples, batches of 32
    assert HydraConfig.instance().cfg is saved  # Hydra's global state as it was
    assert isinstance(result, attnlab.TrainResult)
    assert result.run_dir.parent == no_hydra_app / "logs" / "train" / "runs"
    assert result.global_step == 4
    assert math.isfinite(result.metrics["val/loss"]) and math.isfinite(result.metrics["test/loss"])
    assert result.summary["choices"]["model"] == "gpt"  # as attnlab-train records them
    assert not (result.run_dir / ".hydra").exists()

    lm = attnlab.load(result.run_dir)
    assert lm.checkpoint == result.best_checkpoint and lm.task_name == "causal_lm"
    assert not lm.network.training
    # The network holds the checkpoint's weights.
    saved_weights = torch.load(lm.checkpoint, weights_only=True)["state_dict"]
    for name, value in lm.network.state_dict().items():
        torch.testing.assert_close(value, saved_weights[f"network.{name}"])
    texts = lm.generate("1 2 3", max_new_tokens=5, num_samples=2, temperature=0)
    assert len(texts) == 2 and texts[0] == texts[1]  # greedy
    assert texts[0].startswith("1 2 3") and len(texts[0].split()) == 8
    assert lm.generate("1 2 3", 5, seed=1) == attnlab.load(lm.checkpoint).generate(
        "1 2 3", 5, seed=1
    )
    with pytest.raises(ConfigError, match="needs a masked_lm checkpoint"):
        lm.fill_mask("a [MASK]")
    with pytest.raises(ConfigError, match="classify needs a classification run"):
        lm.classify("1 2")
    with pytest.raises(ConfigError, match="translating needs a seq2seq"):
        lm.translate("1 2")


def test_bad_input_names_what_is_wrong(no_hydra_app: Path) -> None:
    with pytest.raises(ConfigError, match="neither a checkpoint file nor a run folder"):
        attnlab.load(no_hydra_app / "missing")
    with pytest.raises(ConfigError, match="holds no checkpoint"):
        attnlab.load(no_hydra_app)
    with pytest.raises(TypeError, match="list of strings"):
        attnlab.train("model=gpt")  # type: ignore[arg-type]
    # A run that fails leaves failure.json, as attnlab-train's do (attnlab-compare reads it).
    with pytest.raises(ConfigError, match=r"trainer\.precision=16-true"):
        attnlab.train([*TINY_GPT, "trainer.precision=16-true"])
    (failure,) = (no_hydra_app / "logs" / "train" / "runs").glob("*/failure.json")
    assert "trainer.precision=16-true" in json.loads(failure.read_text())["error"]


def test_attnlab_train_is_the_api_function() -> None:
    from attnlab.run.api import train as api_train
    from attnlab.run.train import check_config, main, train

    assert attnlab.train is api_train
    assert callable(main) and callable(check_config) and callable(train)
    assert attnlab.load.__module__ == "attnlab.run.api"
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        attnlab.nope  # noqa: B018


def test_importing_attnlab_imports_no_torch() -> None:
    code = (
        "import sys, attnlab; assert 'torch' not in sys.modules, 'torch'; "
        "assert 'lightning.pytorch' not in sys.modules, 'Lightning'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


@pytest.mark.slow
def test_example_script_runs(no_hydra_app: Path) -> None:
    """examples/python_api.py, as the README shows it: a GPT and a BERT (with NSP)."""
    import runpy

    script = Path(__file__).resolve().parents[1] / "examples" / "python_api.py"
    example = runpy.run_path(str(script))  # defines, runs nothing: __name__ is not __main__
    texts = example["gpt_on_toy_lm"](steps=4)
    assert len(texts) == 1 and texts[0].startswith("1 2 3")
    answers = example["bert_on_toy_text"](steps=4)
    assert len(answers) == 1 and len(answers[0]) == 3
    assert all(0.0 <= p <= 1.0 for _, p in answers[0])
    assert len(list((no_hydra_app / "logs" / "train" / "runs").iterdir())) == 2


@pytest.mark.slow
def test_classify_reads_text_as_the_data_does(no_hydra_app: Path) -> None:
    words = ["good", "great", "fine", "bad", "awful", "poor", "film", "plot", "the", "a"]
    rng = torch.Generator().manual_seed(0)
    for name, rows in (("train.tsv", 160), ("test.tsv", 32)):
        lines = ["sentence\tlabel"]
        for _ in range(rows):
            picked = [words[i] for i in torch.randint(len(words), (5,), generator=rng)]
            label = int(sum(w in ("good", "great", "fine") for w in picked) >= 2)
            lines.append(f"{' '.join(picked)}\t{label}")
        (no_hydra_app / name).write_text("\n".join(lines) + "\n")
    result = attnlab.train(
        [
            "model=bert",
            "data=tsv_classification",
            f"data.source.data_dir={no_hydra_app}",
            "data.source.train=train.tsv",
            "data.source.test=test.tsv",
            "data.source.val_size=32",
            "data.wordpiece_vocab_size=100",
            "data.max_len=16",
            "model.d_model=32",
            "model.n_heads=2",
            "model.n_layers=1",
            "trainer.accelerator=cpu",
            "trainer.max_epochs=1",
            "callbacks.rich_progress_bar=null",
            "callbacks.model_summary=null",
        ]
    )
    classifier = attnlab.load(result.run_dir)
    texts = ["the good film", "a bad awful plot", "fine"]
    probs = classifier.class_probabilities(texts)
    assert probs.shape == (3, 2)
    torch.testing.assert_close(probs.sum(-1), torch.ones(3))
    assert classifier.classify(texts) == probs.argmax(-1).tolist()
    # Padding changes nothing: each text alone gets what it got in the batch.
    for i, text in enumerate(texts):
        torch.testing.assert_close(classifier.class_probabilities(text)[0], probs[i])
    with pytest.raises(ConfigError, match="generating needs a decoder-only"):
        classifier.generate("the")
