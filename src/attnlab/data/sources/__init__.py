"""Where text and examples come from. Importing this package registers every named text
source (`text_sources.TEXT_SOURCES`), in the order `data.corpus` lists them."""

from attnlab.data.sources import wikitext  # noqa: I001  (registration order)
from attnlab.data.sources import shakespeare, sst2, toy_text
from attnlab.data.sources.base import PairSource, TextSource, TokenizedCorpus, TokenStreams
from attnlab.data.sources.labelled import LabelledFiles, LabelledSource
from attnlab.data.sources.line_tokens import LineTokens
from attnlab.data.sources.lines import LineCorpus
from attnlab.data.sources.local_text import LocalText
from attnlab.data.sources.multi30k import Multi30k
from attnlab.data.sources.text_sources import register_text_source, text_source
from attnlab.data.sources.shakespeare import ShakespeareChars
from attnlab.data.sources.sst2 import SST2
from attnlab.data.sources.toy_markov import ToyMarkov
from attnlab.data.sources.toy_pairs import ToyPairs
from attnlab.data.sources.wikitext import WikiText2Tokens

__all__ = [
    "SST2",
    "LabelledFiles",
    "LabelledSource",
    "LineCorpus",
    "LineTokens",
    "LocalText",
    "Multi30k",
    "PairSource",
    "ShakespeareChars",
    "TextSource",
    "TokenStreams",
    "TokenizedCorpus",
    "ToyMarkov",
    "ToyPairs",
    "WikiText2Tokens",
    "register_text_source",
    "shakespeare",
    "sst2",
    "text_source",
    "toy_text",
    "wikitext",
]
