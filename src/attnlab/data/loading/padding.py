"""Dynamic padding: a batch is as long as its longest sequence, not as long as `max_len`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

IGNORE_INDEX = -100  # label of a position the loss skips (torch's cross_entropy default)


def pad_batch(sequences: Sequence[Sequence[int]], pad_id: int) -> torch.Tensor:
    """Right-pad to the longest sequence in the batch: (B, T_max)."""
    out = torch.full((len(sequences), max(len(s) for s in sequences)), pad_id, dtype=torch.long)
    for i, seq in enumerate(sequences):
        out[i, : len(seq)] = torch.as_tensor(seq, dtype=torch.long)
    return out


def collate_padded(
    items: Sequence[Mapping[str, torch.Tensor | int]], pad_id: int = 0
) -> dict[str, torch.Tensor]:
    """Items of an encoder model -> a batch of long tensors plus `padding_mask`.

    1-D tensors (input_ids, token_type_ids, per-token labels) are right-padded to (B, T_max):
    input_ids with `pad_id`, labels with IGNORE_INDEX, token types with 0. Scalars (a class
    label, next_sentence_label) are stacked to (B,). padding_mask (B, T_max) is True at padding.
    """
    pad_values = {"input_ids": pad_id, "labels": IGNORE_INDEX, "token_type_ids": 0}
    lengths = torch.tensor([len(item["input_ids"]) for item in items])
    batch = {}
    for key in items[0]:
        values = [item[key] for item in items]
        if isinstance(values[0], torch.Tensor) and values[0].ndim == 1:
            batch[key] = pad_batch(values, pad_values[key])
        else:
            batch[key] = torch.as_tensor(values, dtype=torch.long)
    batch["padding_mask"] = torch.arange(int(lengths.max())) >= lengths[:, None]
    return batch
