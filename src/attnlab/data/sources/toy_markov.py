"""A learnable synthetic language made from a seed: a random sparse Markov chain.

Every token can be followed by `branching` tokens only, with random (Dirichlet) probabilities.
A model that learns the transition table reaches `optimal_loss`, the entropy of the next token
given the current one; a model that learns nothing stays near log(vocab_size). The language (the
table) comes from the seed; train, val and test are independent samples of it, each made of
parallel chains laid end to end (a chain boundary every thousand tokens or more).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from attnlab.data.sources.base import TokenizedCorpus

# Chains are sampled in parallel (numpy steps, not Python steps per token), but kept long so that
# chain boundaries, where one chain's last token is followed by an unrelated one, stay rare.
MAX_CHAINS = 256
MIN_CHAIN_LENGTH = 1024


class ToyMarkov:
    """Markov-chain text over `vocab_size` symbols; no files, nothing to download."""

    def __init__(
        self,
        vocab_size: int = 64,
        branching: int = 4,
        num_train_tokens: int = 200_000,
        num_val_tokens: int = 20_000,
        num_test_tokens: int = 20_000,
        seed: int = 1234,
    ) -> None:
        if vocab_size < 2:
            raise ValueError(f"data.vocab_size={vocab_size} must be at least 2")
        if not 1 <= branching <= vocab_size:
            raise ValueError(f"data.branching={branching} must be in [1, vocab_size={vocab_size}]")
        self.vocab_size = vocab_size
        self.branching = branching
        self.split_sizes = {
            "train": num_train_tokens,
            "val": num_val_tokens,
            "test": num_test_tokens,
        }
        self.seed = seed
        table_seed, *split_seeds = np.random.SeedSequence(seed).spawn(4)
        self.split_seeds = dict(zip(self.split_sizes, split_seeds, strict=True))
        self.successors, self.probs = self._transition_table(np.random.default_rng(table_seed))

    def _transition_table(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """successors (V, k): the tokens that may follow each token; probs (V, k): how likely."""
        size, k = self.vocab_size, self.branching
        successors = np.stack([rng.choice(size, k, replace=False) for _ in range(size)])
        probs = rng.dirichlet(np.ones(self.branching), size=self.vocab_size)
        return successors, probs

    def sample(self, num_tokens: int, rng: np.random.Generator) -> np.ndarray:
        """`num_tokens` tokens of the language: chains sampled in step, laid end to end."""
        num_chains = int(np.clip(num_tokens // MIN_CHAIN_LENGTH, 1, MAX_CHAINS))
        steps = -(-num_tokens // num_chains)
        cumulative = np.cumsum(self.probs, axis=1)
        out = np.empty((num_chains, steps), dtype=np.int64)
        state = rng.integers(0, self.vocab_size, num_chains)
        for t in range(steps):
            out[:, t] = state
            # Inverse-CDF sampling of each chain's next successor (clamped against rounding).
            choice = (rng.random((num_chains, 1)) > cumulative[state]).sum(axis=1)
            state = self.successors[state, np.minimum(choice, self.branching - 1)]
        return out.reshape(-1)[:num_tokens]

    def load(self) -> TokenizedCorpus:
        splits = {
            split: self.sample(size, np.random.default_rng(self.split_seeds[split]))
            for split, size in self.split_sizes.items()
        }
        return TokenizedCorpus(splits, self.vocab_size, self.encode, self.decode)

    def optimal_loss(self, tokens: np.ndarray) -> float:
        """Cross-entropy (nats per token) of the true next-token distribution on `tokens`."""
        with np.errstate(divide="ignore"):
            row_entropy = -np.where(self.probs > 0, self.probs * np.log(self.probs), 0).sum(1)
        frequency = np.bincount(tokens[:-1], minlength=self.vocab_size) / (len(tokens) - 1)
        return float(frequency @ row_entropy)

    @staticmethod
    def decode(ids: Sequence[int]) -> str:
        """Symbols as space-separated numbers."""
        return " ".join(str(int(i)) for i in ids)

    def encode(self, text: str) -> list[int]:
        """Space-separated numbers (what decode writes) as ids: "3 17 42" -> [3, 17, 42]."""
        words = text.split()
        if not all(word.isdigit() and int(word) < self.vocab_size for word in words):
            raise ValueError(
                f"toy LM symbols are 0..{self.vocab_size - 1}, space-separated "
                f"(e.g. '3 17 42'); got {text!r}"
            )
        return [int(word) for word in words]
