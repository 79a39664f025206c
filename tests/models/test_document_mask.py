"""Packed documents (document_mask.py): a packed row computes each document as if run alone."""

from __future__ import annotations

import functools
import warnings
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from attnlab.models import DecoderOnly, KVCache, MultiHeadAttention, document_mask
from attnlab.models.document_mask import DocumentMask, document_positions
from attnlab.tasks.causal_lm import CausalLMTask

EOS = 0
VOCAB = 13

# Every knob that changes how positions or heads enter attention.
KNOBS = [
    {"pos": "learned"},
    {"pos": "sinusoidal", "qk_norm": True},
    {"pos": "rope", "n_kv_heads": 2},
    {"pos": "alibi", "n_kv_heads": 1, "qk_norm": True},
    {"pos": "none", "norm_first": False},
]


def knob_id(knobs: dict[str, Any]) -> str:
    return "-".join(f"{k}={v}" for k, v in knobs.items())


def random_network(**knobs: Any) -> DecoderOnly:
    """A small GPT in float64 whose every parameter is random (biases, norms and position
    tables included), so no knob can hide behind an initial zero or one."""
    settings = {"d_model": 16, "n_heads": 4, "n_layers": 2, "max_len": 160, "dropout": 0.0}
    network = DecoderOnly(VOCAB, **{**settings, **knobs}).double()
    with torch.no_grad():
        for parameter in network.parameters():
            parameter.normal_(0.0, 0.3)
    return network


def packed_row(T: int) -> Tensor:
    """(T,) tokens: a partial document (no leading EOS), then documents each opened by EOS,
    of random lengths; the last one may be cut by the window."""
    tokens = [int(t) for t in torch.randint(1, VOCAB, (int(torch.randint(1, 6, ())),))]
    while len(tokens) < T:
        length = int(torch.randint(1, 12, ()))  # the EOS included: a document may be just it
        tokens += [EOS, *(int(t) for t in torch.randint(1, VOCAB, (length - 1,)))]
    return torch.tensor(tokens[:T])


def packed_batch(B: int, T: int) -> tuple[Tensor, Tensor, Tensor]:
    """input_ids, labels (the next tokens) and document_ids, all (B, T), by the contract."""
    rows = torch.stack([packed_row(T + 1) for _ in range(B)])  # (B, T + 1)
    input_ids, labels = rows[:, :-1], rows[:, 1:]
    document_ids = torch.cumsum(input_ids == EOS, dim=-1)
    return input_ids, labels, document_ids


def documents(document_ids: Tensor) -> list[tuple[int, int, int]]:
    """(row, start, end) of every document of every row."""
    spans = []
    for row, ids in enumerate(document_ids.tolist()):
        start = 0
        for t in range(1, len(ids) + 1):
            if t == len(ids) or ids[t] != ids[start]:
                spans.append((row, start, t))
                start = t
    return spans


def test_positions_restart_at_every_document() -> None:
    input_ids = torch.tensor([[5, 6, EOS, 7, EOS, EOS, 8, 9], [EOS, 1, 2, 3, EOS, 4, 5, 6]])
    positions = document_positions(torch.cumsum(input_ids == EOS, dim=-1))
    expected = torch.tensor([[0, 1, 0, 1, 0, 0, 1, 2], [0, 1, 2, 3, 0, 1, 2, 3]])
    assert torch.equal(positions, expected)


