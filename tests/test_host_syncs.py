"""A training step reads no tensor value on the host except at logging steps (issue 19).

On a GPU every such read (`loss.item()`, `bool(mask.any())`, `x[mask]`, `torch.unique`)
waits for the queued kernels, so the host stops feeding the device. These runs use the
default callbacks (progress bar, checkpoints, LR monitor, throughput, resume state, NaN guard)
and the CSV logger, and count the reads of every batch (tests/host_reads.py).
"""

from __future__ import annotations

import copy
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score
from torchmetrics.text import Perplexity

from attnlab.callbacks import NanGuard
from attnlab.data.loading.masking import MaskingCollate, TokenMasker, prediction_slots
from attnlab.data.spec import DataSpec
from attnlab.data.tokenizers.wordpiece import CLS_ID, MASK_ID, SEP_ID
from attnlab.module import AttnLabModule
from attnlab.run.train import train
from attnlab.tasks import MaskedLMTask
from attnlab.tasks.metrics import MacroF1, PerplexityFromLoss, TokenAccuracy
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
    "masked_lm_nsp": [  # BERT's pretraining: masked LM + next-sentence prediction
        "data=toy_mlm",
        "data.nsp=true",
        "model=bert",
        "model.n_layers=1",
        "data.toy_train_lines=2000",
        "data.toy_eval_lines=200",
    ],
    "classification": ["data=sst2", "model=bert", "model.n_layers=1", "data.max_len=32"],
}
# masked_lm_nsp: ~20 s on 2 busy cores, and masked_lm covers the same step without NSP.
MARKS = {"classification": [pytest.mark.needs_data("sst2")], "masked_lm_nsp": [pytest.mark.slow]}


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


# -- the sync-free pieces equal what they replace --------------------------------------------


