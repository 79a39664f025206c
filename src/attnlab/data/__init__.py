"""Data, split by job: `sources` (where text or examples come from), `tokenizers`, `loading`
(windows, packing, masking, token budgets, sharding, resumable loaders, caches, downloads) and
`modules`, one DataModule per task that is handed a source.

The names below are the stable ones: configs and checkpoints name them as `_target_`
(`stable.py` builds each from a task DataModule and its source).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from attnlab.utils.lazy import lazy_exports

# Imported on first use (PEP 562): a command that prints its help needs no torch; configs
# name these as `_target_: attnlab.data.<Name>`, which Hydra resolves through __getattr__.
_WHERE = {
    "ChecksumError": "attnlab.data.loading.download",
    "MissingDataError": "attnlab.data.loading.download",
    "ensure_file": "attnlab.data.loading.download",
    "RandomOffsetSampler": "attnlab.data.loading.lm_windows",
    "TokenWindows": "attnlab.data.loading.lm_windows",
    "TokenMasker": "attnlab.data.loading.masking",
    "TokenCache": "attnlab.data.loading.token_cache",
    "CausalLMDataModule": "attnlab.data.modules.causal_lm",
    "LanguageModelingDataModule": "attnlab.data.modules.causal_lm",
    "ClassificationDataModule": "attnlab.data.modules.classification",
    "MaskedLMDataModule": "attnlab.data.modules.masked_lm",
    "Seq2SeqDataModule": "attnlab.data.modules.seq2seq",
    "TokenShardsDataModule": "attnlab.data.modules.tokens",
    "TokenizedCorpus": "attnlab.data.sources.base",
    "DataSpec": "attnlab.data.spec",
    "Multi30kDataModule": "attnlab.data.stable",
    "ShakespeareCharDataModule": "attnlab.data.stable",
    "SST2DataModule": "attnlab.data.stable",
    "ToyLMDataModule": "attnlab.data.stable",
    "ToySeq2SeqDataModule": "attnlab.data.stable",
    "WikiText2DataModule": "attnlab.data.stable",
    "TranslationTokenizer": "attnlab.data.tokenizers.translation",
    "WordPieceTokenizer": "attnlab.data.tokenizers.wordpiece",
}

if TYPE_CHECKING:
    from attnlab.data.loading.download import ChecksumError, MissingDataError, ensure_file
    from attnlab.data.loading.lm_windows import RandomOffsetSampler, TokenWindows
    from attnlab.data.loading.masking import TokenMasker
    from attnlab.data.loading.token_cache import TokenCache
    from attnlab.data.modules.causal_lm import CausalLMDataModule, LanguageModelingDataModule
    from attnlab.data.modules.classification import ClassificationDataModule
    from attnlab.data.modules.masked_lm import MaskedLMDataModule
    from attnlab.data.modules.seq2seq import Seq2SeqDataModule
    from attnlab.data.modules.tokens import TokenShardsDataModule
    from attnlab.data.sources.base import TokenizedCorpus
    from attnlab.data.spec import DataSpec
    from attnlab.data.stable import (
        Multi30kDataModule,
        ShakespeareCharDataModule,
        SST2DataModule,
        ToyLMDataModule,
        ToySeq2SeqDataModule,
        WikiText2DataModule,
    )
    from attnlab.data.tokenizers.translation import TranslationTokenizer
    from attnlab.data.tokenizers.wordpiece import WordPieceTokenizer


__getattr__, __dir__ = lazy_exports(__name__, _WHERE, globals())


__all__ = [
    "CausalLMDataModule",
    "ChecksumError",
    "ClassificationDataModule",
    "DataSpec",
    "LanguageModelingDataModule",
    "MaskedLMDataModule",
    "MissingDataError",
    "Multi30kDataModule",
    "RandomOffsetSampler",
    "SST2DataModule",
    "Seq2SeqDataModule",
    "ShakespeareCharDataModule",
    "TokenCache",
    "TokenMasker",
    "TokenShardsDataModule",
    "TokenWindows",
    "TokenizedCorpus",
    "ToyLMDataModule",
    "ToySeq2SeqDataModule",
    "TranslationTokenizer",
    "WikiText2DataModule",
    "WordPieceTokenizer",
    "ensure_file",
]
