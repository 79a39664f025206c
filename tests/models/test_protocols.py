"""The network contract (attnlab/protocols.py): every architecture implements the protocol of
each task it declares, with the shapes the protocols promise; a position scheme registered to
act inside attention is applied there."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
from torch import Tensor

from attnlab.models import (
    NETWORKS,
    AttentionPositions,
    DecoderOnly,
    EncoderDecoder,
    EncoderOnly,
    PositionScheme,
    register_position_scheme,
    unregister_position_scheme,
)
from attnlab.optim import parameter_groups
from attnlab.protocols import (
    TASK_PROTOCOLS,
    EstimatesFlops,
    Generator,
    Network,
    PretrainedBody,
    Seq2SeqNetwork,
)

V, B, T, C = 29, 3, 7, 4


def build(cls: type, task: str) -> torch.nn.Module:
    classes = {"num_classes": C} if task == "classification" else {}
    return cls(V, d_model=16, n_heads=2, max_len=2 * T, **classes).eval()


def run_task(network, task: str) -> Tensor:
    """What the task calls on the network, on fresh random inputs."""
    ids = torch.randint(1, V, (B, T))
    mask = torch.zeros(B, T, dtype=torch.bool)
    mask[0, -2:] = True  # one padded row
    if task == "causal_lm":
        return network(ids)
    if task == "masked_lm":
        return network.mlm_head(network.encode(ids, mask))
    if task == "classification":
        return network.classify(ids, mask)
    memory = network.encode(ids, mask)
    return network.decode(ids[:, :5], memory, mask)


@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_architectures_implement_the_protocols_of_their_tasks(name: str) -> None:
    cls = NETWORKS[name]
    assert isinstance(cls, Network) and set(cls.supported_tasks) <= set(TASK_PROTOCOLS)
    for task in cls.supported_tasks:
        network = build(cls, task)
        assert isinstance(network, TASK_PROTOCOLS[task]), (name, task)
        out = run_task(network, task)
        expected = {
            "causal_lm": (B, T, V),
            "masked_lm": (B, T, V),
            "classification": (B, C),
            "seq2seq": (B, 5, V),
        }[task]
        assert out.shape == expected and torch.isfinite(out).all(), (name, task)
        assert isinstance(network, EstimatesFlops) and network.flops_per_token(T) > 0


def test_optional_abilities() -> None:
    gpt, encdec = build(DecoderOnly, "seq2seq"), build(EncoderDecoder, "seq2seq")
    bert = build(EncoderOnly, "masked_lm")
    assert isinstance(gpt, Generator) and not isinstance(encdec, Generator)
    assert isinstance(bert, PretrainedBody) and not isinstance(gpt, PretrainedBody)
    assert isinstance(gpt, Seq2SeqNetwork) and gpt.prefix_lm and not encdec.prefix_lm
    groups = parameter_groups(bert, 0.1, body_lr=1e-4)
    assert {g["name"] for g in groups} == {"decay", "no_decay", "body/decay", "body/no_decay"}
    with pytest.raises(ValueError, match="no pretrained body"):
        parameter_groups(gpt, 0.1, body_lr=1e-4)


class DistancePenalty(AttentionPositions):
    """-|i - j| on every head's scores: ALiBi with all slopes 1."""

    def score_bias(self, n_queries: int, n_keys: int, start: int) -> Tensor:
        queries = torch.arange(start, start + n_queries)[:, None]
        return -(queries - torch.arange(n_keys)[None, :]).abs().float()[None]  # (1, Tq, Tk)


@pytest.fixture
def distance_scheme() -> Iterator[str]:
    scheme = PositionScheme("distance", "attention", lambda d_head, n_heads: DistancePenalty())
    register_position_scheme(scheme)
    yield scheme.name
    unregister_position_scheme(scheme.name)


def test_an_attention_side_scheme_acts_inside_self_attention(distance_scheme: str) -> None:
    torch.manual_seed(0)
    ours = DecoderOnly(V, 16, 2, 2, pos=distance_scheme).eval()
    alibi = DecoderOnly(V, 16, 2, 2, pos="alibi").eval()
    alibi.load_state_dict(ours.state_dict())  # the same weights: neither adds parameters
    for layer in alibi.layers:  # slopes of 1: then ALiBi is our penalty
        layer.self_attn.positions.slopes.fill_(1.0)
    ids = torch.randint(V, (B, T))
    assert isinstance(ours.layers[0].self_attn.positions, DistancePenalty)
    torch.testing.assert_close(ours(ids), alibi(ids))
    # Incremental decoding hands the scheme the cached offset.
    caches = ours.new_caches()
    steps = [ours(ids[:, :4], caches=caches)[:, -1]]
    steps += [ours(ids[:, t : t + 1], caches=caches, start=t)[:, -1] for t in range(4, T)]
    torch.testing.assert_close(torch.stack(steps, 1), ours(ids)[:, 3:], atol=1e-5, rtol=1e-5)


def protocol_members(protocol: type) -> set[str]:
    """The attributes and methods a protocol declares (its own, not object's)."""
    methods = {
        name
        for name, value in vars(protocol).items()
        if callable(value) and (not name.startswith("_") or name == "__call__")
    }
    return methods | set(getattr(protocol, "__annotations__", {}))


@pytest.mark.parametrize("name", ["encdec", "gpt", "bert"])
def test_protocol_members_are_found_statically(name: str) -> None:
    """From Python 3.12, isinstance() against a runtime protocol looks members up with
    inspect.getattr_static, which does not see nn.Module's submodules: every member a task
    needs must be a method or a class attribute, not a module attribute."""
    import inspect

    cls = NETWORKS[name]
    for task in cls.supported_tasks:
        network = build(cls, task)
        for member in protocol_members(TASK_PROTOCOLS[task]):
            inspect.getattr_static(network, member)  # raises AttributeError when unseen