@pytest.mark.parametrize("seed", [0, 1])
def test_sync_free_metrics_equal_torchmetrics(seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    classes, ignore = 7, -100
    reference_acc = MulticlassAccuracy(classes, average="micro", ignore_index=ignore)
    reference_f1 = MulticlassF1Score(classes, average="macro")
    reference_ppl = Perplexity(ignore_index=ignore)
    accuracy, f1, ppl = TokenAccuracy(ignore_index=ignore), MacroF1(classes), PerplexityFromLoss()
    for _ in range(3):  # several updates: the states accumulate
        logits = torch.randn(4, 11, classes, generator=generator) * 3
        target = torch.randint(0, classes - 2, (4, 11), generator=generator)  # a class unseen
        target[torch.rand(4, 11, generator=generator) < 0.3] = ignore  # padding
        preds = logits.argmax(-1)
        reference_acc.update(preds, target)
        accuracy.update(preds, target)
        valid = target != ignore
        reference_f1.update(preds[valid], target[valid])
        f1.update(preds[valid], target[valid])
        reference_ppl.update(logits, target)
        loss = F.cross_entropy(logits.flatten(0, 1), target.flatten(), ignore_index=ignore)
        ppl.update(loss, valid.sum())
    torch.testing.assert_close(accuracy.compute(), reference_acc.compute())
    torch.testing.assert_close(f1.compute(), reference_f1.compute())
    torch.testing.assert_close(ppl.compute(), reference_ppl.compute(), rtol=1e-5, atol=0)


def test_perplexity_of_a_batch_without_tokens_adds_nothing() -> None:
    ppl = PerplexityFromLoss()
    ppl.update(torch.tensor(2.0), 10)
    ppl.update(torch.tensor(float("nan")), 0)  # cross_entropy's mean over no tokens
    torch.testing.assert_close(ppl.compute(), torch.tensor(2.0).exp())


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_masked_lm_static_gather_gives_the_loss_of_the_boolean_mask(seed: int) -> None:
    """The task scores the S = prediction_slots(T) slots of `mlm_positions`; the loss, its
    gradient and the accuracy are those of `hidden[labels != -100]`, as before."""
    torch.manual_seed(seed)
    vocab, dim = 50, 8
    lengths = torch.randint(3, 40, (6,))
    items = [
        {
            "input_ids": torch.cat(
                [torch.tensor([CLS_ID]), torch.randint(5, vocab, (n - 2,)), torch.tensor([SEP_ID])]
            )
        }
        for n in lengths.tolist()
    ]
    batch = MaskingCollate(TokenMasker(vocab, MASK_ID, range(5)))(items)
    T = batch["input_ids"].size(1)
    assert batch["mlm_positions"].shape == (6, prediction_slots(T, 0.15))
    hidden = torch.randn(6, T, dim, requires_grad=True)
    head = nn.Linear(dim, vocab)

    class Network(nn.Module):
        def encode(self, *args: object) -> torch.Tensor:
            return hidden

        def mlm_logits(self, h: torch.Tensor) -> torch.Tensor:
            return head(h)

    spec = DataSpec(task="masked_lm", vocab_size=vocab, decode=str, max_len=T)
    task = MaskedLMTask(spec)
    loss = task.step(Network(), batch, "train")
    (grad,) = torch.autograd.grad(loss, hidden)

    selected = batch["labels"] != -100
    logits = head(hidden[selected])
    expected = F.cross_entropy(logits, batch["labels"][selected])
    (expected_grad,) = torch.autograd.grad(expected, hidden)
    torch.testing.assert_close(loss, expected)
    torch.testing.assert_close(grad, expected_grad)
    accuracy = (logits.argmax(-1) == batch["labels"][selected]).float().mean()
    torch.testing.assert_close(task.metrics("train")["acc"].compute(), accuracy)


def optimizer(kind: str, params: list[nn.Parameter]) -> torch.optim.Optimizer:
    flags = {"fused": {"fused": True}, "foreach": {"foreach": True}, "plain": {"foreach": False}}
    return torch.optim.AdamW(params, lr=0.1, weight_decay=0.1, **flags[kind])


def state_of(model: nn.Module, opt: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    out = {f"param/{k}": v.detach().clone() for k, v in model.named_parameters()}
    for i, state in enumerate(opt.state.values()):
        out |= {f"state{i}/{k}": torch.as_tensor(v).clone() for k, v in state.items()}
    return out


@pytest.mark.parametrize("kind", ["fused", "foreach", "plain"])
@pytest.mark.parametrize("bad_steps", [{0}, {2}, {1, 2}])
def test_nan_guard_leaves_a_bad_step_untaken(kind: str, bad_steps: set[int]) -> None:
    """A step NanGuard flags leaves parameters, moments and step counts exactly as if it had
    not been taken (the optimiser never called), the first step included, for fused, foreach
    and single-tensor AdamW; and no value is read on the host for it."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 4), nn.Linear(4, 3))
    reference = copy.deepcopy(model)
    opt, ref_opt = optimizer(kind, list(model.parameters())), None
    ref_opt = optimizer(kind, list(reference.parameters()))
    guard = NanGuard(policy="skip")
    guard._hooks = [opt.register_step_pre_hook(guard._before_step)]
    guard._hooks.append(opt.register_step_post_hook(guard._after_step))
    guard._reset(torch.device("cpu"))
    counter = HostReads()
    inputs = torch.randn(5, 8, 5)
    for step in range(5):
        bad = step in bad_steps
        for net, o in ((model, opt), (reference, ref_opt)):
            o.zero_grad()
            net(inputs[step]).square().mean().backward()
            if bad:  # what a NaN loss leaves: NaN gradients
                for p in net.parameters():
                    p.grad.fill_(float("nan"))
        guard._skip = torch.tensor(bad)
        with counter.counting():
            counter._trainer = FakeTrainer(step)  # type: ignore[assignment]
            opt.step()
            counter._trainer = None
        if not bad:
            ref_opt.step()
        got, expected = state_of(model, opt), state_of(reference, ref_opt)
        # Before any step taken: the state of a never-stepped AdamW, zeros (see NanGuard).
        expected |= {k: torch.zeros_like(v) for k, v in got.items() if k not in expected}
        torch.testing.assert_close(got, expected, rtol=0, atol=0)
    assert not counter.reads, counter.report(sorted(counter.reads))


class FakeTrainer:
    """What HostReads asks of a trainer: the batch the loop works on."""

    def __init__(self, step: int) -> None:
        progress = SimpleNamespace(total=SimpleNamespace(ready=step + 1))
        self.fit_loop = SimpleNamespace(epoch_loop=SimpleNamespace(batch_progress=progress))


def test_tokens_seen_counts_on_the_device_and_survives_a_checkpoint() -> None:
    module = AttnLabModule(
        nn.Linear(1, 1),
        MaskedLMTask(DataSpec(task="masked_lm", vocab_size=9, decode=str, max_len=4)),
        optimizer=torch.optim.SGD,
    )
    module.tokens_seen = 5
    module._tokens_pending = module._tokens_pending + torch.tensor(7)
    assert isinstance(module._tokens_pending, torch.Tensor)  # not read yet
    checkpoint = {"tokens_seen": module.tokens_seen}  # what on_save_checkpoint writes
    assert checkpoint["tokens_seen"] == 12
    other = AttnLabModule(nn.Linear(1, 1), module.task, optimizer=torch.optim.SGD)
    other.on_load_checkpoint(checkpoint)
    assert other.tokens_seen == 12


@pytest.mark.parametrize("scaler_says", [0.0, 1.0])
def test_nan_guard_keeps_grad_scalers_flag(scaler_says: float) -> None:
    """Under fp16 GradScaler sets `found_inf` on a fused optimiser before its step: NanGuard
    skips when either says so, and leaves GradScaler's flag for GradScaler to delete."""
    model = nn.Linear(3, 2)
    opt = optimizer("fused", list(model.parameters()))
    guard = NanGuard()
    guard._hooks = [opt.register_step_pre_hook(guard._before_step)]
    guard._hooks.append(opt.register_step_post_hook(guard._after_step))
    model(torch.randn(4, 3)).sum().backward()
    before = [p.detach().clone() for p in model.parameters()]
    flag = torch.tensor(scaler_says)
    opt.found_inf = flag  # type: ignore[attr-defined]
    guard._skip = torch.tensor(False)
    opt.step()
    assert opt.found_inf is flag  # type: ignore[attr-defined]
    unchanged = all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    assert unchanged == bool(scaler_says)
