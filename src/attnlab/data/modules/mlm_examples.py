"""Masked-LM examples before masking: one packed sequence, or a pair of segments for NSP.

Both read `content[bounds[i]:bounds[i + 1]]`, the packed spans of `packing.pack`, and return
dicts of 1-D long tensors (and, for pairs, an int label) that `padding.collate_padded` batches.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from attnlab.data.tokenizers.wordpiece import CLS_ID, SEP_ID


class PackedSequences(Dataset):
    """Item i: [CLS] span i [SEP]."""

    def __init__(
        self, content: np.ndarray, bounds: np.ndarray, cls_id: int = CLS_ID, sep_id: int = SEP_ID
    ) -> None:
        self.cls_id, self.sep_id = cls_id, sep_id  # the tokenizer's (bert-base: 101, 102)
        self.content = content
        self.bounds = bounds

    def __len__(self) -> int:
        return len(self.bounds) - 1

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        span = self.content[self.bounds[index] : self.bounds[index + 1]]
        ids = np.concatenate([[self.cls_id], span, [self.sep_id]]).astype(np.int64)
        return {"input_ids": torch.from_numpy(ids)}


class SegmentPairs(Dataset):
    """Item i: [CLS] A [SEP] B [SEP] with A = span i, for next-sentence prediction.

    Half the time B is span i + 1, the text that follows A (next_sentence_label=1), else a
    random other span, neither A nor its successor (next_sentence_label=0). Note that Hugging
    Face's BertForPreTraining uses the opposite labels (0 means B follows A).
    token_type_ids are 0 over [CLS] A [SEP] and 1 over B [SEP].

    `seed=None` draws B afresh at every access from torch's global generator (training);
    a seed fixes every pair once (evaluation).
    """

    def __init__(
        self,
        content: np.ndarray,
        bounds: np.ndarray,
        seed: int | None = None,
        cls_id: int = CLS_ID,
        sep_id: int = SEP_ID,
    ) -> None:
        self.cls_id, self.sep_id = cls_id, sep_id
        num_spans = len(bounds) - 1
        if num_spans < 3:
            raise ValueError(f"next-sentence pairs need at least 3 segments, got {num_spans}")
        self.content = content
        self.bounds = bounds
        self.fixed: tuple[np.ndarray, np.ndarray] | None = None
        if seed is not None:
            rng = np.random.default_rng(seed)
            self.fixed = (rng.random(len(self)) < 0.5, rng.integers(0, num_spans - 2, len(self)))

    def __len__(self) -> int:
        return len(self.bounds) - 2  # the last span has no successor

    def _span(self, index: int) -> np.ndarray:
        return self.content[self.bounds[index] : self.bounds[index + 1]]

    def __getitem__(self, index: int) -> dict[str, torch.Tensor | int]:
        if self.fixed is not None:
            is_next, other = bool(self.fixed[0][index]), int(self.fixed[1][index])
        else:
            is_next = bool(torch.rand(()) < 0.5)
            other = int(torch.randint(len(self.bounds) - 3, ()))
        # `other` is drawn from the spans but two: skip over A (index) and its successor.
        partner = index + 1 if is_next else (other if other < index else other + 2)
        first, second = self._span(index), self._span(partner)
        cls, sep = self.cls_id, self.sep_id
        ids = np.concatenate([[cls], first, [sep], second, [sep]]).astype(np.int64)
        token_types = np.zeros(len(ids), dtype=np.int64)
        token_types[len(first) + 2 :] = 1
        return {
            "input_ids": torch.from_numpy(ids),
            "token_type_ids": torch.from_numpy(token_types),
            "next_sentence_label": int(is_next),
        }
