"""The heads on top of a body: LM head, masked-LM head, and the sequence classifier
(a pooler, dropout and a linear layer) that every architecture shares.

The classifier's parts stay attributes of the network (`pooler`, `classifier`), so their
state_dict keys are the same as when each architecture wrote them itself.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from attnlab.models.checks import check_choice
from attnlab.models.config import ModelConfig
from attnlab.models.feedforward import build_activation
from attnlab.models.norms import build_norm

POOLING_KINDS = ("cls", "mean", "last")


class Readout(nn.Linear):
    """A linear map from the width to a fixed number of outputs (vocabulary, classes).

    output_mult multiplies its input: 1 under sp; μP sets 1 / width_mult (models/mup.py), so
    logits neither grow with width at initialisation nor change faster with it in training.
    """

    output_mult: float = 1.0

    def forward(self, hidden: Tensor) -> Tensor:
        if self.output_mult != 1.0:  # a Python float: no op at all under sp
            hidden = hidden * self.output_mult
        return super().forward(hidden)


class LMHead(Readout):
    """Hidden states (B, T, D) -> logits (B, T, V); tie its weight after initialisation.

    rows: the weight's rows, vocab_size or more (ModelConfig.vocab_pad_multiple): the matmul
    runs over all of them, and the logits of the padded rows are dropped, so nothing (loss,
    sampling, beam search, perplexity) ever sees a padded id.
    """

    def __init__(self, d_model: int, vocab_size: int, rows: int | None = None, bias: bool = False):
        super().__init__(d_model, vocab_size if rows is None else rows, bias=bias)
        self.vocab_size = vocab_size

    def forward(self, hidden: Tensor) -> Tensor:
        logits = super().forward(hidden)  # (B, T, rows)
        if logits.size(-1) == self.vocab_size:
            return logits
        # A strided view; the loss reads it without a copy under torch.compile.
        return logits[..., : self.vocab_size]  # (B, T, V)


def lm_head(d_model: int, vocab_size: int, rows: int | None = None) -> LMHead:
    """The LM head of a network (no bias): see LMHead."""
    return LMHead(d_model, vocab_size, rows)


def pad_vocab_rows(network: nn.Module, state_dict: dict[str, Tensor], prefix: str, *_: Any) -> None:
    """load_state_dict pre-hook of a network with a padded vocabulary (ModelConfig
    vocab_pad_multiple): a checkpoint saved unpadded (its tables and output projections have
    vocab_size rows) gets zero rows appended, which no lookup reads and no logit shows.
    The network names its vocabularies' sizes in `vocab_sizes`."""
    config, sizes = network.config, network.vocab_sizes
    for name, tensor in network.state_dict(keep_vars=True).items():
        saved = state_dict.get(prefix + name)
        if (
            saved is not None
            and saved.size(0) in sizes
            and saved.dim() == tensor.dim()
            and saved.shape[1:] == tensor.shape[1:]
            and saved.size(0) < tensor.size(0) == config.padded_vocab(saved.size(0))
        ):
            rows = saved.new_zeros(tensor.size(0) - saved.size(0), *saved.shape[1:])
            state_dict[prefix + name] = torch.cat([saved, rows])


class MaskedLMHead(nn.Module):
    """BERT's masked-LM head: dense -> activation -> norm, then a projection to the vocabulary.

    The model ties `decoder.weight` to the token embedding; `decoder.bias` is the head's own
    per-token output bias. rows: the decoder's rows, for a padded vocabulary (see LMHead).
    """

    def __init__(
        self,
        d_model: int,
        vocab_size: int,
        activation: str = "gelu",
        norm: str = "layernorm",
        layer_norm_eps: float = 1e-12,
        bias: bool = True,
        rows: int | None = None,
    ):
        super().__init__()
        self.dense = nn.Linear(d_model, d_model, bias=bias)
        self.activation = build_activation(activation)
        self.norm = build_norm(norm, d_model, layer_norm_eps, bias)
        self.decoder = LMHead(d_model, vocab_size, rows, bias=bias)  # drops padded rows' logits

    @classmethod
    def from_config(cls, config: ModelConfig, vocab_size: int) -> MaskedLMHead:
        # The head's transform is a plain layer: a gated (SwiGLU) block is GELU there.
        activation = "gelu" if config.activation == "swiglu" else config.activation
        return cls(
            config.d_model,
            vocab_size,
            activation,
            config.norm,
            config.layer_norm_eps,
            config.bias,
            config.padded_vocab(vocab_size),
        )

    def forward(self, hidden: Tensor) -> Tensor:
        """(B, T, D) -> logits (B, T, V)."""
        return self.decoder(self.norm(self.activation(self.dense(hidden))))


