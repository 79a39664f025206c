"""An encoder-only (BERT-style) model: bidirectional self-attention blocks over one sequence.

The model is a body (embeddings -> blocks -> final norm) shared by every task, plus heads:
a masked-LM head over the vocabulary (with `nsp=True` also BERT's next-sentence head: the
pooler and a 2-way linear layer), and a pooler + classifier for sequence-level tasks.
Fine-tuning loads the body of a masked-LM checkpoint and starts the heads fresh.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from attnlab.models.attention import pack_qkv
from attnlab.models.checks import check_choice, invalid
from attnlab.models.config import ModelConfig
from attnlab.models.embedding import TokenEmbedding
from attnlab.models.heads import MaskedLMHead, Pooler, SequenceClassifier, pad_vocab_rows
from attnlab.models.init import bert_init
from attnlab.models.mup import apply_mup
from attnlab.models.network import ConfiguredNetwork
from attnlab.models.norms import build_norm
from attnlab.models.parameters import attended_keys, parameter_count, training_flops
from attnlab.models.position_schemes import build_positional
from attnlab.models.stack import BlockStack


class EncoderOnly(ConfiguredNetwork, SequenceClassifier, BlockStack):
    """Token + position (+ segment) embeddings -> norm -> bidirectional blocks -> heads.

    With the defaults (post-LN, learned positions, GELU, eps 1e-12, tied MLM decoder) this is
    BERT's layout. Initialised like BERT: Linear and Embedding weights N(0, 0.02), biases
    zero, norms 1/0, the pad row of the token embedding zero. Without num_classes the head is
    the masked-LM head; with it, the pooler and classifier.
    nsp: also next-sentence prediction (masked LM only): BERT's pooler (tanh of a dense layer
    on [CLS]) and `nsp_head`, Linear(d_model, 2). Logit 1 means "B follows A", as
    data.nsp's next_sentence_label (Hugging Face's seq_relationship has the rows swapped).
    settings: the other ModelConfig fields (dropout, activation, norm, norm_first, pos,
    max_len, bias, layer_norm_eps, n_kv_heads, qk_norm, vocab_pad_multiple, parametrization,
    mup_base_width, mup_base_d_head, attn_window, attn_global_every, attn_softcap, and
    registered attention variants' settings), by keyword; or `config`, a prebuilt ModelConfig.
    """

    supported_tasks: ClassVar[tuple[str, ...]] = ("masked_lm", "classification")

    # Top-level submodules of the body (shared by all tasks) and of the task heads. Every
    # state_dict key starts with one of them (a test checks this), so a checkpoint splits
    # cleanly: `body_state_dict`, `load_body_state_dict`, `freeze_layers` rely on the split.
    BODY_MODULES: tuple[str, ...] = (
        "tok_embed",
        "pos",
        "segment_embed",
        "embed_norm",
        "layers",
        "norm",
    )
    HEAD_MODULES: tuple[str, ...] = ("mlm_head", "pooler", "classifier", "nsp_head")

    # BERT's layout, over ModelConfig's defaults.
    setting_defaults: ClassVar[dict[str, Any]] = dict(
        dropout=0.1, norm_first=False, max_len=512, layer_norm_eps=1e-12
    )

    def __init__(
        self,
        vocab_size: int,
        d_model: int = 128,
        n_heads: int = 4,
        n_layers: int = 4,
        d_ff: int | None = None,
        *,
        type_vocab_size: int = 0,
        pad_id: int | None = 0,
        tie_output: bool = True,
        num_classes: int | None = None,
        pooling: str = "cls",
        classifier_dropout: float | None = None,
        nsp: bool = False,
        config: ModelConfig | None = None,
        **settings: Any,
    ):
        own = dict(vocab_size=vocab_size, n_layers=n_layers, type_vocab_size=type_vocab_size)
        own |= dict(pad_id=pad_id, tie_output=tie_output, num_classes=num_classes)
        own |= dict(pooling=pooling, classifier_dropout=classifier_dropout, nsp=nsp)
        flat = dict(d_model=d_model, n_heads=n_heads, d_ff=d_ff, **settings)
        config = self.resolve_config(config, own, flat)  # checks all, before anything is built
        super().__init__()
        self.config, self.max_len, self.d_model = config, config.max_len, config.d_model
        d_model = self.d_model
        bias = config.bias
        self.vocab_sizes = (vocab_size,)  # for pad_vocab_rows
        rows = config.padded_vocab(vocab_size)

        # Body. Embeddings are unscaled: their sum is normalised right away anyway.
        self.tok_embed = TokenEmbedding(rows, d_model, scale=False, padding_idx=pad_id)
        self.pos = build_positional(config.pos, d_model, config.max_len)
        self.segment_embed = nn.Embedding(type_vocab_size, d_model) if type_vocab_size else None
        self.embed_norm = build_norm(config.norm, d_model, config.layer_norm_eps, bias)
        self.dropout = nn.Dropout(config.dropout)
        self.add_blocks(config, n_layers)

        # Heads: the task's only. A head without gradients would stall DDP, which waits for
        # every parameter's gradient; fine-tuning loads the body and starts the heads fresh.
        if classifier_dropout is None:
            classifier_dropout = config.dropout
        self.classifier_dropout = nn.Dropout(classifier_dropout)
        self.mlm_head = self.pooler = self.classifier = self.nsp_head = None
        if num_classes is None:  # masked LM
            self.mlm_head = MaskedLMHead.from_config(config, vocab_size)
            if nsp:  # BERT's pooler on [CLS], whatever `pooling` says (the classifier's)
                self.pooler = Pooler(d_model, "cls", bias)
                self.nsp_head = nn.Linear(d_model, 2, bias=bias)
        else:  # sequence classification
            pooler = Pooler(d_model, pooling, bias)
            self.add_classifier(d_model, num_classes, pooler, classifier_dropout, bias)

        self.apply(bert_init)
        if tie_output and self.mlm_head is not None:
            # After init, so the tied matrix keeps the embedding initialisation.
            self.mlm_head.decoder.weight = self.tok_embed.weight
        if rows > vocab_size:  # unpadded checkpoints load
            self.register_load_state_dict_pre_hook(pad_vocab_rows)
        apply_mup(self, config, sp_init="fixed")  # μP's scales (models/mup.py); sp: nothing

    @classmethod
    def check_own_arguments(cls, values: Mapping[str, Any], config: ModelConfig) -> None:
        config.require_positions()
        # "last" suits causal attention only; here every token sees the whole sequence.
        check_choice("pooling", values["pooling"], ("cls", "mean"))
        if values["type_vocab_size"] < 0:
            raise invalid("type_vocab_size", values["type_vocab_size"], "must be >= 0 (0: none)")
        vocab_size, pad_id = values.get("vocab_size"), values["pad_id"]
        if vocab_size is not None and pad_id is not None and not 0 <= pad_id < vocab_size:
            raise invalid("pad_id", pad_id, f"not a token id of vocab_size={vocab_size}")
        if values["num_classes"] is not None and values["num_classes"] < 1:
            raise invalid("num_classes", values["num_classes"], "must be >= 1 (or None)")
        if values["nsp"] and values["num_classes"] is not None:
            raise invalid("nsp", values["nsp"], "is for masked-LM pretraining, not a classifier")

    # ---- body ----

    def mlm_logits(self, hidden: Tensor) -> Tensor:
        """Masked-LM logits (..., V) of hidden states (..., D) (the MaskedLM protocol)."""
        if self.mlm_head is None:
            raise ValueError("a classifier (num_classes set) has no masked-LM head")
        return self.mlm_head(hidden)

    def nsp_logits(self, hidden: Tensor, padding_mask: Tensor | None = None) -> Tensor:
        """Next-sentence logits (B, 2) of hidden states (B, T, D) (the NextSentencePredictor
        protocol); index 1: B follows A."""
        if self.nsp_head is None:
            raise ValueError("this model has no next-sentence head: build it with nsp=True")
        return self.nsp_head(self.pooler(hidden, padding_mask))

    def encode(
        self,
        input_ids: Tensor,
        padding_mask: Tensor | None = None,
        token_type_ids: Tensor | None = None,
    ) -> Tensor:
        """input_ids: (B, T) -> hidden states (B, T, D).

        padding_mask: bool (B, T), True at padding; no position attends to a pad.
        token_type_ids: (B, T) segment ids, all 0 if None; only with type_vocab_size > 0.
        """
        x = self.pos(self.tok_embed(input_ids))  # (B, T, D)
        if self.segment_embed is not None:
            if token_type_ids is None:
                token_type_ids = torch.zeros_like(input_ids)
            x = x + self.segment_embed(token_type_ids)
        elif token_type_ids is not None:
            raise ValueError(
                "token_type_ids given, but the model has no segment embeddings (type_vocab_size=0)"
            )
        x = self.dropout(self.embed_norm(x))
        return self.run_blocks(x, padding_mask=padding_mask)  # (B, T, D); not causal: all see all

    def flops_per_token(self, seq_len: int) -> int:
        """Training FLOPs per token of the encoder (see parameters.training_flops): the blocks'
        weights and full bidirectional attention over seq_len keys. Heads are left out: the
        MLM head runs on the masked positions only, a classifier once per sequence."""
        keys = attended_keys(self.layers, seq_len)  # min(seq_len, W) on windowed layers
        weights = parameter_count(self.layers)
        return training_flops(weights, len(self.layers), self.d_model, seq_len, keys)

    def is_body_parameter(self, name: str) -> bool:
        """Whether a state_dict key / parameter name belongs to the body (not a head)."""
        return name.split(".", 1)[0] in self.BODY_MODULES

    def body_state_dict(self) -> dict[str, Tensor]:
        """The body's entries of state_dict(): everything but the heads."""
        return {k: v for k, v in self.state_dict().items() if self.is_body_parameter(k)}

    def load_body_state_dict(self, state_dict: Mapping[str, Tensor]) -> None:
        """Load the body from `state_dict` (e.g. a whole masked-LM model's).

        Heads start fresh, except that a masked-LM model loading a masked-LM model's weights
        takes its MLM head too (and its pooler and NSP head, where both have one): continued
        pretraining (on new text) keeps its predictions.
        A missing or unexpected body key is an error. The MLM decoder is tied to the token
        embedding, so it takes the loaded embedding too.
        """
        body = {k: v for k, v in state_dict.items() if self.is_body_parameter(k)}
        pack_qkv(body)  # a checkpoint from before the packed q/k/v projection
        expected = set(self.body_state_dict())
        missing, unexpected = sorted(expected - set(body)), sorted(set(body) - expected)
        if missing or unexpected:
            raise ValueError(
                f"body weights do not match this model: missing {missing}, unexpected {unexpected}"
            )
        self.load_state_dict(body, strict=False)  # strict=False: the heads are left out
        head = {k: v for k, v in state_dict.items() if k.startswith("mlm_head.")}
        if self.mlm_head is not None and self.vocab_sizes[0] < len(self.tok_embed.weight):
            pad_vocab_rows(self, head, "")  # an unpadded head into a padded vocabulary
        head = {k.removeprefix("mlm_head."): v for k, v in head.items()}
        if self.mlm_head is not None and head:
            try:
                self.mlm_head.load_state_dict(head)
            except RuntimeError as error:  # names the missing, unexpected or mis-shaped keys
                raise ValueError(
                    f"masked-LM head weights do not match this model: {error}"
                ) from error
        nsp = {k: v for k, v in state_dict.items() if k.startswith(("pooler.", "nsp_head."))}
        if self.nsp_head is not None and "nsp_head.weight" in nsp:
            try:
                self.load_state_dict(nsp, strict=False)
            except RuntimeError as error:  # mis-shaped
                raise ValueError(f"next-sentence head weights do not match: {error}") from error

    def freeze_layers(self, n: int) -> None:
        """Stop gradients to the embeddings and the first n blocks (n = n_layers: whole body).

        The MLM decoder shares the token embedding, so it freezes with it. Dropout in frozen
        parts still follows train()/eval().
        """
        if not 0 <= n <= len(self.layers):
            raise ValueError(
                f"freeze_layers(n) needs 0 <= n <= n_layers={len(self.layers)}, got {n}"
            )
        frozen = [self.tok_embed, self.pos, self.segment_embed, self.embed_norm, *self.layers[:n]]
        if n == len(self.layers):
            frozen.append(self.norm)
        for module in frozen:
            if module is not None:
                module.requires_grad_(False)

    # ---- heads ----

    def forward(
        self,
        input_ids: Tensor,
        padding_mask: Tensor | None = None,
        token_type_ids: Tensor | None = None,
    ) -> Tensor:
        """Masked-LM logits (B, T, V) for input_ids (B, T); arguments as in `encode`."""
        if self.mlm_head is None:
            raise ValueError("a classifier (num_classes set) has no masked-LM head; use classify")
        return self.mlm_head(self.encode(input_ids, padding_mask, token_type_ids))

    def sequence_features(
        self,
        input_ids: Tensor,
        padding_mask: Tensor | None = None,
        token_type_ids: Tensor | None = None,
    ) -> Tensor:
        """Hidden states (B, T, D) for classification (SequenceClassifier.classify)."""
        return self.encode(input_ids, padding_mask, token_type_ids)
