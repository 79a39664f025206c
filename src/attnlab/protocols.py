"""What tasks, builders and callbacks need from a network: the contract a new architecture
implements. Shapes: B batch, T / S target / source length, D width, V vocabulary, C classes.

A network declares the tasks it can do in `supported_tasks` (names of TASK_PROTOCOLS) and
implements the protocol of each; the optional ones (a generator, a pretrained body, a FLOPs
estimate) add abilities that callbacks and run settings use where a network has them.
Runtime checks (`isinstance(network, PretrainedBody)`) look at method names only, not at
signatures.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Protocol, runtime_checkable

import torch
from torch import Tensor


@runtime_checkable
class Network(Protocol):
    """Every network: the tasks it can do, by TASK_PROTOCOLS name."""

    supported_tasks: ClassVar[tuple[str, ...]]


@runtime_checkable
class CausalLM(Protocol):
    """Next-token logits: `network(idx)`: idx (B, T) -> logits (B, T, V), causal.

    With packed documents (`data.document_mask=true`) the task also passes `document_ids`
    (B, T), integers nondecreasing along each row: a token then attends only to earlier
    tokens of its own document, at positions restarting per document. The task passes it
    only when the batch has it, so a network without document masking need not take it.
    """

    def __call__(self, idx: Tensor, document_ids: Tensor | None = None) -> Tensor: ...


@runtime_checkable
class LMReadout(Protocol):
    """A CausalLM whose logits are a linear readout of hidden states it exposes, so that a loss
    reads the head's weight instead of logits (`task.loss_impl=chunked|liger`, tasks/lm_loss.py).
    """

    def hidden_states(self, idx: Tensor, *, document_ids: Tensor | None = None) -> Tensor:
        """idx (B, T) -> the hidden states (B, T, D) the head reads (document_ids as CausalLM)."""
        ...

    def lm_readout(self) -> Any:
        """The head: `weight` (R, D), `bias` (R,) or None, `vocab_size` V <= R (the rows past V
        are a padded vocabulary's, never scored), `output_mult` (its input's multiplier)."""
        ...


@runtime_checkable
class MaskedLM(Protocol):
    """A bidirectional encoder and a head over the vocabulary, applied only where scored."""

    def encode(
        self,
        input_ids: Tensor,
        padding_mask: Tensor | None = None,
        token_type_ids: Tensor | None = None,
    ) -> Tensor:
        """(B, T) -> hidden states (B, T, D)."""
        ...

    def mlm_logits(self, hidden: Tensor) -> Tensor:
        """(..., D) -> logits (..., V). A method, not a module attribute: from Python 3.12
        isinstance() looks members up statically, and nn.Module keeps submodules apart."""
        ...


@runtime_checkable
class NextSentencePredictor(Protocol):
    """BERT's next-sentence prediction, which the masked-LM task adds to its loss when the
    data pairs sentences (`data.nsp=true`): hidden states (B, T, D) from `encode` -> logits
    (B, 2), index 1 for "B follows A"."""

    def nsp_logits(self, hidden: Tensor, padding_mask: Tensor | None = None) -> Tensor: ...


@runtime_checkable
class Classifier(Protocol):
    """Sequence classification: input_ids (B, T), padding_mask (B, T) -> logits (B, C)."""

    def classify(self, input_ids: Tensor, padding_mask: Tensor | None = None) -> Tensor: ...


@runtime_checkable
class Seq2SeqNetwork(Protocol):
    """Encode a source once, then decode the target, teacher-forced or step by step.

    prefix_lm: True when the network reads [source | target] as one sequence (a decoder-only
    prefix LM): source and target then share one vocabulary and max_len positions, and each
    token attends over both.
    """

    prefix_lm: ClassVar[bool]

    def encode(self, src: Tensor, src_padding_mask: Tensor | None = None) -> Tensor:
        """src (B, S) -> the memory `decode` reads (its shape is the network's business)."""
        ...

    def decode(
        self,
        tgt: Tensor,
        memory: Tensor,
        memory_padding_mask: Tensor | None = None,
        tgt_padding_mask: Tensor | None = None,
        caches: Any = None,
    ) -> Tensor:
        """tgt (B, T) -> logits (B, T, V_tgt). With caches (from `new_caches`), later calls
        feed only the new steps."""
        ...

    def new_caches(self) -> list[Any]:
        """Empty caches, one entry per layer; each entry a KVCache or a tuple of them
        (tasks/decoding.py reorders them for beam search)."""
        ...

    def max_target_len(self, src_len: int) -> int:
        """The longest target that fits after a source of src_len tokens."""
        ...


@runtime_checkable
class Generator(Protocol):
    """Free-running text generation with caches (callbacks/sample_text.py, generate.py)."""

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
        """prompt_ids (B, T0) -> (B, T0 + new)."""
        ...


@runtime_checkable
class PretrainedBody(Protocol):
    """A body (embeddings + blocks) that fine-tuning loads from another run's checkpoint,
    freezes in part, and trains at a learning rate of its own; heads start fresh."""

    def body_state_dict(self) -> dict[str, Tensor]: ...

    def load_body_state_dict(self, state_dict: Mapping[str, Tensor]) -> None: ...

    def is_body_parameter(self, name: str) -> bool: ...

    def freeze_layers(self, n: int) -> None: ...


@runtime_checkable
class EstimatesFlops(Protocol):
    """Training FLOPs (forward + backward) per token at sequence length seq_len."""

    def flops_per_token(self, seq_len: int) -> int: ...


@runtime_checkable
class ChecksArguments(Protocol):
    """A network class that validates its keyword arguments before it is built (called on
    the `model` config before any work; see models/network.py ConfiguredNetwork)."""

    @classmethod
    def check_arguments(cls, arguments: Mapping[str, Any]) -> Any: ...


@runtime_checkable
class KeepsHypotheses(Protocol):
    """A task that keeps its decoded texts per eval stage, as (example index, text) pairs,
    while `keep_hypotheses` is set (callbacks/hypotheses.py writes and empties them)."""

    keep_hypotheses: bool
    hypotheses: dict[str, list[tuple[int | None, str]]]


# What each task needs from a network; `supported_tasks` names keys of this table.
TASK_PROTOCOLS: dict[str, type] = {
    "causal_lm": CausalLM,
    "masked_lm": MaskedLM,
    "classification": Classifier,
    "seq2seq": Seq2SeqNetwork,
}
