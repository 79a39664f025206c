"""The encoder-decoder Transformer of "Attention Is All You Need" (Vaswani et al., 2017)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from attnlab.models.attention import PADDING_SIDES, causal_padding_mask
from attnlab.models.checks import check_choice, invalid
from attnlab.models.config import ModelConfig
from attnlab.models.embedding import TokenEmbedding
from attnlab.models.heads import Pooler, SequenceClassifier, lm_head, pad_vocab_rows
from attnlab.models.init import xavier_init
from attnlab.models.kv_cache import KVCache
from attnlab.models.mup import apply_mup
from attnlab.models.network import ConfiguredNetwork
from attnlab.models.parameters import attended_keys, parameter_count, training_flops
from attnlab.models.position_schemes import build_positional
from attnlab.models.stack import TransformerDecoder, TransformerEncoder

ENCDEC_POOLING = ("mean", "cls", "decoder")


class EncoderDecoder(ConfiguredNetwork, SequenceClassifier, nn.Module):
    """Source tokens -> encoder -> memory; target tokens + memory -> decoder -> logits.

    With num_classes it is a sequence classifier instead (no output projection): the input is
    encoded, then pooled by `pooling`: "mean" or "cls" over the encoder output (the decoder is
    not built), or "decoder": one decoder step from a learned query that cross-attends to the
    whole input (as T5/BART classify), its output read by the classifier.
    final_norm: a norm after each stack's last block (None: for pre-LN only).
    padding_side: where the padding of `decode`'s tgt_padding_mask lies: "right" (after each
    row's tokens, as attnlab's batches pad) lets the decoder's causal self-attention drop the
    mask (see attention.causal_padding_mask); "any" applies it.
    settings: the other ModelConfig fields (dropout, activation, norm, norm_first, pos,
    max_len, bias, layer_norm_eps, n_kv_heads, qk_norm, vocab_pad_multiple, parametrization,
    mup_base_width, mup_base_d_head, attn_window, attn_global_every, attn_softcap, and
    registered attention variants' settings), by keyword; or `config`, a prebuilt ModelConfig.
    """

    supported_tasks: ClassVar[tuple[str, ...]] = ("seq2seq", "classification")
    prefix_lm: ClassVar[bool] = False  # the source has an encoder of its own

    # The 2017 paper's layout, over ModelConfig's defaults.
    setting_defaults: ClassVar[dict[str, Any]] = dict(
        dropout=0.1, activation="relu", norm_first=False, pos="sinusoidal", max_len=512
    )

    def __init__(
        self,
        vocab_size: int,
        d_model: int = 128,
        n_heads: int = 4,
        n_encoder_layers: int = 2,
        n_decoder_layers: int = 2,
        d_ff: int = 512,
        *,
        share_embeddings: bool = True,
        tie_output: bool = True,
        tgt_vocab_size: int | None = None,
        final_norm: bool | None = None,
        num_classes: int | None = None,
        pooling: str = "mean",
        padding_side: str = "any",
        config: ModelConfig | None = None,
        **settings: Any,
    ):
        own = dict(vocab_size=vocab_size, n_encoder_layers=n_encoder_layers)
        own |= dict(n_decoder_layers=n_decoder_layers, share_embeddings=share_embeddings)
        own |= dict(tie_output=tie_output, tgt_vocab_size=tgt_vocab_size, final_norm=final_norm)
        own |= dict(num_classes=num_classes, pooling=pooling, padding_side=padding_side)
        flat = dict(d_model=d_model, n_heads=n_heads, d_ff=d_ff, **settings)
        config = self.resolve_config(config, own, flat)  # checks all, before anything is built
        super().__init__()
        self.config, self.max_len, self.d_model = config, config.max_len, config.d_model
        d_model = self.d_model
        if tgt_vocab_size is None:
            tgt_vocab_size = vocab_size
        self.padding_side = padding_side
        self.vocab_sizes = (vocab_size, tgt_vocab_size)  # for pad_vocab_rows
        rows, tgt_rows = config.padded_vocab(vocab_size), config.padded_vocab(tgt_vocab_size)

        classifier = num_classes is not None
        self.src_embed = TokenEmbedding(rows, d_model)
        # A classifier reads no target tokens: no target embedding, no output projection.
        separate_target = not (share_embeddings or classifier)
        self.tgt_embed = TokenEmbedding(tgt_rows, d_model) if separate_target else self.src_embed
        self.pos = build_positional(config.pos, d_model, config.max_len)  # source and target
        self.dropout = nn.Dropout(config.dropout)
        self.encoder = TransformerEncoder(config, n_encoder_layers, final_norm)
        uses_decoder = not classifier or pooling == "decoder"
        self.decoder = (
            TransformerDecoder(config, n_decoder_layers, final_norm) if uses_decoder else None
        )
        self.lm_head = None if classifier else lm_head(d_model, tgt_vocab_size, tgt_rows)
        self.pooler = self.class_query = self.classifier = None
        if classifier:
            self._add_classification_head(config, num_classes, pooling)
        self._initialise(config, tie_output, padded=rows > vocab_size or tgt_rows > tgt_vocab_size)

    def _add_classification_head(self, config: ModelConfig, num_classes: int, pooling: str):
        pooler = None
        if pooling == "decoder":
            # The decoder's one input: a learned vector in place of an embedded BOS.
            self.class_query = nn.Parameter(torch.empty(config.d_model))
        else:
            pooler = Pooler(config.d_model, pooling, config.bias)
        self.add_classifier(config.d_model, num_classes, pooler, config.dropout, config.bias)

    def _initialise(self, config: ModelConfig, tie_output: bool, padded: bool) -> None:
        self.apply(xavier_init(config.d_model))
        if self.class_query is not None:
            # Unit scale, like the sqrt(d_model)-scaled token embeddings it stands in for.
            nn.init.normal_(self.class_query, mean=0.0, std=1.0)
        if tie_output and self.lm_head is not None:
            # After init, so the tied matrix keeps the embedding initialisation.
            self.lm_head.weight = self.tgt_embed.embedding.weight
        if padded:  # unpadded checkpoints load
            self.register_load_state_dict_pre_hook(pad_vocab_rows)
        apply_mup(self, config, sp_init="xavier")  # μP's scales (models/mup.py); sp: nothing

    @classmethod
    def check_own_arguments(cls, values: Mapping[str, Any], config: ModelConfig) -> None:
        config.require_positions()
        check_choice("pooling", values["pooling"], ENCDEC_POOLING)
        check_choice("padding_side", values["padding_side"], PADDING_SIDES)
        if values["num_classes"] is not None and values["num_classes"] < 1:
            raise invalid("num_classes", values["num_classes"], "must be >= 1 (or None)")
        vocab_size, tgt_vocab_size = values.get("vocab_size"), values["tgt_vocab_size"]
        one_vocabulary = tgt_vocab_size is None or tgt_vocab_size == vocab_size
        if values["share_embeddings"] and vocab_size is not None and not one_vocabulary:
            raise invalid(
                "share_embeddings",
                True,
                f"one table needs one vocabulary, but vocab_size={vocab_size} and "
                f"tgt_vocab_size={tgt_vocab_size}; set share_embeddings=False",
            )

    def _embed(self, embed: TokenEmbedding, tokens: Tensor, start: int = 0) -> Tensor:
        """(B, T) token ids at positions start.. -> (B, T, D): scaled embedding + position."""
        return self.dropout(self.pos(embed(tokens), start=start))

    def encode(self, src: Tensor, src_padding_mask: Tensor | None = None) -> Tensor:
        """src: (B, S) token ids, src_padding_mask: bool (B, S) -> memory (B, S, D)."""
        return self.encoder(self._embed(self.src_embed, src), padding_mask=src_padding_mask)

    def decode(
        self,
        tgt: Tensor,
        memory: Tensor,
        memory_padding_mask: Tensor | None = None,
        tgt_padding_mask: Tensor | None = None,
        caches: list[tuple[KVCache, KVCache]] | None = None,
    ) -> Tensor:
        """tgt: (B, T) token ids, memory: (B, S, D) -> logits (B, T, V_tgt).

        caches (from `new_caches()`): incremental decoding; tgt holds only the new steps, at
        positions len(cache)...; the memory is projected once and reused.
        With padding_side="right", tgt_padding_mask is not needed before any step is cached
        (the logits at padded positions then differ from a masked pass; nothing reads them).
        """
        start = len(caches[0][0]) if caches else 0
        x = self._embed(self.tgt_embed, tgt, start)  # (B, T, D)
        x = self.decoder(
            x,
            memory,
            padding_mask=causal_padding_mask(tgt_padding_mask, self.padding_side, start),
            memory_padding_mask=memory_padding_mask,
            caches=caches,
        )
        return self.lm_head(x)

    def flops_per_token(self, seq_len: int) -> int:
        """Training FLOPs per token, source and target tokens alike, for pairs whose source and
        target are both seq_len long (see parameters.training_flops). Encoder weights act on
        source tokens; decoder weights and the output projection on target tokens, which attend
        to seq_len targets (causal, counted in full) and seq_len sources. A classifier reads
        seq_len input tokens, plus one decoder step per sequence with pooling="decoder"."""
        d, n_enc = self.d_model, len(self.encoder.layers)
        enc_keys = attended_keys(self.encoder.layers, seq_len)  # windows read min(seq_len, W)
        source = training_flops(parameter_count(self.encoder), n_enc, d, seq_len, enc_keys)
        if self.decoder is None:
            return source
        n_dec = len(self.decoder.layers)
        if self.lm_head is None:  # classifier: one query over 1 + seq_len keys per sequence
            step = training_flops(parameter_count(self.decoder), n_dec, d, 1 + seq_len)
            return source + step // seq_len
        decoder_weights = parameter_count(self.decoder) + self.lm_head.weight.numel()
        dec_keys = attended_keys(self.decoder.layers, seq_len, extra=seq_len)  # + cross
        target = training_flops(decoder_weights, n_dec, d, 2 * seq_len, dec_keys)
        return (source + target) // 2

    def max_target_len(self, src_len: int) -> int:
        """Longest target the decoder can produce (its positions do not depend on the source)."""
        return self.max_len

    def sequence_features(self, input_ids: Tensor, padding_mask: Tensor | None = None) -> Tensor:
        """The encoder output (B, T, D) for classification (SequenceClassifier.classify)."""
        return self.encode(input_ids, padding_mask)

    def pool(self, memory: Tensor, padding_mask: Tensor | None = None) -> Tensor:
        """(B, T, D) -> (B, D): the pooler's, or one decoder step from the class query."""
        if self.class_query is None:
            return super().pool(memory, padding_mask)
        query = self.class_query.expand(memory.size(0), 1, -1)  # (B, 1, D)
        x = self.dropout(self.pos(query))
        return self.decoder(x, memory, memory_padding_mask=padding_mask)[:, 0]  # (B, D)

    def new_caches(self) -> list[tuple[KVCache, KVCache]]:
        """Empty (self-attention, cross-attention) caches, one pair per decoder layer."""
        return [(KVCache(), KVCache()) for _ in self.decoder.layers]

    def forward(
        self,
        src: Tensor,
        tgt: Tensor,
        src_padding_mask: Tensor | None = None,
        tgt_padding_mask: Tensor | None = None,
    ) -> Tensor:
        """Teacher-forced logits (B, T, V_tgt) for target inputs `tgt` given source `src`."""
        memory = self.encode(src, src_padding_mask)
        return self.decode(tgt, memory, src_padding_mask, tgt_padding_mask)
