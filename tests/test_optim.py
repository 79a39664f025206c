"""Parameter groups (weight decay, a pretrained body's own lr) and learning-rate schedules."""

from __future__ import annotations

import copy
import math
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from attnlab.models import DecoderOnly, EncoderOnly
from attnlab.optim import adamw, inverse_sqrt, parameter_groups, warmup_cosine
from attnlab.optim.adamw import fastest_update
from attnlab.run.train import train


def by_name(groups: list[dict]) -> dict[str, dict]:
    return {group["name"]: group for group in groups}


def ids(params: list[nn.Parameter]) -> set[int]:
    return {id(p) for p in params}


def test_weight_decay_on_matrices_only_and_tied_tensors_once() -> None:
    model = DecoderOnly(vocab_size=50, d_model=16, n_heads=2, n_layers=2, max_len=8, bias=True)
    groups = by_name(parameter_groups(model, weight_decay=0.1))
    decay, no_decay = groups["decay"]["params"], groups["no_decay"]["params"]
    assert all(p.dim() >= 2 for p in decay) and all(p.dim() < 2 for p in no_decay)
    assert groups["decay"]["weight_decay"] == 0.1 and groups["no_decay"]["weight_decay"] == 0.0
    # Every parameter exactly once, the tied head/embedding included.
    assert len(decay) + len(no_decay) == len(list(model.parameters()))
    assert ids(decay) | ids(no_decay) == ids(list(model.parameters()))


def test_decay_embeddings_false_exempts_embedding_tables() -> None:
    model = DecoderOnly(vocab_size=50, d_model=16, n_heads=2, n_layers=1, max_len=8)
    groups = by_name(parameter_groups(model, 0.1, decay_embeddings=False))
    embeddings = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    assert embeddings and embeddings <= ids(groups["no_decay"]["params"])
    assert not embeddings & ids(groups["decay"]["params"])


def test_body_lr_puts_body_and_heads_in_separate_groups() -> None:
    model = EncoderOnly(vocab_size=60, d_model=16, n_heads=2, n_layers=2, max_len=8, num_classes=3)
    groups = by_name(parameter_groups(model, 0.01, body_lr=1e-5))
    assert set(groups) == {"decay", "no_decay", "body/decay", "body/no_decay"}
    body = ids(groups["body/decay"]["params"] + groups["body/no_decay"]["params"])
    heads = ids(groups["decay"]["params"] + groups["no_decay"]["params"])
    expected_body = {id(p) for n, p in model.named_parameters() if model.is_body_parameter(n)}
    assert body == expected_body and heads and not body & heads
    assert id(model.classifier.weight) in heads and id(model.tok_embed.weight) in body
    assert groups["body/decay"]["lr"] == groups["body/no_decay"]["lr"] == 1e-5
    assert "lr" not in groups["decay"]  # heads take the optimiser's lr
    # The optimiser honours the group's own lr.
    optimizer = torch.optim.AdamW(parameter_groups(model, 0.01, body_lr=1e-5), lr=1e-3)
    lrs = {g["name"]: g["lr"] for g in optimizer.param_groups}
    assert lrs == {"decay": 1e-3, "no_decay": 1e-3, "body/decay": 1e-5, "body/no_decay": 1e-5}


def test_body_lr_needs_a_network_with_a_body() -> None:
    model = DecoderOnly(vocab_size=50, d_model=16, n_heads=2, n_layers=1, max_len=8)
    with pytest.raises(ValueError, match="no pretrained body"):
        parameter_groups(model, 0.1, body_lr=1e-4)


def lrs_over(scheduler_factory, steps: int, lr: float = 1.0) -> list[float]:
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=lr)
    scheduler = scheduler_factory(optimizer)
    values = []
    for _ in range(steps):
        values.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return values


def test_warmup_cosine_matches_its_formula() -> None:
    warmup, total, peak, floor = 10, 50, 1e-3, 1e-4
    got = lrs_over(lambda o: warmup_cosine(o, warmup, total, min_lr=floor), total + 1, lr=peak)
    for step, value in enumerate(got):
        if step < warmup:  # linear from peak/(warmup+1) up to the peak
            expected = peak * (1 / (warmup + 1) + (1 - 1 / (warmup + 1)) * step / warmup)
        else:
            progress = (step - warmup) / (total - warmup)
            expected = floor + (peak - floor) * 0.5 * (1 + math.cos(math.pi * progress))
        assert value == pytest.approx(expected, rel=1e-6), step
    assert got[warmup] == pytest.approx(peak) and got[total] == pytest.approx(floor)


def test_inverse_sqrt_peaks_at_warmup_then_decays_as_one_over_sqrt_step() -> None:
    warmup = 8
    got = lrs_over(lambda o: inverse_sqrt(o, warmup, total_steps=100), 100)
    assert max(got) == pytest.approx(1.0) and got.index(max(got)) == warmup - 1
    for step in (warmup * 4 - 1, warmup * 9 - 1):  # scheduler steps count from 1
        assert got[step] == pytest.approx(math.sqrt(warmup / (step + 1)))


