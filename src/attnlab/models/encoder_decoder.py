"""The encoder-decoder Transformer of "Attention Is All You Need" (Vaswani et al., 2017)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from attnlab.models.block import TransformerBlock
from attnlab.models.embedding import TokenEmbedding
from attnlab.models.kv_cache import KVCache
from attnlab.models.norms import build_norm
from attnlab.models.parameters import parameter_count, training_flops
from attnlab.models.pooling import Pooler
from attnlab.models.positional import POSITION_KINDS, build_positional, relative_positions


def _final_norm(
    final_norm: bool | None, norm_first: bool, norm: str, d_model: int, eps: float, bias: bool
) -> nn.Module:
    """Norm after the last block. Default: only for pre-LN, whose residual stream is never
    normalised otherwise; post-LN blocks already end with a norm (the paper has none)."""
    if final_norm is None:
        final_norm = norm_first
    return build_norm(norm, d_model, eps, bias) if final_norm else nn.Identity()


class TransformerEncoder(nn.Module):
    """A stack of self-attention blocks over the source sequence."""

    def __init__(
        self,
        n_layers: int,
        d_model: int,
        n_heads: int,
        d_ff: int,
        dropout: float = 0.1,
        activation: str = "relu",
        norm_first: bool = False,
        norm: str = "layernorm",
        bias: bool = True,
        layer_norm_eps: float = 1e-5,
        final_norm: bool | None = None,
        n_kv_heads: int | None = None,
        qk_norm: bool = False,
        relative_pos: str | None = None,
    ):
        super().__init__()
        self.layers = nn.ModuleList(
            TransformerBlock(
                d_model,
                n_heads,
                d_ff,
                dropout,
                activation,
                norm_first,
                cross_attention=False,
                norm=norm,
                bias=bias,
                layer_norm_eps=layer_norm_eps,
                n_kv_heads=n_kv_heads,
                qk_norm=qk_norm,
                relative_pos=relative_pos,
            )
            for _ in range(n_layers)
        )
        self.norm = _final_norm(final_norm, norm_first, norm, d_model, layer_norm_eps, bias)

    def forward(self, x: Tensor, padding_mask: Tensor | None = None) -> Tensor:
        """x: (B, S, D), padding_mask: bool (B, S) True at padding -> (B, S, D)."""
        for layer in self.layers:
            x = layer(x, padding_mask=padding_mask)
        return self.norm(x)


class TransformerDecoder(nn.Module):
    """A stack of causal self-attention + cross-attention blocks over the target sequence."""

    def __init__(
        self,
        n_layers: int,
        d_model: int,
        n_heads: int,
        d_ff: int,
        dropout: float = 0.1,
        activation: str = "relu",
        norm_first: bool = False,
        norm: str = "layernorm",
        bias: bool = True,
        layer_norm_eps: float = 1e-5,
        final_norm: bool | None = None,
        n_kv_heads: int | None = None,
        qk_norm: bool = False,
        relative_pos: str | None = None,
    ):
        super().__init__()
        self.layers = nn.ModuleList(
            TransformerBlock(
                d_model,
                n_heads,
                d_ff,
                dropout,
                activation,
                norm_first,
                cross_attention=True,
                norm=norm,
                bias=bias,
                layer_norm_eps=layer_norm_eps,
                n_kv_heads=n_kv_heads,
                qk_norm=qk_norm,
                relative_pos=relative_pos,
            )
            for _ in range(n_layers)
        )
        self.norm = _final_norm(final_norm, norm_first, norm, d_model, layer_norm_eps, bias)

    def forward(
        self,
        x: Tensor,
        memory: Tensor,
        padding_mask: Tensor | None = None,
        memory_padding_mask: Tensor | None = None,
        caches: list[tuple[KVCache, KVCache]] | None = None,
    ) -> Tensor:
        """x: (B, T, D), memory: (B, S, D) -> (B, T, D). Self-attention is always causal.

        caches: one (self-attention, cross-attention) KVCache pair per layer for incremental
        decoding; x then holds only the new steps.
        """
        if caches is not None and len(caches) != len(self.layers):
            raise ValueError(
                f"need one cache pair per layer: got {len(caches)}, have {len(self.layers)}"
            )
        for index, layer in enumerate(self.layers):
            cache, cross_cache = caches[index] if caches is not None else (None, None)
            x = layer(
                x,
                padding_mask=padding_mask,
                causal=True,
                memory=memory,
                memory_padding_mask=memory_padding_mask,
                cache=cache,
                cross_cache=cross_cache,
            )
        return self.norm(x)


ENCDEC_POOLING = ("mean", "cls", "decoder")


class EncoderDecoder(nn.Module):
    """Source tokens -> encoder -> memory; target tokens + memory -> decoder -> logits.

    With num_classes it is a sequence classifier instead (no output projection): the input is
    encoded, then pooled by `pooling`: "mean" or "cls" over the encoder output (the decoder is
    not built), or "decoder": one decoder step from a learned query that cross-attends to the
    whole input (as T5/BART classify), its output read by the classifier.
    """

    supported_tasks: tuple[str, ...] = ("seq2seq", "classification")

    def __init__(
        self,
        vocab_size: int,
        d_model: int = 128,
        n_heads: int = 4,
        n_encoder_layers: int = 2,
        n_decoder_layers: int = 2,
        d_ff: int = 512,
        dropout: float = 0.1,
        activation: str = "relu",
        norm_first: bool = False,
        norm: str = "layernorm",
        pos: str = "sinusoidal",
        max_len: int = 512,
        share_embeddings: bool = True,
        tie_output: bool = True,
        tgt_vocab_size: int | None = None,
        bias: bool = True,
        layer_norm_eps: float = 1e-5,
        final_norm: bool | None = None,
        n_kv_heads: int | None = None,
        qk_norm: bool = False,
        num_classes: int | None = None,
        pooling: str = "mean",
    ):
        super().__init__()
        # Checked here too so the error comes first, before anything is built.
        if n_heads < 1 or d_model % n_heads != 0:
            raise ValueError(f"d_model ({d_model}) must be divisible by n_heads ({n_heads})")
        if pooling not in ENCDEC_POOLING:
            raise ValueError(f"unknown pooling {pooling!r}; choose one of {list(ENCDEC_POOLING)}")
        if num_classes is not None and num_classes < 1:
            raise ValueError(f"num_classes must be >= 1 (or None), got {num_classes}")
        if pos == "none":
            raise ValueError(
                "pos='none' is for decoder-only models: without positions an encoder cannot "
                f"tell word order; choose one of {[k for k in POSITION_KINDS if k != 'none']}"
            )
        if tgt_vocab_size is None:
            tgt_vocab_size = vocab_size
        if share_embeddings and tgt_vocab_size != vocab_size:
            raise ValueError(
                f"share_embeddings needs one vocabulary, but vocab_size={vocab_size} and "
                f"tgt_vocab_size={tgt_vocab_size}; set share_embeddings=False"
            )
        self.d_model = d_model
        self.max_len = max_len

        classifier = num_classes is not None
        self.src_embed = TokenEmbedding(vocab_size, d_model)
        # A classifier reads no target tokens: no target embedding, no output projection.
        separate_target = not (share_embeddings or classifier)
        self.tgt_embed = (
            TokenEmbedding(tgt_vocab_size, d_model) if separate_target else self.src_embed
        )
        self.pos = build_positional(pos, d_model, max_len)  # shared by source and target
        self.dropout = nn.Dropout(dropout)
        stack_args = dict(  # the same settings for both stacks
            d_model=d_model,
            n_heads=n_heads,
            d_ff=d_ff,
            dropout=dropout,
            activation=activation,
            norm_first=norm_first,
            norm=norm,
            bias=bias,
            layer_norm_eps=layer_norm_eps,
            final_norm=final_norm,
            n_kv_heads=n_kv_heads,
            qk_norm=qk_norm,
            relative_pos=relative_positions(pos),
        )
        self.encoder = TransformerEncoder(n_encoder_layers, **stack_args)
        uses_decoder = not classifier or pooling == "decoder"
        self.decoder = TransformerDecoder(n_decoder_layers, **stack_args) if uses_decoder else None
        self.lm_head = None if classifier else nn.Linear(d_model, tgt_vocab_size, bias=False)
        self.pooler = self.class_query = self.classifier = None
        if classifier:
            if pooling == "decoder":
                # The decoder's one input: a learned vector in place of an embedded BOS.
                self.class_query = nn.Parameter(torch.empty(d_model))
            else:
                self.pooler = Pooler(d_model, pooling, bias)
            self.classifier = nn.Linear(d_model, num_classes, bias=bias)

        self.apply(self._init_weights)
        if self.class_query is not None:
            # Unit scale, like the sqrt(d_model)-scaled token embeddings it stands in for.
            nn.init.normal_(self.class_query, mean=0.0, std=1.0)
        if tie_output and self.lm_head is not None:
            # After init, so the tied matrix keeps the embedding initialisation.
            self.lm_head.weight = self.tgt_embed.embedding.weight

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.xavier_uniform_(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            # Small init because token embeddings get multiplied by sqrt(d_model) (fairseq).
            nn.init.normal_(module.weight, mean=0.0, std=self.d_model**-0.5)

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
        """
        start = len(caches[0][0]) if caches else 0
        x = self._embed(self.tgt_embed, tgt, start)  # (B, T, D)
        x = self.decoder(
            x,
            memory,
            padding_mask=tgt_padding_mask,
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
        source = training_flops(parameter_count(self.encoder), n_enc, d, seq_len)
        if self.decoder is None:
            return source
        n_dec = len(self.decoder.layers)
        if self.lm_head is None:  # classifier: one query over 1 + seq_len keys per sequence
            step = training_flops(parameter_count(self.decoder), n_dec, d, 1 + seq_len)
            return source + step // seq_len
        decoder_weights = parameter_count(self.decoder) + self.lm_head.weight.numel()
        target = training_flops(decoder_weights, n_dec, d, 2 * seq_len)
        return (source + target) // 2

    def max_target_len(self, src_len: int) -> int:
        """Longest target the decoder can produce (its positions do not depend on the source)."""
        return self.max_len

    def classify(self, input_ids: Tensor, padding_mask: Tensor | None = None) -> Tensor:
        """Sequence-classification logits (B, num_classes) for input_ids (B, T)."""
        if self.classifier is None:
            raise ValueError("classify needs a classifier: build EncoderDecoder with num_classes")
        memory = self.encode(input_ids, padding_mask)  # (B, T, D)
        if self.class_query is None:
            pooled = self.pooler(memory, padding_mask)  # (B, D)
        else:
            query = self.class_query.expand(input_ids.size(0), 1, -1)  # (B, 1, D)
            x = self.dropout(self.pos(query))
            pooled = self.decoder(x, memory, memory_padding_mask=padding_mask)[:, 0]  # (B, D)
        return self.classifier(self.dropout(pooled))  # (B, C)

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
