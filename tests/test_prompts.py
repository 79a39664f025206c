"""attnlab-generate's default prompt works on every causal-LM data option; a prompt the data
cannot read (toy symbols are space-separated integers) is refused in one line naming it."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from hydra.utils import instantiate

from attnlab.data.corpus import PrepareSettings, prepare
from attnlab.data.sources import ToyMarkov
from attnlab.data.spec import prompt_ids, start_ids
from attnlab.models import DecoderOnly
from attnlab.run.generate import generate, generate_texts
from attnlab.run.validation import ConfigError
from tests.conftest import ROOT, compose_config, run_cli
from tests.data.test_prepare import corpus, write_lines

FIXTURE = ROOT / "tests" / "fixtures" / "checkpoints" / "gpt.ckpt"  # data=toy_lm


def causal_lm_data_options() -> set[str]:
    options = set()
    for path in (ROOT / "conf" / "data").glob("*.yaml"):
        defaults = yaml.safe_load(path.read_text()).get("defaults", [])
        if {"/task@_global_.task": "causal_lm"} in defaults:
            options.add(path.stem)
    return options


def text_files(tmp_path: Path) -> list[str]:
    for split in ("train", "val", "test"):
        write_lines(tmp_path / f"{split}.txt", corpus(200, seed=len(split)))
    return [f"data.source.text.{s}={tmp_path / f'{s}.txt'}" for s in ("train", "val", "test")]


def token_shards(tmp_path: Path) -> list[str]:
    out = tmp_path / "shards"
    source = write_lines(tmp_path / "a.txt", corpus(400, seed=1))
    settings = dict(out=str(out), input=str(source), tokenizer="char", workers=1)
    prepare(PrepareSettings(**settings, val_fraction=0.1, test_fraction=0.1))
    return [f"data.path={out}", "data.block_size=16"]


OVERRIDES = {  # what each option needs beyond its defaults (real data: from DATA_DIR)
    "toy_lm": lambda _: [],
    "shakespeare_char": lambda _: [],
    "wikitext2": lambda _: [],
    "text_files": text_files,
    "tokens": token_shards,
}


REAL = ("shakespeare_char", "wikitext2")


def test_every_causal_lm_data_option_is_checked() -> None:
    assert causal_lm_data_options() == set(OVERRIDES)


# The real corpora take seconds to read: in the slow suite.
DATA = [pytest.param(d, marks=pytest.mark.slow) if d in REAL else d for d in sorted(OVERRIDES)]


@pytest.mark.parametrize("data", DATA)
def test_the_default_prompt_works_on_every_causal_lm_data(data: str, tmp_path: Path) -> None:
    cfg = compose_config(tmp_path, ["model=gpt", f"data={data}", *OVERRIDES[data](tmp_path)])
    spec = instantiate(cfg.data).spec
    start = start_ids(spec)
    assert start and all(0 <= i < spec.vocab_size for i in start)
    network = DecoderOnly(spec.vocab_size, 16, 2, 1, max_len=32).eval()
    module = SimpleNamespace(network=network, task=SimpleNamespace(spec=spec))
    (text,) = generate_texts(module, None, 4, temperature=0.0)  # type: ignore[arg-type]
    assert text.startswith(spec.decode(start))  # the prompt, then what followed (maybe <eos>)


def generate_config(tmp_path: Path, *overrides: str):
    return compose_config(
        tmp_path, [f"ckpt_path={FIXTURE}", "max_new_tokens=3", *overrides], "generate"
    )


def test_toy_prompts_are_integers(tmp_path: Path) -> None:
    (default,) = generate(generate_config(tmp_path))  # the configured default prompt
    assert len(default.split()) == 4 and default.split()[0] == "0"
    (text,) = generate(generate_config(tmp_path, "prompt='3 17 42'", "temperature=0"))
    assert text.split()[:3] == ["3", "17", "42"] and len(text.split()) == 6


@pytest.mark.parametrize(
    ("prompt", "message"),
    [("ROMEO:", "symbols are 0..63, space-separated"), ("64", "0..63"), (" ", "no token")],
)
def test_a_prompt_the_data_cannot_read_is_named(prompt: str, message: str) -> None:
    spec = SimpleNamespace(encode=ToyMarkov().encode)
    with pytest.raises(ConfigError, match=message) as error:
        prompt_ids(spec, prompt)  # type: ignore[arg-type]
    assert str(error.value).startswith(f"prompt={prompt!r}")


@pytest.mark.slow
def test_the_cli_refuses_an_unreadable_prompt_in_one_line(tmp_path: Path) -> None:
    result = run_cli(
        "attnlab-generate", f"ckpt_path={FIXTURE}", "prompt=ROMEO:", cwd=tmp_path, check=False
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines() == [
        "attnlab: prompt='ROMEO:' cannot be read: toy LM symbols are 0..63, space-separated "
        "(e.g. '3 17 42'); got 'ROMEO:'"
    ]


def test_sample_text_starts_from_the_default_prompt_on_toy_data(tmp_path: Path) -> None:
    """callbacks=sample_text's configured prompt ("") on data=toy_lm, the data whose text has
    no newline; its sample reads back as toy symbols."""
    import attnlab
    from attnlab.callbacks import SampleText

    prompts = compose_config(tmp_path, ["callbacks=sample_text"]).callbacks.sample_text.prompts
    sampler = SampleText(prompts=list(prompts), max_new_tokens=3)
    (sample,) = [sampler.sample(attnlab.load(FIXTURE).module, p) for p in sampler.prompts]
    assert sample.split()[0] == "0" and len(sample.split()) == 4
