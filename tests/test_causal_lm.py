"""The causal-LM task, its experiments, generation from a checkpoint, and the LM callbacks."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from attnlab.data.spec import DataSpec
from attnlab.run.train import train
from attnlab.tasks import CausalLMTask
from tests.conftest import TINY_SETUP, compose_config, run_cli

# A small GPT on real data for a few steps.
FAST_LM = [
    "model.d_model=32",
    "model.n_heads=2",
    "model.n_layers=2",
    "trainer.max_steps=4",
    "trainer.val_check_interval=2",
    "trainer.limit_val_batches=2",
    "trainer.limit_test_batches=2",
    "trainer.log_every_n_steps=2",
    "callbacks.rich_progress_bar=null",
    "callbacks.model_summary=null",
    "print_config=false",
]


class FixedLogits(nn.Module):
    def __init__(self, logits: torch.Tensor) -> None:
        super().__init__()
        self.logits = logits

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.logits


def test_loss_is_next_token_cross_entropy_and_ppl_its_exponential() -> None:
    spec = DataSpec(task="causal_lm", vocab_size=11, decode=str, max_len=7)
    task = CausalLMTask(spec)
    losses, counts = [], []
    for _ in range(3):
        logits = torch.randn(4, 7, 11)
        labels = torch.randint(0, 11, (4, 7))
        loss = task.step(FixedLogits(logits), {"input_ids": labels, "labels": labels}, "val")
        expected = F.cross_entropy(logits.reshape(-1, 11), labels.reshape(-1))
        assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
        losses.append(loss.item())
        counts.append(labels.numel())
    ppl = task.metrics("val").compute()["val/ppl"]
    mean_nll = sum(loss * n for loss, n in zip(losses, counts, strict=True)) / sum(counts)
    assert ppl.item() == pytest.approx(math.exp(mean_nll), rel=1e-5)


@pytest.mark.parametrize(
    "overrides",
    [
        ["experiment=gpt_shakespeare_char_cpu"],
        ["experiment=gpt_wikitext2", "data.block_size=32", "data.batch_size=4"],
        # the GPU recipe, shrunk and moved to the CPU: checks it composes and trains
        [
            "experiment=gpt_shakespeare_char",
            "trainer=cpu",
            "trainer.precision=32-true",
            "data.block_size=32",
            "data.batch_size=4",
            "data.num_workers=0",
        ],
    ],
    ids=["gpt_shakespeare_char_cpu", "gpt_wikitext2", "gpt_shakespeare_char"],
)
def test_lm_experiment_trains_a_few_steps(train_config, tmp_path: Path, overrides) -> None:
    result = train(
        train_config(*overrides, *FAST_LM, "callbacks.sample_text.max_new_tokens=8", base=[])
    )
    metrics = result["metrics"]
    assert result["global_step"] == 4
    for name in ("train/loss", "val/loss", "val/ppl", "test/loss", "test/ppl"):
        assert math.isfinite(metrics[name]), name
    assert metrics["val/ppl"] == pytest.approx(math.exp(metrics["val/loss"]), rel=1e-4)
    assert metrics["train/tokens_per_sec"] > 0
    samples = sorted((tmp_path / "samples").glob("step_*.txt"))
    assert [p.name for p in samples] == ["step_0000002.txt", "step_0000004.txt"]
    assert samples[-1].read_text().startswith("=== ")


# A training run and three CLI starts (~23 s, the default suite's longest test): the CLI's
# prompt handling is covered by tests/test_prompts.py (fixture checkpoint), greedy decoding by
# tests/models/test_sampling.py; the whole route runs in the slow suite.
@pytest.mark.slow
def test_generate_cli_continues_the_prompt(train_config, tmp_path: Path) -> None:
    result = train(
        train_config(
            "experiment=gpt_shakespeare_char_cpu", *FAST_LM, "~callbacks.sample_text", base=[]
        )
    )
    out = run_cli(
        "attnlab-generate",
        f"ckpt_path={result['best_checkpoint']}",
        "prompt=ROMEO:",
        "max_new_tokens=20",
        cwd=tmp_path,
    )
    text = out.stdout.rstrip("\n")
    assert text.startswith("ROMEO:")
    assert len(text) == len("ROMEO:") + 20  # one character per token
    greedy = [
        run_cli(
            "attnlab-generate",
            f"ckpt_path={result['best_checkpoint']}",
            "prompt=ROMEO:",
            "max_new_tokens=10",
            "temperature=0",
            f"seed={seed}",
            cwd=tmp_path,
        ).stdout
        for seed in (1, 2)
    ]
    assert greedy[0] == greedy[1]  # greedy ignores the seed


@pytest.mark.slow  # a training run and a CLI start (~30 s): default-suite time (issue 28)
def test_generate_refuses_a_seq2seq_checkpoint(train_config, tmp_path: Path) -> None:
    result = train(train_config("trainer.max_epochs=1", base=TINY_SETUP))
    out = run_cli(
        "attnlab-generate", f"ckpt_path={result['best_checkpoint']}", cwd=tmp_path, check=False
    )
    assert out.returncode != 0
    assert "EncoderDecoder" in out.stderr and "causal_lm" in out.stderr


def test_bf16_mixed_precision_trains_on_cpu(train_config) -> None:
    result = train(
        train_config("data=toy_lm", "model=gpt", "trainer.precision=bf16-mixed", *FAST_LM, base=[])
    )
    assert math.isfinite(result["metrics"]["val/loss"])


def test_throughput_reports_mfu_against_a_given_peak(train_config, tmp_path: Path) -> None:
    peak = 1e12
    result = train(
        train_config(
            "data=toy_lm", "model=gpt", f"callbacks.throughput.peak_flops={peak}", *FAST_LM, base=[]
        )
    )
    metrics = result["metrics"]
    from attnlab.models import DecoderOnly

    block = 32  # data/toy_lm.yaml
    model = DecoderOnly(vocab_size=64, d_model=32, n_heads=2, n_layers=2, max_len=block)
    expected = metrics["train/tokens_per_sec"] * model.flops_per_token(block) / peak
    assert metrics["train/mfu"] == pytest.approx(expected, rel=1e-3)


@pytest.mark.slow
def test_torch_compile_on_cpu_matches_eager(train_config, tmp_path: Path) -> None:
    common = ["data=toy_lm", "model=gpt", *FAST_LM, "trainer.max_steps=2", "test=false", "seed=3"]
    eager = train(compose_config(tmp_path / "eager", common))  # a folder of its own
    compiled = train(train_config(*common, "compile=true", base=[]))
    assert compiled["metrics"]["val/loss"] == pytest.approx(eager["metrics"]["val/loss"], abs=1e-4)
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["metrics"]["val/loss"] == compiled["metrics"]["val/loss"]
