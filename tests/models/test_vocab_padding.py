"""model.vocab_pad_multiple: padded tables and heads, logits over the real vocabulary only."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import nn

from attnlab.models import DecoderOnly, EncoderDecoder, EncoderOnly, ModelConfig
from attnlab.tasks.decoding import beam_search, greedy_decode

V, M = 37, 16  # 37 tokens padded to 48 rows
ROWS = 48
SMALL = dict(d_model=32, n_heads=4, dropout=0.0)

BUILDERS: dict[str, Callable[..., nn.Module]] = {
    "gpt": lambda **kw: DecoderOnly(V, n_layers=2, max_len=24, **SMALL, **kw),
    "gpt-untied": lambda **kw: DecoderOnly(V, n_layers=2, tie_output=False, **SMALL, **kw),
    "encdec": lambda **kw: EncoderDecoder(V, n_encoder_layers=1, n_decoder_layers=1, **SMALL, **kw),
    "encdec-two-vocabularies": lambda **kw: EncoderDecoder(
        V, share_embeddings=False, tgt_vocab_size=V + 5, n_encoder_layers=1, **SMALL, **kw
    ),
    "bert": lambda **kw: EncoderOnly(V, n_layers=2, **SMALL, **kw),
}


def logits(model: nn.Module, ids: torch.Tensor) -> torch.Tensor:
    if isinstance(model, EncoderDecoder):
        return model(ids, ids[:, :5])
    return model(ids)


@torch.no_grad()
def padded_copy(model: nn.Module, padded: nn.Module) -> None:
    """The unpadded model's weights into the padded one, padded rows random (they must not
    matter)."""
    own = padded.state_dict()
    for key, value in model.state_dict().items():
        target = own[key]
        target[: value.size(0)].copy_(value)


def test_vocab_pad_multiple_is_validated() -> None:
    with pytest.raises(ValueError, match=r"^model\.vocab_pad_multiple=0 is not valid"):
        ModelConfig(vocab_pad_multiple=0)
    config = ModelConfig(vocab_pad_multiple=64)
    assert [config.padded_vocab(v) for v in (1, 64, 65, 50257)] == [64, 64, 128, 50304]
    assert ModelConfig().padded_vocab(50257) == 50257  # default 1: no padding


@pytest.mark.parametrize("name", list(BUILDERS))
def test_padded_network_computes_the_unpadded_logits(name: str) -> None:
    model = BUILDERS[name]().eval()
    padded = BUILDERS[name](vocab_pad_multiple=M).eval()
    for key, value in padded.state_dict().items():  # only tables and heads have more rows
        rows = model.state_dict()[key].size(0)
        if value.size(0) != rows:
            assert (rows, value.size(0)) in ((V, ROWS), (V + 5, ROWS)), key
    padded_copy(model, padded)
    ids = torch.randint(1, V, (3, 9))
    expected = logits(model, ids)
    got = logits(padded, ids)
    assert got.shape == expected.shape  # the real vocabulary only
    torch.testing.assert_close(got, expected)


@pytest.mark.parametrize("name", list(BUILDERS))
def test_unpadded_checkpoint_loads_into_a_padded_network(name: str) -> None:
    old = BUILDERS[name]().eval()
    padded = BUILDERS[name](vocab_pad_multiple=M).eval()
    padded.load_state_dict(old.state_dict())  # strict; zero rows appended
    ids = torch.randint(1, V, (2, 7))
    torch.testing.assert_close(logits(padded, ids), logits(old, ids))


def test_unpadded_bert_body_loads_into_a_padded_one() -> None:
    old = BUILDERS["bert"]().eval()
    padded = BUILDERS["bert"](vocab_pad_multiple=M).eval()
    padded.load_body_state_dict(old.state_dict())  # body and MLM head
    ids = torch.randint(1, V, (2, 7))
    torch.testing.assert_close(padded(ids), old(ids))
    assert padded.mlm_logits(torch.randn(4, 32)).shape == (4, V)


@torch.no_grad()
def loud_padding(model: nn.Module) -> None:
    """Make every padded row win: were its logit ever seen, it would be predicted."""
    for module in model.modules():
        if isinstance(module, nn.Linear) and module.out_features == ROWS:
            module.weight[V:] = 100.0
            if module.bias is not None:
                module.bias[V:] = 1e4


def test_generation_never_yields_a_padded_id() -> None:
    model = BUILDERS["gpt-untied"](vocab_pad_multiple=M).eval()
    loud_padding(model)
    prompt = torch.randint(1, V, (4, 3))
    for kwargs in (dict(temperature=0.0), dict(temperature=1.0), dict(top_k=3), dict(top_p=0.9)):
        for use_cache in (True, False):
            out = model.generate(prompt, 6, use_cache=use_cache, **kwargs)
            assert int(out.max()) < V, kwargs


def test_greedy_and_beam_search_never_yield_a_padded_id() -> None:
    untied = dict(tie_output=False, share_embeddings=False, vocab_pad_multiple=M)
    model = EncoderDecoder(V, n_encoder_layers=1, n_decoder_layers=1, **untied, **SMALL).eval()
    loud_padding(model)
    src = torch.randint(3, V, (3, 6))
    mask = torch.zeros_like(src, dtype=torch.bool)
    greedy = greedy_decode(model, src, mask, 1, 2, 0, 8)
    beams = beam_search(model, src, mask, 1, 2, 0, 8, 3, 1.0)
    assert int(greedy.max()) < V and int(beams.max()) < V


def test_masked_lm_logits_cover_the_real_vocabulary_only() -> None:
    model = BUILDERS["bert"](vocab_pad_multiple=M).eval()
    loud_padding(model)
    out = model(torch.randint(1, V, (2, 5)))
    assert out.shape == (2, 5, V)
    assert int(out.argmax(-1).max()) < V


def test_flops_count_the_padded_head_that_runs() -> None:
    for name in ("gpt", "gpt-untied", "encdec"):
        plain, padded = BUILDERS[name](), BUILDERS[name](vocab_pad_multiple=M)
        extra = 6 * (ROWS - V) * 32  # 6 FLOPs per weight and token, d_model 32
        if name == "encdec":  # the head acts on target tokens, half of the tokens counted
            extra //= 2
        assert padded.flops_per_token(16) - plain.flops_per_token(16) == extra, name


@pytest.mark.parametrize("model", ["gpt", "bert", "encdec"])
def test_gpu_trainers_pad_the_vocabulary_to_64_and_logits_keep_its_size(
    tmp_path, model: str
) -> None:
    """trainer=gpu/ddp/fsdp: model.vocab_pad_multiple is 64 (CPU trainers: 1); a network built
    from such a config (here on the CPU) has padded tables and real-vocabulary logits."""
    from attnlab.run import build_datamodule, build_network
    from tests.conftest import compose_config

    data = {"gpt": "toy_lm data.vocab_size=50", "bert": "toy_mlm", "encdec": "reverse"}[model]
    base = [f"model={model}", *f"data={data}".split(), "model.d_model=32", "model.n_heads=2"]
    for trainer, multiple in (("gpu", 64), ("ddp", 64), ("fsdp", 64), ("cpu", 1), ("ddp_cpu", 1)):
        cfg = compose_config(tmp_path / trainer, [*base, f"trainer={trainer}"])
        assert cfg.model.vocab_pad_multiple == multiple, trainer
    cfg = compose_config(tmp_path / "net", [*base, "trainer=gpu", "trainer.accelerator=gpu"])
    network = build_network(cfg, build_datamodule(cfg))
    vocab = network.vocab_sizes[-1]  # the target's, for the encoder-decoder
    out = logits(network, torch.randint(min(network.vocab_sizes), (2, 6)))
    assert out.size(-1) == vocab
    rows = [m.weight.size(0) for m in network.modules() if isinstance(m, nn.Embedding)]
    assert network.config.vocab_pad_multiple == 64
    assert any(r % 64 == 0 and r > min(network.vocab_sizes) for r in rows), rows  # padded
