"""A corpus registered by name serves every task it fits, with no edit of any DataModule."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from attnlab.data import CausalLMDataModule, MaskedLMDataModule
from attnlab.data.sources import LineCorpus, LineTokens, register_text_source, text_source
from attnlab.data.sources.text_sources import TEXT_SOURCES
from attnlab.data.sources.toy_text import toy_sentences


@pytest.fixture
def counting_corpus() -> Iterator[str]:
    """A corpus registered as a new source file would: lines made from a seed."""

    @register_text_source("counting")
    def counting(seed: int) -> LineCorpus:
        def read() -> dict[str, list[str]]:
            lines = toy_sentences(600, seed)
            return {"train": lines[:400], "val": lines[400:500], "test": lines[500:]}

        return LineCorpus("counting", {"seed": seed}, read)

    yield "counting"
    del TEXT_SOURCES["counting"]


def test_registered_corpus_feeds_masked_and_causal_lm(counting_corpus: str, tmp_path: Path) -> None:
    mlm = MaskedLMDataModule(counting_corpus, cache_dir=tmp_path, wordpiece_vocab_size=100, seed=3)
    mlm.setup()
    assert mlm.lines("val") == toy_sentences(600, 3)[400:500]  # its options picked by name
    assert len(mlm.datasets["train"]) > 0 and mlm.spec.vocab_size <= 100
    text = text_source(counting_corpus, seed=3, data_dir="unused", download=False)
    lm = CausalLMDataModule(block_size=8, batch_size=2, source=LineTokens(text, tmp_path, "word"))
    assert lm.spec.decode(lm.corpus.splits["test"]).split("\n")[:3] == text.lines("test")[:3]


def test_names_are_unique_and_unknown_names_list_the_choices(counting_corpus: str) -> None:
    with pytest.raises(ValueError, match="already registered"):
        register_text_source(counting_corpus)(lambda: None)
    with pytest.raises(ValueError, match=r"'c4'.*'wikitext2', 'shakespeare', 'sst2', 'toy'"):
        text_source("c4")
