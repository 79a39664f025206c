"""Tokenizers: characters, WordPiece (BERT), line-level word or BPE, translation BPE."""
