"""Transformer building blocks and models, written from first principles in PyTorch."""

from attnlab.models.attention import MultiHeadAttention, attention_reference
from attnlab.models.attention_variants import (
    ATTENTION_VARIANTS,
    register_attention_variant,
    unregister_attention_variant,
)
from attnlab.models.block import TransformerBlock
from attnlab.models.config import ModelConfig
from attnlab.models.decoder_only import DecoderOnly
from attnlab.models.embedding import TokenEmbedding
from attnlab.models.encoder_decoder import EncoderDecoder
from attnlab.models.encoder_only import EncoderOnly
from attnlab.models.feedforward import FeedForward
from attnlab.models.heads import MaskedLMHead, Pooler, SequenceClassifier
from attnlab.models.kv_cache import KVCache
from attnlab.models.norms import build_norm
from attnlab.models.position_schemes import (
    POSITION_SCHEMES,
    PositionScheme,
    build_positional,
    register_position_scheme,
    unregister_position_scheme,
)
from attnlab.models.positional import (
    AttentionPositions,
    LearnedPositionalEmbedding,
    SinusoidalPositionalEncoding,
)
from attnlab.models.registry import (
    NETWORKS,
    build_network,
    network_class,
    network_class_of,
    register_network,
    unregister_network,
)
from attnlab.models.sampling import filter_logits, sample_next
from attnlab.models.stack import BlockStack, TransformerDecoder, TransformerEncoder

# The `model=` options of conf/model/, by the name of their file.
register_network("encdec")(EncoderDecoder)
register_network("gpt")(DecoderOnly)
register_network("bert")(EncoderOnly)

__all__ = [
    "ATTENTION_VARIANTS",
    "NETWORKS",
    "POSITION_SCHEMES",
    "AttentionPositions",
    "BlockStack",
    "DecoderOnly",
    "EncoderDecoder",
    "EncoderOnly",
    "FeedForward",
    "KVCache",
    "LearnedPositionalEmbedding",
    "MaskedLMHead",
    "ModelConfig",
    "MultiHeadAttention",
    "Pooler",
    "PositionScheme",
    "SequenceClassifier",
    "SinusoidalPositionalEncoding",
    "TokenEmbedding",
    "TransformerBlock",
    "TransformerDecoder",
    "TransformerEncoder",
    "attention_reference",
    "build_network",
    "build_norm",
    "build_positional",
    "filter_logits",
    "network_class",
    "network_class_of",
    "register_attention_variant",
    "register_network",
    "register_position_scheme",
    "sample_next",
    "unregister_attention_variant",
    "unregister_network",
    "unregister_position_scheme",
]