def test_adamw_factory_is_fused_on_cpu_and_matches_torchs_loop() -> None:
    torch.manual_seed(0)
    model = DecoderOnly(vocab_size=50, d_model=16, n_heads=2, n_layers=1, max_len=8)
    reference = copy.deepcopy(model)
    groups = parameter_groups(model, 0.1)
    # eps 1e-8: the key bias's gradient is zero up to rounding (softmax ignores a shift), and
    # at eps 1e-9 an update of ~1e-11 / (1e-11 + eps) amplifies rounding past float32 tolerance.
    optimizer = adamw(groups, lr=1e-2, betas=(0.9, 0.98), eps=1e-8, weight_decay=0.1)
    assert type(optimizer) is torch.optim.AdamW  # checkpoints hold torch's state
    assert optimizer.defaults["fused"] is True and not optimizer.defaults["foreach"]
    loop = torch.optim.AdamW(
        parameter_groups(reference, 0.1), lr=1e-2, betas=(0.9, 0.98), eps=1e-8, foreach=False
    )
    tokens = torch.randint(0, 50, (3, 8))
    for net, opt in ((model, optimizer), (reference, loop)):
        for _ in range(3):
            opt.zero_grad()
            net(tokens).logsumexp(-1).mean().backward()
            opt.step()
    for (name, a), b in zip(model.named_parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(a, b, msg=name)


def test_adamw_factory_fuses_on_one_device_kind_with_fused_kernels() -> None:
    on = [SimpleNamespace(device=torch.device(kind)) for kind in ("cuda", "cuda:1", "cpu", "meta")]
    cuda, cuda1, cpu, meta = on
    fused = {"fused": True, "foreach": False}
    assert fastest_update([{"params": [cuda]}, {"params": [cuda1]}]) == fused
    assert fastest_update([cpu]) == fused
    assert fastest_update([cuda, cpu]) == {
        "fused": False,
        "foreach": True,
    }  # one kernel, one device
    assert fastest_update([meta]) == {"fused": False, "foreach": True}  # no fused kernel there
    assert fastest_update([{"params": []}]) == {"fused": False, "foreach": True}


def test_adamw_factory_takes_an_explicit_choice() -> None:
    params = [nn.Parameter(torch.randn(3, 3))]
    optimizer = adamw(params, foreach=False)
    assert optimizer.defaults["foreach"] is False and not optimizer.defaults["fused"]


def test_a_run_saved_with_torchs_adamw_resumes_with_the_factory(train_config) -> None:
    """Checkpoints written before attnlab.optim.adamw name torch.optim.AdamW: the same class."""
    train(train_config("optimizer._target_=torch.optim.AdamW", "test=false"))
    resumed = train(train_config("resume=auto", "trainer.max_epochs=2", "test=false"))
    assert resumed["global_step"] == 16


def test_fused_adamw_is_clipped_under_bf16_mixed(train_config) -> None:
    """Lightning's mixed-precision plugin refuses to clip for a fused optimizer even in bf16,
    where no gradient is scaled; the GPU default (fused AdamW, bf16-mixed, clipping) must train
    and the optimiser must step on the clipped gradients."""
    import lightning.pytorch as pl

    from attnlab.run.train import train

    norms: list[float] = []  # gradient norms as the optimiser steps on them

    class RecordNormAtStep(pl.Callback):
        def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
            def record(optimizer: torch.optim.Optimizer, *_: object) -> None:
                grads = [p.grad for g in optimizer.param_groups for p in g["params"]]
                norms.append(
                    float(torch.nn.utils.get_total_norm([g for g in grads if g is not None]))
                )

            trainer.optimizers[0].register_step_pre_hook(record)

    cfg = train_config(
        "optimizer.fused=true",
        "trainer.precision=bf16-mixed",
        "trainer.gradient_clip_val=1e-3",
        "trainer.max_steps=2",
        "test=false",
    )
    train(cfg, extra_callbacks=[RecordNormAtStep()])
    assert len(norms) == 2
    assert max(norms) > 0 and all(norm <= 1e-3 * (1 + 1e-3) for norm in norms), norms


def test_the_module_takes_lr_and_weight_decay_from_the_optimiser_it_builds() -> None:
    """Any factory works, not only a partial whose keywords could be read: the module reads the
    configured lr and weight decay from the built optimiser's defaults, then gives matrices
    the decay and a pretrained body its scaled lr."""
    from attnlab.data import DataSpec
    from attnlab.module import AttnLabModule
    from attnlab.tasks.masked_lm import MaskedLMTask

    lr, weight_decay, scale = 10 ** -torch.empty(()).uniform_(2, 4).item(), 0.3, 0.25
    network = EncoderOnly(31, d_model=16, n_heads=2, n_layers=2, max_len=8, num_classes=3)

    def factory(params):  # a closure: no `keywords` to read
        return torch.optim.SGD(params, lr=lr, weight_decay=weight_decay)

    task = MaskedLMTask(DataSpec(task="masked_lm", vocab_size=31, decode=str, max_len=8))
    module = AttnLabModule(network, task, optimizer=factory, body_lr_scale=scale)
    optimizer, scheduler = module.build_optimizer(total_steps=10)
    assert scheduler is None
    groups = by_name(optimizer.param_groups)
    expected = by_name(parameter_groups(network, weight_decay, body_lr=lr * scale, lr=lr))
    assert set(groups) == set(expected)
    for name, group in groups.items():
        assert ids(group["params"]) == ids(expected[name]["params"])
        assert group["weight_decay"] == (0.0 if name.endswith("no_decay") else weight_decay)
        assert group["lr"] == pytest.approx(lr * scale if name.startswith("body/") else lr)
