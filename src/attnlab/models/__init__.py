"""Transformer building blocks and models, written from first principles in PyTorch."""

from attnlab.models.attention import MultiHeadAttention, attention_reference
from attnlab.models.block import TransformerBlock
from attnlab.models.decoder_only import DecoderOnly
from attnlab.models.embedding import TokenEmbedding
from attnlab.models.encoder_decoder import EncoderDecoder, TransformerDecoder, TransformerEncoder
from attnlab.models.encoder_only import EncoderOnly
from attnlab.models.feedforward import FeedForward
from attnlab.models.kv_cache import KVCache
from attnlab.models.norms import build_norm
from attnlab.models.positional import (
    LearnedPositionalEmbedding,
    SinusoidalPositionalEncoding,
    build_positional,
)
from attnlab.models.sampling import filter_logits, sample_next

__all__ = [
    "DecoderOnly",
    "EncoderDecoder",
    "EncoderOnly",
    "FeedForward",
    "KVCache",
    "LearnedPositionalEmbedding",
    "MultiHeadAttention",
    "SinusoidalPositionalEncoding",
    "TokenEmbedding",
    "TransformerBlock",
    "TransformerDecoder",
    "TransformerEncoder",
    "attention_reference",
    "build_norm",
    "build_positional",
    "filter_logits",
    "sample_next",
]
