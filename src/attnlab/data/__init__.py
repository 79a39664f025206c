"""DataModules. Each one says which task it feeds (`DataSpec.task`) and what the model needs to
know about its vocabulary."""

from attnlab.data.download import ChecksumError, MissingDataError, ensure_file
from attnlab.data.lm_datamodule import LanguageModelingDataModule, TokenizedCorpus
from attnlab.data.lm_windows import RandomOffsetSampler, TokenWindows
from attnlab.data.masking import TokenMasker
from attnlab.data.mlm_datamodule import MaskedLMDataModule
from attnlab.data.multi30k import Multi30kDataModule
from attnlab.data.shakespeare import ShakespeareCharDataModule
from attnlab.data.spec import DataSpec
from attnlab.data.sst2 import SST2DataModule
from attnlab.data.token_cache import TokenCache
from attnlab.data.toy_lm import ToyLMDataModule
from attnlab.data.toy_seq2seq import ToySeq2SeqDataModule
from attnlab.data.translation_tokenizer import TranslationTokenizer
from attnlab.data.wikitext import WikiText2DataModule
from attnlab.data.wordpiece import WordPieceTokenizer

__all__ = [
    "ChecksumError",
    "DataSpec",
    "LanguageModelingDataModule",
    "MaskedLMDataModule",
    "MissingDataError",
    "Multi30kDataModule",
    "RandomOffsetSampler",
    "SST2DataModule",
    "ShakespeareCharDataModule",
    "TokenCache",
    "TokenMasker",
    "TokenWindows",
    "TokenizedCorpus",
    "ToyLMDataModule",
    "ToySeq2SeqDataModule",
    "TranslationTokenizer",
    "WikiText2DataModule",
    "WordPieceTokenizer",
    "ensure_file",
]
