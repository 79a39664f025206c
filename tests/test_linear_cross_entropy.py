"""task.loss_impl=chunked: the loss and its gradients without (B, T, V) logits equal the dense
path's (fp32, 1e-5), with ignore_index, label smoothing, a padded vocabulary, a tied weight,
μP's output multiplier and a bias; liger is refused in one line where it cannot run."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from attnlab.data.spec import DataSpec
from attnlab.models import DecoderOnly
from attnlab.run.train import train
from attnlab.tasks import CausalLMTask
from attnlab.tasks.linear_cross_entropy import auto_chunk, chunked_linear_cross_entropy
from attnlab.tasks.lm_loss import check_loss_impl
from tests.conftest import compose_config

TOL = dict(rtol=1e-5, atol=1e-5)


def _dense(hidden, weight, labels, bias, vocab, mult, smoothing):
    logits = F.linear(hidden * mult, weight, bias)[..., :vocab]  # (B, T, V)
    return F.cross_entropy(
        logits.flatten(0, 1), labels.flatten(), ignore_index=-100, label_smoothing=smoothing
    )


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("chunk", [None, 7, 1000])
def test_chunked_loss_and_gradients_equal_dense(smoothing: float, bias: bool, chunk) -> None:
    seed = random.randrange(2**31)  # fresh inputs every run
    g = torch.Generator().manual_seed(seed)
    B, T, D, V, rows = 3, 11, 16, 45, 64  # 45 tokens padded to 64 rows
    hidden = torch.randn(B, T, D, generator=g, requires_grad=True)
    weight = torch.randn(rows, D, generator=g, requires_grad=True)
    b = torch.randn(rows, generator=g, requires_grad=True) if bias else None
    labels = torch.randint(V, (B, T), generator=g)
    labels[torch.rand(B, T, generator=g) < 0.3] = -100
    mult = 0.25  # μP's readout multiplier at width_mult 4
    inputs = [hidden, weight] + ([b] if bias else [])
    dense = _dense(hidden, weight, labels, b, V, mult, smoothing)
    grads = torch.autograd.grad(dense, inputs)
    chunked = chunked_linear_cross_entropy(
        hidden,
        weight,
        labels,
        bias=b,
        vocab_size=V,
        output_mult=mult,
        label_smoothing=smoothing,
        chunk_tokens=chunk,
    )
    chunked_grads = torch.autograd.grad(chunked, inputs)
    torch.testing.assert_close(chunked, dense, **TOL, msg=f"seed {seed}")
    for got, want in zip(chunked_grads, grads, strict=True):
        torch.testing.assert_close(got, want, **TOL, msg=f"seed {seed}")
    assert chunked_grads[1][V:].abs().max() == 0  # padded rows: no gradient


@pytest.mark.parametrize("mup", [False, True])
def test_chunked_task_step_equals_dense_on_a_tied_padded_gpt(mup: bool) -> None:
    """The whole training step through a GPT (tied head = the embedding, padded vocabulary,
    μP's multiplier): same loss, same gradient for every parameter."""
    seed = random.randrange(2**31)
    torch.manual_seed(seed)
    settings = dict(d_model=32, n_heads=2, n_layers=2, max_len=16, vocab_pad_multiple=16)
    if mup:
        settings |= dict(parametrization="mup", mup_base_width=8)
    network = DecoderOnly(37, **settings)
    assert network.lm_head.weight is network.tok_embed.weight  # tied
    assert network.lm_head.weight.size(0) == 48  # padded
    assert network.lm_head.output_mult == (0.25 if mup else 1.0)
    spec = DataSpec(task="causal_lm", vocab_size=37, decode=str, max_len=16)
    ids = torch.randint(37, (4, 16))
    labels = torch.randint(37, (4, 16))
    labels[:, :3] = -100
    batch = {"input_ids": ids, "labels": labels}
    results = []
    for impl in ("dense", "chunked"):
        task = CausalLMTask(spec, loss_impl=impl, label_smoothing=0.1, loss_chunk_tokens=9)
        network.zero_grad()
        loss = task.step(network, batch, "train")
        loss.backward()
        results.append((loss.detach(), {n: p.grad.clone() for n, p in network.named_parameters()}))
    (dense, dense_grads), (chunked, chunked_grads) = results
    torch.testing.assert_close(chunked, dense, **TOL, msg=f"seed {seed}")
    for name, grad in dense_grads.items():
        torch.testing.assert_close(chunked_grads[name], grad, **TOL, msg=f"{name}, seed {seed}")


def test_a_chunks_logits_are_no_larger_than_the_hidden_states_or_1024_tokens() -> None:
    assert auto_chunk(256 * 1024, 50257, 768) == 3972  # ceil(50257 / 768) = 66 chunks
    assert auto_chunk(32 * 1024, 50257, 768) == 1024  # at least 1024 tokens a chunk
    assert auto_chunk(10, 5, 64) == 10  # never more than all tokens


def test_bad_loss_impl_and_liger_without_its_library_are_refused_in_one_line() -> None:
    with pytest.raises(ValueError, match=r"^task\.loss_impl='fused' is not valid: choose from"):
        check_loss_impl("fused")
    with pytest.raises(ValueError, match=r"^task\.label_smoothing=1\.0 is not valid"):
        check_loss_impl("dense", 1.0)
    if torch.cuda.is_available() and _has_liger():
        pytest.skip("Liger-Kernel and CUDA are both here: liger is not refused")
    with pytest.raises(ValueError, match=r"^task\.loss_impl=liger needs (Liger-Kernel|a CUDA GPU)"):
        check_loss_impl("liger")


def _has_liger() -> bool:
    import importlib.util

    return importlib.util.find_spec("liger_kernel") is not None


def test_loss_impl_liger_fails_before_any_work(tmp_path: Path) -> None:
    """From the command line: the run stops with the line above, nothing trained."""
    if torch.cuda.is_available() and _has_liger():
        pytest.skip("liger can run here")
    from attnlab.run.validation import ConfigError

    cfg = compose_config(tmp_path, ["data=toy_lm", "model=gpt", "task.loss_impl=liger"])
    with pytest.raises(ConfigError, match=r"task\.loss_impl=liger needs"):
        train(cfg)
    assert not list(tmp_path.rglob("*.ckpt"))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("impl", ["chunked", "liger"])
def test_fused_losses_follow_dense_in_bf16_on_a_gpu(impl: str) -> None:
    """bf16 autocast on a GPU, GPT-2's vocabulary: the loss and gradients near the dense
    path's (bf16 rounding), for the plain-torch chunks and, where installed, Liger's kernel."""
    if impl == "liger" and not _has_liger():
        pytest.skip("Liger-Kernel not installed")
    g = torch.Generator(device="cuda").manual_seed(0)
    hidden = torch.randn(4096, 256, device="cuda", generator=g, requires_grad=True)
    weight = (0.02 * torch.randn(50304, 256, device="cuda", generator=g)).requires_grad_()
    labels = torch.randint(50257, (4096,), device="cuda", generator=g)
    head = torch.nn.Module()
    head.weight, head.bias, head.vocab_size, head.output_mult = weight, None, 50257, 1.0
    from attnlab.tasks.lm_loss import ReadoutLoss

    results = []
    for loss_fn in (None, ReadoutLoss(impl)):
        with torch.autocast("cuda", dtype=torch.bfloat16):
            if loss_fn is None:
                loss = F.cross_entropy(F.linear(hidden, weight)[:, :50257], labels)
            else:
                loss = loss_fn(head, hidden, labels)
        results.append((loss.float(), *torch.autograd.grad(loss, [hidden, weight])))
    for name, got, want in zip(("loss", "hidden", "weight"), results[1], results[0], strict=True):
        error = (got.float() - want.float()).norm() / want.float().norm()
        assert error < 2e-2, (name, float(error))  # bf16 rounding is ~1e-2 relative
