"""`attnlab-prepare`: stream a corpus through a tokenizer into token shards (loading/shards.py),
on all cores.

Documents: each non-empty line of a text file (plain or .gz), each record of a JSONL file (its
`text_field`), or each record of a Hugging Face dataset (`input=hf:NAME`, when `datasets` is
installed). Empty lines are skipped. Splits: `val_input`/`test_input` name separate inputs;
without them, val and test are carved from `input` by position: of every 1000 documents, the
first `val_fraction * 1000` go to val and the next `test_fraction * 1000` to test.

Memory is bounded: documents are read in chunks of about `chunk_mb` of text, encoded by a pool
of worker processes with at most two chunks per worker in flight, and appended to the open shard;
a shard closes after about `shard_mb` of text. Everything is a deterministic function of the
input and the settings, so a run killed part-way resumes: finished shards (a shard's .json
marker is written last) are kept and their chunks are skipped without encoding; the rest are
redone and come out byte for byte as an uninterrupted run writes them. Every file is written
atomically (loading/atomic.py).

settings.py: what it takes; documents.py: reading the inputs; tokenizer_training.py: the
tokenizer; encoding.py: chunks encoded by worker processes; shard_writer.py: shards written and
found again; pipeline.py: the whole run.
"""

from attnlab.data.corpus.pipeline import prepare
from attnlab.data.corpus.settings import PrepareError, PrepareSettings

__all__ = ["PrepareError", "PrepareSettings", "prepare"]
