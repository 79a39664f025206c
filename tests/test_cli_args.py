"""Free text on the command line as typed (`attnlab-fill-mask text="the [MASK] is good"`): the
shell drops the quotes, run/cli_args.py quotes the value for Hydra."""

from __future__ import annotations

import random

import pytest
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import OverrideParseException
from omegaconf import OmegaConf

from attnlab.run.cli_args import hydra_quoted, quote_text_values

PARSER = OverridesParser.create()


def read_back(arg: str) -> object:
    """What a command sees for `key=value`: Hydra's parse, then OmegaConf's interpolation."""
    return OmegaConf.create({"v": PARSER.parse_override(arg).value()}).v


def test_unquoted_text_is_what_hydra_refuses() -> None:
    with pytest.raises(OverrideParseException, match="mismatched input '\\['"):
        PARSER.parse_overrides(["text=the [MASK] is good"])


def test_fill_mask_text_reads_back_as_typed() -> None:
    (arg,) = quote_text_values(["text"])(["text=the [MASK] is good"])
    assert read_back(arg) == "the [MASK] is good"


def test_random_texts_read_back_unchanged() -> None:
    """Brackets, commas, both quotes, backslashes, `${`: whatever the shell passes."""
    rng = random.Random()
    alphabet = "ab [](){},=:'\"\\${}# "
    for _ in range(500):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 16)))
        assert read_back(f"text={hydra_quoted(text)}") == text, repr(text)


def test_only_the_named_keys_and_unquoted_values_change() -> None:
    rewrite = quote_text_values(["text"], lists=True)
    args = [
        "ckpt_path=a.ckpt",
        "text='already quoted'",
        'text="[MASK] twice quoted"',
        "text=[Ein Hund., Eine Katze.]",  # a list of sentences (attnlab-translate)
        "top_k=3",
    ]
    assert rewrite(args) == args
    assert quote_text_values(["text"])(["text=[MASK] x"]) == ["text='[MASK] x'"]
