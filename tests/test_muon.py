"""optimizer=muon: torch.optim.Muon on the hidden matrices, AdamW on embeddings, heads, norms
and biases, in one optimiser that steps, schedules and checkpoints like torch's own."""

from __future__ import annotations

import copy
import random
from pathlib import Path

import pytest
import torch
from torch.optim import AdamW, Muon

from attnlab.models import DecoderOnly, EncoderOnly
from attnlab.models.mup import parameter_types
from attnlab.optim import MuonAdamW, muon, parameter_groups, warmup_cosine
from attnlab.run import ConfigError
from attnlab.run.train import train
from tests.conftest import compose_config

KEYS = dict(lr=3e-3, weight_decay=0.1, muon_lr=0.05, muon_weight_decay=0.02)


def _network(**settings) -> DecoderOnly:
    return DecoderOnly(29, d_model=32, n_heads=2, n_layers=2, max_len=16, **settings)


def _optimizer(network: DecoderOnly, **keys) -> MuonAdamW:
    groups = parameter_groups(network, KEYS["weight_decay"], lr=KEYS["lr"], hidden_apart=True)
    return muon(groups, **(KEYS | keys))


def _backward(network: DecoderOnly, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(29, (4, 16), generator=g)
    network.zero_grad()
    network(ids).logsumexp(-1).mean().backward()


def test_muon_takes_the_hidden_matrices_and_adamw_the_rest() -> None:
    network = _network(bias=True)
    optimizer = _optimizer(network)
    types = parameter_types(network)
    by_id = {id(p): n for n, p in network.named_parameters()}
    groups = optimizer.param_groups
    muon_names = {by_id[id(p)] for g in groups if g["muon"] for p in g["params"]}
    adam_names = {by_id[id(p)] for g in groups if not g["muon"] for p in g["params"]}
    assert muon_names == {n for n, t in types.items() if t == "hidden"}
    assert {types[n] for n in adam_names} == {"embedding", "vector"}  # tied head: the embedding
    assert "tok_embed.embedding.weight" in adam_names and not muon_names & adam_names
    for group in optimizer.param_groups:
        if group["muon"]:
            assert (group["lr"], group["weight_decay"]) == (0.05, 0.02)
        else:
            assert group["lr"] == 3e-3 and group["weight_decay"] in (0.1, 0.0)


def test_a_step_is_torchs_muon_on_hidden_matrices_and_adamw_on_the_others() -> None:
    seed = random.randrange(2**31)
    torch.manual_seed(seed)
    network = _network()
    reference = copy.deepcopy(network)
    optimizer = _optimizer(network)
    types = parameter_types(reference)
    params = dict(reference.named_parameters())
    hidden = [p for n, p in params.items() if types[n] == "hidden"]
    decay = [p for n, p in params.items() if types[n] != "hidden" and p.dim() >= 2]
    vectors = [p for p in params.values() if p.dim() < 2]
    torch_muon = Muon(hidden, lr=0.05, weight_decay=0.02, momentum=0.95, adjust_lr_fn="original")
    groups = [{"params": decay, "weight_decay": 0.1}, {"params": vectors, "weight_decay": 0.0}]
    torch_adamw = AdamW(groups, lr=3e-3, betas=(0.9, 0.98), eps=1e-9, fused=True)  # as attnlab
    for step in range(3):
        for net, steps in ((network, [optimizer]), (reference, [torch_muon, torch_adamw])):
            _backward(net, seed + step)
            for opt in steps:
                opt.step()
    for (name, p), q in zip(network.named_parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=0, atol=0, msg=f"{name}, seed {seed}")


def test_state_dict_round_trip_continues_the_same_run() -> None:
    torch.manual_seed(0)
    network = _network()
    optimizer = _optimizer(network)
    for step in range(2):
        _backward(network, step)
        optimizer.step()
    saved_net = copy.deepcopy(network.state_dict())
    saved_opt = copy.deepcopy(optimizer.state_dict())
    _backward(network, 2)
    optimizer.step()
    resumed = _network()
    resumed.load_state_dict(saved_net)
    resumed_opt = _optimizer(resumed)
    resumed_opt.load_state_dict(saved_opt)
    assert any(g["muon"] for g in resumed_opt.param_groups)
    _backward(resumed, 2)
    resumed_opt.step()
    for p, q in zip(network.parameters(), resumed.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=0, atol=0)


def test_mup_keeps_adamws_rates_and_muons_shape_scaling() -> None:
    """μP at width_mult 4: the AdamW groups as μP has them; Muon's groups at muon_lr, not
    muon_lr / 4 (Muon's own shape scaling is the spectral μP condition; optim/muon.py)."""
    network = _network(parametrization="mup", mup_base_width=8)
    optimizer = _optimizer(network)
    rates = {g["name"]: g["lr"] for g in optimizer.param_groups}
    assert rates == {"decay": 3e-3, "no_decay": 3e-3, "hidden/decay": 0.05}
    # A pretrained body's slower rate carries over to Muon's groups.
    mup = dict(parametrization="mup", mup_base_width=8)
    bert = EncoderOnly(29, d_model=32, n_heads=2, n_layers=2, **mup)
    body = parameter_groups(bert, 0.1, body_lr=3e-4, lr=3e-3, hidden_apart=True)
    assert {g["name"]: g["lr"] for g in muon(body, **KEYS).param_groups}["body/hidden/decay"] == (
        pytest.approx(0.005)
    )


def test_cosine_floor_keeps_each_groups_ratio() -> None:
    network = _network()
    optimizer = _optimizer(network)
    schedule = warmup_cosine(optimizer, warmup_steps=2, total_steps=10, min_lr=3e-4)
    for _ in range(10):
        optimizer.step()
        schedule.step()
    final = {g["name"]: g["lr"] for g in optimizer.param_groups}
    assert final["decay"] == pytest.approx(3e-4)
    assert final["hidden/decay"] == pytest.approx(3e-4 * 0.05 / 3e-3)  # the floor, scaled


def test_optimizer_muon_trains_and_refuses_a_bad_adjustment(tmp_path: Path) -> None:
    base = ["data=toy_lm", "model=gpt", "model.n_layers=1", "model.d_model=32", "model.n_heads=2"]
    base += ["optimizer=muon", "trainer.max_steps=3", "trainer.max_epochs=1", "test=false"]
    base += ["trainer.limit_val_batches=1", "callbacks.rich_progress_bar=null"]
    result = train(compose_config(tmp_path / "ok", base))
    assert result["global_step"] == 3
    bad = compose_config(tmp_path / "bad", [*base, "optimizer.adjust_lr_fn=spectral"])
    with pytest.raises(ConfigError, match=r"optimizer\.adjust_lr_fn='spectral' is not valid"):
        train(bad)
