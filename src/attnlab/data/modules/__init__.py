"""One DataModule per task, each handed a source."""

from attnlab.data.modules.causal_lm import CausalLMDataModule
from attnlab.data.modules.classification import ClassificationDataModule
from attnlab.data.modules.masked_lm import MaskedLMDataModule
from attnlab.data.modules.seq2seq import Seq2SeqDataModule

__all__ = [
    "CausalLMDataModule",
    "ClassificationDataModule",
    "MaskedLMDataModule",
    "Seq2SeqDataModule",
]