def last_token_index(padding_mask: Tensor) -> Tensor:
    """bool (B, T), True at padding -> (B,) column of each row's last non-pad token.

    Works for right and left padding alike; an all-pad row gives column 0.
    """
    T = padding_mask.size(1)
    columns = torch.arange(T, device=padding_mask.device).expand_as(padding_mask)  # (B, T)
    return columns.masked_fill(padding_mask, -1).amax(dim=1).clamp(min=0)  # (B,)


class Pooler(nn.Module):
    """Sequence summary from hidden states (B, T, D) -> (B, D).

    "cls": BERT's pooler, tanh(dense(h_0)) on the first token, which sees the whole sequence
        in a bidirectional encoder.
    "mean": the average over non-pad positions, without parameters.
    "last": the last non-pad token, without parameters: under causal attention it is the only
        position that has seen the whole sequence (decoder-only classification, as in GPT-1).
    """

    def __init__(self, d_model: int, kind: str = "cls", bias: bool = True):
        super().__init__()
        check_choice("pooling", kind, POOLING_KINDS)
        self.kind = kind
        self.dense = nn.Linear(d_model, d_model, bias=bias) if kind == "cls" else None

    def forward(self, hidden: Tensor, padding_mask: Tensor | None = None) -> Tensor:
        """hidden: (B, T, D), padding_mask: bool (B, T), True at padding -> (B, D)."""
        if self.dense is not None:
            return torch.tanh(self.dense(hidden[:, 0]))
        if self.kind == "last":
            if padding_mask is None:
                return hidden[:, -1]
            rows = torch.arange(hidden.size(0), device=hidden.device)
            return hidden[rows, last_token_index(padding_mask)]  # (B, D)
        if padding_mask is None:
            return hidden.mean(dim=1)
        keep = (~padding_mask).unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
        # An all-pad row sums to zero; clamping its count avoids 0 / 0.
        return (hidden * keep).sum(dim=1) / keep.sum(dim=1).clamp(min=1.0)  # (B, D)


class SequenceClassifier:
    """The `classify` of every architecture: features -> pool -> dropout -> classifier.

    Mixed into an nn.Module network, which calls `add_classifier` in its constructor and
    provides `sequence_features`; it may override `pool` (EncoderDecoder's decoder query).
    """

    pooler: nn.Module | None
    classifier: Readout | None
    classifier_dropout: nn.Module

    def add_classifier(
        self,
        d_model: int,
        num_classes: int,
        pooler: nn.Module | None,
        dropout: float,
        bias: bool = True,
    ) -> None:
        """Register `pooler`, `classifier_dropout` and `classifier` (d_model -> num_classes)."""
        self.pooler = pooler
        self.classifier_dropout = nn.Dropout(dropout)
        self.classifier = Readout(d_model, num_classes, bias=bias)

    def sequence_features(
        self, input_ids: Tensor, padding_mask: Tensor | None = None, *inputs: Any
    ) -> Tensor:
        """Hidden states (B, T, D) to pool for input_ids (B, T)."""
        raise NotImplementedError

    def pool(self, hidden: Tensor, padding_mask: Tensor | None = None) -> Tensor:
        """hidden: (B, T, D) -> (B, D), by the pooling chosen at construction."""
        if self.pooler is None:
            raise ValueError(
                f"pool needs a classifier: build {type(self).__name__} with num_classes"
            )
        return self.pooler(hidden, padding_mask)

    def classify(
        self, input_ids: Tensor, padding_mask: Tensor | None = None, *inputs: Any
    ) -> Tensor:
        """Sequence-classification logits (B, num_classes) for input_ids (B, T); further
        `inputs` (EncoderOnly's token_type_ids) go to `sequence_features`."""
        if getattr(self, "classifier", None) is None:
            raise ValueError(
                f"classify needs a classifier: build {type(self).__name__} with num_classes=..."
            )
        hidden = self.sequence_features(input_ids, padding_mask, *inputs)  # (B, T, D)
        pooled = self.pool(hidden, padding_mask)  # (B, D)
        return self.classifier(self.classifier_dropout(pooled))  # (B, C)
