"""ToyLMDataModule: a seeded Markov-chain language that a model can learn."""

from __future__ import annotations

import math

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from attnlab.data import ToyLMDataModule

SMALL = {"num_train_tokens": 20_000, "num_val_tokens": 2_000, "num_test_tokens": 2_000}


def make(**kwargs) -> ToyLMDataModule:
    return ToyLMDataModule(**{**SMALL, **kwargs})


def test_same_seed_same_data_other_seed_other_data() -> None:
    a, b, c = make(seed=1).corpus.splits, make(seed=1).corpus.splits, make(seed=2).corpus.splits
    for split in ("train", "val", "test"):
        np.testing.assert_array_equal(a[split], b[split])
        assert not np.array_equal(a[split], c[split])


def test_splits_are_different_samples_of_one_language() -> None:
    data = make(vocab_size=32, branching=2)
    splits = data.corpus.splits
    assert {split: len(tokens) for split, tokens in splits.items()} == {
        "train": 20_000,
        "val": 2_000,
        "test": 2_000,
    }
    assert not np.array_equal(splits["val"], splits["test"])
    assert not np.array_equal(splits["train"][:2000], splits["val"])
    allowed = np.zeros((32, 32), dtype=bool)
    np.put_along_axis(allowed, data.source.successors, True, axis=1)
    for tokens in splits.values():  # the same table made every split (chain ends aside)
        assert allowed[tokens[:-1], tokens[1:]].mean() > 0.999


def test_batches_hold_windows_with_labels_shifted_by_one() -> None:
    data = make(block_size=16, batch_size=8, train_samples_per_epoch=64)
    data.setup("fit")
    batch = next(iter(data.train_dataloader()))
    assert set(batch) == {"input_ids", "labels"}
    assert batch["input_ids"].shape == batch["labels"].shape == (8, 16)
    assert batch["input_ids"].dtype == batch["labels"].dtype == torch.long
    assert torch.equal(batch["input_ids"][:, 1:], batch["labels"][:, :-1])
    train = torch.from_numpy(data.corpus.splits["train"])
    windows = train.unfold(0, 17, 1)  # every window of the stream, with its next token
    for inputs, labels in zip(batch["input_ids"], batch["labels"], strict=True):
        whole = torch.cat([inputs, labels[-1:]])
        assert (windows == whole).all(1).any()  # a contiguous piece of the training stream
    assert len(data.train_dataloader()) == 64 // 8
    assert len(data.val_dataloader().dataset) == (2_000 - 1) // 16


def test_spec_is_ready_before_setup() -> None:
    data = make(vocab_size=40, block_size=24)
    spec = data.spec
    assert (spec.task, spec.vocab_size, spec.max_len) == ("causal_lm", 40, 24)
    assert spec.pad_id is spec.bos_id is spec.eos_id is None
    assert spec.encode(spec.decode([3, 39, 0])) == [3, 39, 0]
    with pytest.raises(ValueError, match=r"symbols are 0\.\.39"):
        spec.encode("40")


def test_language_is_learnable_and_its_floor_known() -> None:
    data = make(vocab_size=64, branching=4)
    assert data.optimal_loss < math.log(64) - 2  # far from uniform guessing


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"vocab_size": 1}, r"data\.vocab_size=1 must be at least 2"),
        ({"branching": 0}, r"data\.branching=0 must be in \[1, vocab_size=64\]"),
        ({"block_size": 0}, r"data\.block_size=0 must be at least 1"),
        ({"train_samples_per_epoch": 4}, r"train_samples_per_epoch=4 must be at least"),
    ],
)
def test_bad_settings_name_the_key(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make(**kwargs)


def test_split_shorter_than_a_window_names_the_split() -> None:
    data = make(num_val_tokens=10, block_size=16)
    with pytest.raises(ValueError, match=r"the val split has 10 tokens, too few for data\.block"):
        data.setup("fit")


class Bigram(pl.LightningModule):
    """The simplest model of the toy language: a table of next-token logits."""

    def __init__(self, vocab_size: int) -> None:
        super().__init__()
        self.logits = nn.Embedding(vocab_size, vocab_size)
        self.first_inputs: list[torch.Tensor] = []

    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        logits = self.logits(batch["input_ids"])
        return F.cross_entropy(logits.flatten(0, 1), batch["labels"].flatten())

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        if batch_idx == 0:
            self.first_inputs.append(batch["input_ids"].clone())
        return self.loss(batch)

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self.log("val/loss", self.loss(batch), on_epoch=True)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=0.1)


@pytest.fixture
def one_thread():
    """Tiny tensors: extra intra-op threads only spin-wait on a busy 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.usefixtures("one_thread")
def test_trains_under_lightning_with_fresh_windows_each_epoch(tmp_path) -> None:
    data = make(
        vocab_size=16, branching=2, block_size=16, batch_size=32, train_samples_per_epoch=1_600
    )
    model = Bigram(data.spec.vocab_size)
    trainer = pl.Trainer(
        max_epochs=3,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    trainer.fit(model, datamodule=data)
    first, second, third = model.first_inputs
    assert not torch.equal(first, second) and not torch.equal(second, third)
    assert trainer.callback_metrics["val/loss"] < data.optimal_loss + 0.1