@pytest.mark.parametrize("knobs", KNOBS, ids=knob_id)
def test_packed_batch_gives_losses_and_gradients_of_documents_run_alone(
    knobs: dict[str, Any],
) -> None:
    network = random_network(**knobs)
    input_ids, labels, document_ids = packed_batch(B=3, T=48)
    spans = documents(document_ids)
    assert len(spans) >= 3 * 3  # several documents per row, so the test can fail

    packed = network(input_ids, document_ids=document_ids)  # (B, T, V)
    packed_losses = F.cross_entropy(packed.transpose(1, 2), labels, reduction="none")  # (B, T)
    packed_grads = torch.autograd.grad(packed_losses.sum(), list(network.parameters()))

    alone_total = torch.zeros((), dtype=torch.float64)
    for row, start, end in spans:
        tokens = input_ids[row : row + 1, start:end]  # (1, L), the document run alone
        logits = network(tokens)
        losses = F.cross_entropy(
            logits.transpose(1, 2), labels[row : row + 1, start:end], reduction="none"
        )
        torch.testing.assert_close(packed[row, start:end], logits[0], rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(packed_losses[row, start:end], losses[0], rtol=1e-10, atol=1e-10)
        alone_total = alone_total + losses.sum()
    alone_grads = torch.autograd.grad(alone_total, list(network.parameters()))
    for (name, _), packed_grad, alone_grad in zip(
        network.named_parameters(), packed_grads, alone_grads, strict=True
    ):
        torch.testing.assert_close(packed_grad, alone_grad, rtol=1e-9, atol=1e-10, msg=name)


@pytest.mark.parametrize("knobs", KNOBS[:4], ids=knob_id)
def test_without_document_ids_the_packed_row_leaks_across_documents(
    knobs: dict[str, Any],
) -> None:
    """The property above is not vacuous: plain causal attention gives other logits."""
    network = random_network(**knobs)
    input_ids, _, document_ids = packed_batch(B=2, T=32)
    with torch.no_grad():
        masked = network(input_ids, document_ids=document_ids)
        plain = network(input_ids)
    later = document_ids > 0  # tokens after the first document boundary
    assert (masked - plain)[later].abs().amax() > 1e-3


@pytest.mark.parametrize("knobs", KNOBS, ids=knob_id)
def test_one_document_per_row_is_the_plain_causal_path(knobs: dict[str, Any]) -> None:
    network = random_network(**knobs).float()
    input_ids = torch.randint(1, VOCAB, (3, 40))
    document_ids = torch.zeros_like(input_ids)
    plain = network(input_ids)
    packed = network(input_ids, document_ids=document_ids)
    torch.testing.assert_close(packed, plain, rtol=1e-5, atol=1e-5)


def test_task_passes_document_ids_to_the_network() -> None:
    network = random_network(pos="learned")
    input_ids, labels, document_ids = packed_batch(B=2, T=24)
    task = CausalLMTask.__new__(CausalLMTask)  # step() needs no data spec
    task.loss_impl, task.label_smoothing = "dense", 0.0
    batch = {"input_ids": input_ids, "labels": labels, "document_ids": document_ids}
    loss = task.step(network, batch, "train")
    logits = network(input_ids, document_ids=document_ids)
    expected = F.cross_entropy(logits.flatten(0, 1), labels.flatten())
    torch.testing.assert_close(loss, expected)
    plain = F.cross_entropy(network(input_ids).flatten(0, 1), labels.flatten())
    assert not torch.allclose(loss, plain)


@functools.cache
def flex_runs_on_cpu() -> bool:
    """CPU FlexAttention is inference-only in torch 2.13; older builds may lack it."""
    try:
        ids = torch.zeros(1, 4, dtype=torch.long)
        q = torch.randn(1, 1, 4, 2)
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            DocumentMask(ids, flex=True).attend(q, q, q)
    except Exception:  # any failure means: not here
        return False
    return True


@pytest.mark.parametrize(("pos", "n_kv_heads"), [("learned", None), ("alibi", 2), ("rope", 1)])
def test_flex_attention_matches_the_explicit_mask(pos: str, n_kv_heads: int | None) -> None:
    """The BlockMask (and ALiBi's score_mod, GQA) against the explicit mask, forward only:
    CPU flex has no backward (the CUDA test below covers training)."""
    if not flex_runs_on_cpu():
        pytest.skip("FlexAttention does not run on this CPU build of torch")
    attention = MultiHeadAttention.from_arguments(
        32, 4, n_kv_heads=n_kv_heads, relative_pos=pos
    ).eval()
    x = torch.randn(2, 150, 32)  # longer than one 128-token block
    _, _, document_ids = packed_batch(B=2, T=150)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # flex outside torch.compile warns that it is unfused
        explicit = attention(x, causal=True, documents=DocumentMask(document_ids, flex=False))
        flex = attention(x, causal=True, documents=DocumentMask(document_ids, flex=True))
    torch.testing.assert_close(flex, explicit, rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_network_with_document_ids_compiles_without_graph_breaks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """fullgraph=True on CPU (aot_eager: no C++ build): the explicit mask trains, and the
    FlexAttention branch (forced: on CPU it is inference-only) traces, BlockMask included."""
    network = random_network(pos="alibi", n_kv_heads=2).float()
    input_ids, _, document_ids = packed_batch(B=2, T=140)
    eager = network(input_ids, document_ids=document_ids)
    compiled = torch.compile(network, backend="aot_eager", fullgraph=True)
    logits = compiled(input_ids, document_ids=document_ids)
    torch.testing.assert_close(logits, eager)
    logits.sum().backward()  # the explicit path trains compiled

    torch._dynamo.reset()
    monkeypatch.setattr(document_mask, "flex_applies", lambda ids: torch.compiler.is_compiling())
    compiled = torch.compile(network, backend="aot_eager", fullgraph=True)
    with torch.no_grad():
        torch.testing.assert_close(
            compiled(input_ids, document_ids=document_ids), eager, rtol=1e-4, atol=1e-5
        )


@pytest.mark.slow
@pytest.mark.skipif(not torch.cuda.is_available(), reason="FlexAttention trains on CUDA only")
@pytest.mark.parametrize("pos", ["learned", "alibi"])
def test_compiled_flex_matches_the_explicit_mask_on_cuda(
    pos: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under torch.compile on CUDA the network takes FlexAttention: its loss and gradients
    must be those of the eager explicit-mask path."""
    # d_head 16: the smallest head FlexAttention's kernels take.
    network = random_network(pos=pos, n_kv_heads=2, d_model=64, max_len=256).float().cuda()
    with torch.no_grad():
        for parameter in network.parameters():
            parameter.mul_(0.3)  # moderate logits, for float32 tolerances
    input_ids, labels, document_ids = (t.cuda() for t in packed_batch(B=4, T=256))
    block_masks = []  # the BlockMasks built: proof that the flex path ran

    def spy(*args: Any, **kwargs: Any) -> Any:
        block_masks.append(True)
        return create_block_mask(*args, **kwargs)

    create_block_mask = document_mask.create_block_mask
    monkeypatch.setattr(document_mask, "create_block_mask", spy)

    def loss_and_grads(model: Any) -> tuple[Tensor, list[Tensor]]:
        logits = model(input_ids, document_ids=document_ids)
        loss = F.cross_entropy(logits.flatten(0, 1), labels.flatten())
        return loss, list(torch.autograd.grad(loss, list(network.parameters())))

    eager_loss, eager_grads = loss_and_grads(network)
    assert not block_masks  # eager: the explicit mask
    compiled_loss, compiled_grads = loss_and_grads(torch.compile(network, fullgraph=True))
    assert block_masks
    torch.testing.assert_close(compiled_loss, eager_loss, rtol=1e-3, atol=1e-4)
    for (name, _), compiled, eager in zip(
        network.named_parameters(), compiled_grads, eager_grads, strict=True
    ):
        error = (compiled - eager).norm() / eager.norm().clamp(min=1e-12)
        assert error < 1e-2, f"{name}: relative gradient error {error:.2e}"


def test_document_ids_are_refused_where_they_cannot_apply() -> None:
    network = random_network(pos="learned")
    input_ids, _, document_ids = packed_batch(B=2, T=8)
    with pytest.raises(ValueError, match="KV cache"):
        network(input_ids, caches=network.new_caches(), document_ids=document_ids)
    caches = network.new_caches()
    network(input_ids[:, :4], caches=caches)
    with pytest.raises(ValueError, match="KV cache"):
        network(input_ids[:, 4:], caches=caches, start=4, document_ids=document_ids[:, 4:])
    with pytest.raises(ValueError, match="shape of the tokens"):
        network(input_ids, document_ids=document_ids[:, 1:])
    with pytest.raises(TypeError, match="integer"):
        network(input_ids, document_ids=document_ids.double())
    attention = MultiHeadAttention.from_arguments(16, 4)
    x = torch.randn(2, 8, 16)
    with pytest.raises(ValueError, match="causal self-attention"):
        attention(x, causal=False, documents=DocumentMask(document_ids))
    with pytest.raises(ValueError, match="causal self-attention"):
        attention(x, causal=True, cache=KVCache(), documents=DocumentMask(document_ids))


def test_document_ids_with_right_padding() -> None:
    """Padding takes the general mask path; the real tokens keep the unpadded logits."""
    network = random_network(pos="rope")
    input_ids, _, document_ids = packed_batch(B=2, T=20)
    padded_ids = torch.cat([input_ids, torch.full((2, 5), EOS)], dim=1)  # (B, T + 5)
    padded_docs = torch.cat([document_ids, document_ids[:, -1:].expand(2, 5)], dim=1)
    padding_mask = torch.zeros_like(padded_ids, dtype=torch.bool)
    padding_mask[:, -5:] = True
    with torch.no_grad():
        unpadded = network(input_ids, document_ids=document_ids)
        padded = network(padded_ids, padding_mask, document_ids=padded_docs)
    torch.testing.assert_close(padded[:, :20], unpadded, rtol=1e-10, atol=1e-10)
