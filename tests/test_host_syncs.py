"""A training step reads no tensor value on the host except at logging steps (issue 19).

On a GPU every such read (`loss.item()`, `bool(mask.any())`, `x[mask]`, `torch.unique`)
waits for the queued kernels, so the host stops feeding the device. These runs use the
default callbacks (progress bar, checkpoints, LR monitor, throughput, resume state, NaN guard)
and the CSV logger, and count the reads of every batch (tests/host_reads.py).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from attnlab.train import train
from tests.conftest import compose_config
from tests.host_reads import HostReads

LOG_EVERY = 4
BATCHES = 8  # a multiple of LOG_EVERY: Lightning's and the module's logging steps agree
COMMON = [
    "model.d_model=32",
    "model.n_heads=2",
    "model.d_ff=64",
    "trainer.accelerator=cpu",
    "trainer.max_epochs=2",
    f"trainer.limit_train_batches={BATCHES}",
    "trainer.limit_val_batches=2",
    f"trainer.log_every_n_steps={LOG_EVERY}",
    "test=false",
    "print_config=false",
]
RUNS = {
    "seq2seq": [
        "data=reverse",
        "model=encdec",
        "model.n_encoder_layers=1",
        "model.n_decoder_layers=1",
        "data.num_train=512",
        "data.num_val=64",
        "data.num_test=64",
        "data.max_len=8",
        "data.batch_size=16",
    ],
    "causal_lm": ["data=toy_lm", "model=gpt", "model.n_layers=1", "data.block_size=16"],
    "masked_lm": [
        "data=toy_mlm",
        "model=bert",
        "model.n_layers=1",
        "data.toy_train_lines=2000",
        "data.toy_eval_lines=200",
    ],
    "classification": ["data=sst2", "model=bert", "model.n_layers=1", "data.max_len=32"],
}
MARKS = {"classification": [pytest.mark.needs_data("sst2")]}


CASES = [(task, "stop") for task in RUNS] + [("causal_lm", "skip")]  # NanGuard's policies


@pytest.mark.parametrize(
    ("task", "policy"),
    [pytest.param(*case, id="-".join(case), marks=MARKS.get(case[0], [])) for case in CASES],
)
def test_no_host_reads_between_logging_steps(tmp_path: Path, task: str, policy: str) -> None:
    overrides = RUNS[task]
    counter = HostReads()
    cfg = compose_config(tmp_path, [*COMMON, *overrides, f"callbacks.nan_guard.policy={policy}"])
    with counter.counting():
        result = train(cfg, extra_callbacks=[counter])
    assert result["global_step"] == 2 * BATCHES
    assert counter.steps == list(range(2 * BATCHES))
    logging_steps = [s for s in counter.steps if (s + 1) % LOG_EVERY == 0]
    quiet = [s for s in counter.steps if s not in logging_steps]
    offending = [s for s in quiet if counter.reads.get(s)]
    counts = {s: len(counter.reads.get(s, [])) for s in counter.steps}
    assert not offending, f"host reads per step {counts}:\n{counter.report(offending[:2])}"
    # The counter sees reads: the logging steps make some (the logged loss, at least).
    assert all(counts[s] > 0 for s in logging_steps), counts
