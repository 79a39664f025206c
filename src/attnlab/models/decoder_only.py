"""A decoder-only (GPT-style) language model: causal self-attention blocks over one sequence.

Besides language modelling it classifies (pooling the last token) and translates as a prefix
LM (the source is the start of the sequence, see prefix_lm.py), so the three architectures
can be compared on the same tasks.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from attnlab.models.attention import PADDING_SIDES, causal_padding_mask, decoding_kernels
from attnlab.models.checks import check_choice, invalid
from attnlab.models.config import ModelConfig
from attnlab.models.document_mask import DocumentMask, check_document_ids, document_positions
from attnlab.models.embedding import TokenEmbedding
from attnlab.models.heads import Pooler, SequenceClassifier, lm_head, pad_vocab_rows
from attnlab.models.init import gpt2_init, scale_residual_outputs
from attnlab.models.kv_cache import KVCache
from attnlab.models.mup import apply_mup
from attnlab.models.network import ConfiguredNetwork
from attnlab.models.parameters import attended_keys, count_parameters, training_flops
from attnlab.models.position_schemes import build_positional
from attnlab.models.prefix_lm import PREFIX_ATTENTION, left_align, row_positions
from attnlab.models.sampling import sample_next
from attnlab.models.stack import BlockStack


class DecoderOnly(ConfiguredNetwork, SequenceClassifier, BlockStack):
    """Token + position embedding -> causal TransformerBlocks -> final norm -> LM head.

    With the defaults (pre-LN, learned positions, GELU, tied head) this is GPT-2's layout.
    num_classes adds a classifier on the pooled hidden states ("last" token or "mean").
    prefix_attention: for seq2seq, "causal" everywhere, or "full" attention within the source.
    padding_side: where the padding of `forward`'s and `classify`'s padding masks lies:
    "right" (after each row's tokens, as attnlab's batches pad) lets causal attention drop
    the mask (see attention.causal_padding_mask); "any" (e.g. left padding) applies it.
    settings: the other ModelConfig fields (models/config.py), by keyword; or `config`, a
    prebuilt ModelConfig (then no settings). ModelConfig's defaults are GPT-2's.
    """

    supported_tasks: ClassVar[tuple[str, ...]] = ("causal_lm", "seq2seq", "classification")
    prefix_lm: ClassVar[bool] = True  # seq2seq reads [source | target] as one sequence

    def __init__(
        self,
        vocab_size: int,
        d_model: int = 128,
        n_heads: int = 4,
        n_layers: int = 4,
        d_ff: int | None = None,
        *,
        tie_output: bool = True,
        num_classes: int | None = None,
        pooling: str = "last",
        prefix_attention: str = "causal",
        padding_side: str = "any",
        config: ModelConfig | None = None,
        **settings: Any,
    ):
        own = dict(vocab_size=vocab_size, n_layers=n_layers, tie_output=tie_output)
        own |= dict(num_classes=num_classes, pooling=pooling, prefix_attention=prefix_attention)
        own["padding_side"] = padding_side
        flat = dict(d_model=d_model, n_heads=n_heads, d_ff=d_ff, **settings)
        config = self.resolve_config(config, own, flat)  # checks all, before anything is built
        super().__init__()
        self.config, self.max_len, self.d_model = config, config.max_len, config.d_model
        d_model = self.d_model
        self.prefix_attention, self.padding_side = prefix_attention, padding_side
        self.vocab_size, self.vocab_sizes = vocab_size, (vocab_size,)  # for pad_vocab_rows
        rows = config.padded_vocab(vocab_size)
        self._matmul_params: int | None = None  # for flops_per_token

        # Unscaled, as in GPT-2: the embedding is N(0, 0.02) like the positions it is added to.
        self.tok_embed = TokenEmbedding(rows, d_model, scale=False)
        self.pos = build_positional(config.pos, d_model, config.max_len)
        self.dropout = nn.Dropout(config.dropout)
        self.add_blocks(config, n_layers)
        # A classifier predicts no tokens: no LM head (an untied one would get no gradient).
        classifier = num_classes is not None
        self.lm_head = None if classifier else lm_head(d_model, vocab_size, rows)
        self.pooler = self.classifier = None
        if classifier:
            pooler = Pooler(d_model, pooling, config.bias)
            self.add_classifier(d_model, num_classes, pooler, config.dropout, config.bias)
        self.apply(gpt2_init)
        scale_residual_outputs(self.layers, n_layers)
        if tie_output and self.lm_head is not None:
            # After init, so the tied matrix keeps the embedding initialisation.
            self.lm_head.weight = self.tok_embed.weight
        if rows > vocab_size:  # unpadded checkpoints load
            self.register_load_state_dict_pre_hook(pad_vocab_rows)
        apply_mup(self, config, sp_init="fixed")  # μP's scales (models/mup.py); sp: nothing

    @classmethod
    def check_own_arguments(cls, values: Mapping[str, Any], config: ModelConfig) -> None:
        # "cls" would read the first token, which under causal attention sees only itself.
        check_choice("pooling", values["pooling"], ("last", "mean"))
        check_choice("prefix_attention", values["prefix_attention"], PREFIX_ATTENTION)
        check_choice("padding_side", values["padding_side"], PADDING_SIDES)
        if values["num_classes"] is not None and values["num_classes"] < 1:
            raise invalid("num_classes", values["num_classes"], "must be >= 1 (or None)")

    def forward(
        self,
        idx: Tensor,
        padding_mask: Tensor | None = None,
        caches: list[KVCache] | None = None,
        start: int = 0,
        document_ids: Tensor | None = None,
    ) -> Tensor:
        """idx: (B, T) token ids at positions start..start+T-1 -> logits (B, T, V).

        Self-attention is always causal. padding_mask: bool, True at padding; (B, T), or
        (B, start + T) with caches since it covers the cached keys too. With
        padding_side="right" it is not needed (and not used) before any step is cached, and
        the logits at padded positions are then not those of a masked pass (nothing reads them).
        caches: one KVCache per layer; idx then holds only the new steps, and start must be
        the number of steps already cached.
        document_ids: integer (B, T) for packed documents (document_mask.py): each token
        attends within its own document, at positions counted from the document's start.
        """
        if self.lm_head is None:
            raise ValueError("a classifier (num_classes set) has no LM head; use classify")
        padding_mask = causal_padding_mask(padding_mask, self.padding_side, start)
        if caches and len(caches[0]) != start:
            raise ValueError(
                f"start={start} must equal the number of cached steps ({len(caches[0])})"
            )
        hidden = self.hidden_states(idx, padding_mask, caches, start, document_ids=document_ids)
        return self.lm_head(hidden)  # (B, T, V)

    def lm_readout(self) -> nn.Module | None:
        return self.lm_head  # heads.LMHead: losses read its weight (protocols.LMReadout)

    def hidden_states(
        self,
        idx: Tensor,
        padding_mask: Tensor | None = None,
        caches: list[KVCache] | None = None,
        start: int = 0,
        positions: Tensor | None = None,
        prefix_len: int = 0,
        document_ids: Tensor | None = None,
    ) -> Tensor:
        """The final-norm hidden states (B, T, D) behind `forward`'s logits.

        positions: per-row positions (B, T) for left-padded rows (else start..start+T-1).
        prefix_len: the first prefix_len columns attend to each other both ways.
        document_ids: integer (B, T), packed documents (see `forward`).
        """
        T = idx.size(1)
        if start < 0 or start + T > self.max_len:
            raise ValueError(
                f"positions {start}..{start + T - 1} do not fit in max_len={self.max_len}; "
                "use shorter sequences or a larger max_len"
            )
        inputs: dict[str, Any] = {
            "padding_mask": padding_mask,
            "causal": True,
            "prefix_len": prefix_len,
        }
        if document_ids is not None:  # packed documents (document_mask.py)
            if caches is not None or start != 0 or positions is not None or prefix_len > 0:
                raise ValueError(
                    "document_ids are for training on packed documents: they take no KV cache, "
                    "start, positions or prefix (generate one document at a time without them)"
                )
            check_document_ids(document_ids, idx)
            positions = document_positions(document_ids)  # (B, T), 0 at each document's start
            # FlexAttention has no attention dropout and no padding: those need the explicit
            # mask. The blocks get `documents` only here, so a custom block need not take it.
            dropout = self.training and self.dropout.p > 0
            plain = padding_mask is None and not dropout and not self.has_attention_variants()
            flex = None if plain else False
            inputs["documents"] = DocumentMask(document_ids, flex=flex)
        x = self.dropout(self.pos(self.tok_embed(idx), start=start, positions=positions))
        return self.run_blocks(x, caches, **inputs)  # (B, T, D)

    def sequence_features(self, input_ids: Tensor, padding_mask: Tensor | None = None) -> Tensor:
        """Hidden states (B, T, D) for classification (SequenceClassifier.classify); the
        pooler reads the real positions only."""
        mask = causal_padding_mask(padding_mask, self.padding_side)
        return self.hidden_states(input_ids, mask)

    # ---- sequence-to-sequence as a prefix LM (the interface of EncoderDecoder) ----

    def encode(self, src: Tensor, src_padding_mask: Tensor | None = None) -> Tensor:
        """No encoder: the source itself is the "memory" that `decode` reads as its prefix."""
        return src

    def new_caches(self) -> list[KVCache]:
        """Empty KV caches for incremental `decode`, one per layer."""
        return [KVCache() for _ in self.layers]

    def max_target_len(self, src_len: int) -> int:
        """Longest target that fits after a source of src_len tokens."""
        return self.max_len - src_len

    def decode(
        self,
        tgt: Tensor,
        memory: Tensor,
        memory_padding_mask: Tensor | None = None,
        tgt_padding_mask: Tensor | None = None,
        caches: list[KVCache] | None = None,
    ) -> Tensor:
        """Logits (B, T, V) for target tokens tgt (B, T) that follow the source `memory` (B, S).

        Reads [left-aligned source | tgt] (prefix_lm.py). With caches (from `new_caches()`),
        the first call runs source and tgt and fills the caches; later calls feed only new
        target steps. Only the target columns reach the LM head.
        """
        src = memory
        src_mask = memory_padding_mask
        if src_mask is None:
            src_mask = torch.zeros_like(src, dtype=torch.bool)
        src, src_mask = left_align(src, src_mask)
        S = src.size(1)
        past = len(caches[0]) if caches else 0
        if tgt_padding_mask is None:
            tgt_padding_mask = torch.zeros_like(tgt, dtype=torch.bool)
        if past == 0:  # the whole sequence: source, then target
            idx = torch.cat([src, tgt], dim=1)  # (B, S + T)
            mask = torch.cat([src_mask, tgt_padding_mask], dim=1)
            positions = row_positions(mask)
            prefix_len = S if self.prefix_attention == "full" else 0
            hidden = self.hidden_states(idx, mask, caches, 0, positions, prefix_len)
            return self.lm_head(hidden[:, S:])  # (B, T, V)
        # Incremental: the source and the target so far are cached.
        generated = torch.zeros(src.size(0), past - S, dtype=torch.bool, device=src.device)
        mask = torch.cat([src_mask, generated, tgt_padding_mask], dim=1)  # (B, past + T)
        positions = row_positions(tgt_padding_mask, past, left_pads=src_mask.sum(dim=1))
        return self.lm_head(self.hidden_states(tgt, mask, caches, past, positions))

    def flops_per_token(self, seq_len: int) -> int:
        """Training FLOPs per token (forward + backward): 6 N + 12 n_layers d_model seq_len.

        The PaLM appendix B / nanoGPT estimate: 6 FLOPs per matmul weight per token (2 forward,
        4 backward), plus attention scores and weighted sums over seq_len keys (full, not
        halved for causality; min(seq_len, W) on a layer with a sliding window W). N: every
        non-embedding parameter plus the LM head matrix once (a tied head's lookup is free,
        its matmul is not; position tables are lookups).
        """
        if self._matmul_params is None:  # counted once: throughput logging asks every step
            n = count_parameters(self)["non_embedding"]
            if self.lm_head is not None and self.lm_head.weight is self.tok_embed.weight:
                n += self.lm_head.weight.numel()
            self._matmul_params = n
        keys = attended_keys(self.layers, seq_len)  # a sliding window reads fewer
        return training_flops(self._matmul_params, len(self.layers), self.d_model, seq_len, keys)

    @torch.no_grad()
    @decoding_kernels()
    def generate(
        self,
        prompt_ids: Tensor,
        max_new_tokens: int,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        eos_id: int | None = None,
        use_cache: bool = True,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Continue prompt_ids (B, T0) by up to max_new_tokens -> (B, T0 + new).

        temperature 0 is greedy; otherwise sampling with optional top-k / top-p (see
        sample_next). With use_cache the prompt is run once (prefill) and then one token per
        step against the KV cache. Once the sequence is longer than max_len there are no
        positions left, so, like nanoGPT, each step re-runs the last max_len tokens without a
        cache (positions shift, which makes the cached keys stale). Rows that have produced
        eos_id get eos_id from then on, and generation stops when every row has. Call .eval()
        first: dropout would make cached and uncached results differ.
        """
        if prompt_ids.size(1) < 1:
            raise ValueError("prompt_ids must hold at least one token per row")
        idx, caches = prompt_ids, None  # (B, T); list[KVCache] once prefilled
        finished = torch.zeros(idx.size(0), dtype=torch.bool, device=idx.device)  # (B,)
        for _ in range(max_new_tokens):
            if use_cache and idx.size(1) <= self.max_len:
                if caches is None:  # prefill: the whole prompt at once
                    caches = self.new_caches()
                    logits = self(idx, caches=caches)
                else:  # only the newest token; the cache holds the rest
                    logits = self(idx[:, -1:], caches=caches, start=idx.size(1) - 1)
            else:
                logits = self(idx[:, -self.max_len :])  # (B, min(T, max_len), V)
            next_id = sample_next(logits[:, -1], temperature, top_k, top_p, generator)  # (B,)
            if eos_id is not None:
                next_id = next_id.masked_fill(finished, eos_id)
                finished |= next_id == eos_id
            idx = torch.cat([idx, next_id[:, None]], dim=1)
            if eos_id is not None and finished.all():
                break
        return idx
