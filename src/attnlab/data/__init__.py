"""DataModules. Each one says which task it feeds (`DataSpec.task`) and what the model needs to
know about its vocabulary."""

from attnlab.data.spec import DataSpec
from attnlab.data.toy_seq2seq import ToySeq2SeqDataModule

__all__ = ["DataSpec", "ToySeq2SeqDataModule"]
