"""ModelConfig: one frozen object that checks every block setting once, with one-line errors
that name the key, the value and what is valid; the networks build theirs from keywords."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from attnlab.models import DecoderOnly, EncoderDecoder, EncoderOnly, ModelConfig

V = 23


@pytest.mark.parametrize(
    ("settings", "match"),
    [
        (dict(d_model=32, n_heads=3), r"model\.n_heads=3 .*d_model \(32\).*1, 2, 4, 8, 16, 32"),
        (dict(n_heads=4, n_kv_heads=3), r"model\.n_kv_heads=3 .*n_heads \(4\).*1, 2, 4"),
        (dict(n_heads=0), r"model\.n_heads=0 is not valid: must be a positive number"),
        (dict(d_ff=0), r"model\.d_ff=0 is not valid: must be a positive number"),
        (
            dict(activation="tanh"),
            r"model\.activation='tanh' .*'relu', 'gelu', 'gelu_tanh', 'swiglu'",
        ),
        (dict(norm="batchnorm"), r"model\.norm='batchnorm' .*'layernorm', 'rmsnorm'"),
        (dict(pos="rotary"), r"model\.pos='rotary' .*'sinusoidal', 'learned', 'rope', 'alibi'"),
        (dict(dropout=1.5), r"model\.dropout=1\.5 is not valid: must be a probability"),
        (dict(d_model="abc"), r"model\.d_model='abc' is not valid: expected int"),
        (dict(qk_norm=1), r"model\.qk_norm=1 is not valid: expected bool"),
        (dict(max_len=True), r"model\.max_len=True is not valid: expected int"),
        (dict(layer_norm_eps=-1e-5), r"model\.layer_norm_eps=-1e-05 .*positive"),
    ],
)
def test_bad_settings_are_one_line_errors_naming_key_value_and_choices(
    settings: dict, match: str
) -> None:
    with pytest.raises(ValueError, match=match) as error:
        ModelConfig(**settings)
    assert "\n" not in str(error.value)


def test_config_is_frozen_and_resolves_d_ff() -> None:
    config = ModelConfig(d_model=48, n_heads=6)
    assert config.d_ff == 4 * 48 and config.d_head == 8
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.d_model = 64  # type: ignore[misc]
    assert ModelConfig(d_model=48, n_heads=6, d_ff=100).d_ff == 100
    assert ModelConfig(dropout=0).dropout == 0  # an int where a float is expected is fine


@pytest.mark.parametrize(
    ("build", "expected"),
    [
        (lambda **k: DecoderOnly(V, 32, 4, 1, **k), ModelConfig(d_model=32, n_heads=4)),
        (
            lambda **k: EncoderOnly(V, 32, 4, 1, **k),
            ModelConfig(
                d_model=32,
                n_heads=4,
                dropout=0.1,
                norm_first=False,
                max_len=512,
                layer_norm_eps=1e-12,
            ),
        ),
        (
            lambda **k: EncoderDecoder(V, 32, 4, 1, 1, 64, **k),
            ModelConfig(
                d_model=32,
                n_heads=4,
                d_ff=64,
                dropout=0.1,
                activation="relu",
                norm_first=False,
                pos="sinusoidal",
                max_len=512,
            ),
        ),
    ],
)
def test_networks_hold_the_config_of_their_keywords(build, expected: ModelConfig) -> None:
    assert build().config == expected  # each architecture's defaults
    knobs = dict(n_kv_heads=2, qk_norm=True, norm="rmsnorm", bias=False, max_len=64)
    assert build(**knobs).config == dataclasses.replace(expected, **knobs)


def test_unknown_keywords_and_bad_values_fail_before_anything_is_built() -> None:
    with pytest.raises(TypeError, match=r"unexpected keyword arguments \['d_modle'\]"):
        DecoderOnly(V, d_modle=32)
    before = torch.random.get_rng_state()
    with pytest.raises(ValueError, match=r"model\.n_heads=5"):
        EncoderDecoder(V, d_model=32, n_heads=5)
    assert torch.equal(torch.random.get_rng_state(), before)  # no weight was drawn


def test_check_arguments_needs_no_vocabulary() -> None:
    """The config-time check (run/value_checks.py): before the data says vocab_size."""
    assert EncoderOnly.check_arguments({"d_model": 64}).d_model == 64
    with pytest.raises(ValueError, match=r"model\.pooling='last' .*'cls', 'mean'"):
        EncoderOnly.check_arguments({"pooling": "last"})
    with pytest.raises(ValueError, match=r"model\.pos='none' .*decoder-only"):
        EncoderDecoder.check_arguments({"pos": "none", "compile": False})  # run keys ignored
