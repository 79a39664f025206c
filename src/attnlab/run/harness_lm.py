"""attnlab's own causal LM as an lm-evaluation-harness model: no export, on the run's device.

`AttnLabLM(network, spec)` answers lm-eval's three request types as its `HFLM` does for a
transformers model, so the two give the same numbers on an exported run
(tests/test_lm_eval.py): contexts and continuations are tokenized together and split
(TemplateLM), inputs are cut from the left to the network's `max_len` + 1, batches are padded
on the right (causal attention never reads the padding), and the first token of a document is
predicted after the data's <eos> (or, without one, where its text starts: data/spec.py).
Imported only when lm-eval runs (`pip install 'attnlab[lmeval]'`).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from lm_eval.api.model import TemplateLM
from lm_eval.models.utils import (
    Collator,
    handle_stop_sequences,
    normalize_gen_kwargs,
    postprocess_generated_text,
)
from lm_eval.utils import get_rolling_token_windows, make_disjoint_window
from torch import nn
from tqdm import tqdm

from attnlab.data.spec import DataSpec, start_ids

# A request for _loglikelihood_tokens: (its strings, or None), context ids, continuation ids.
TokenRequest = tuple[Any, list[int], list[int]]


class AttnLabLM(TemplateLM):
    """lm-eval's LM over a decoder-only network and its data's tokenizer (`spec`)."""

    def __init__(
        self,
        network: nn.Module,
        spec: DataSpec,
        batch_size: int = 32,
        device: str | torch.device = "cpu",
        max_gen_toks: int = 256,
    ) -> None:
        super().__init__()
        if spec.encode is None:
            raise ValueError("lm-eval needs text: the run's data has no tokenizer (encode)")
        self._device = torch.device(device)  # LM.device is a read-only property
        self.network = network.to(self._device).eval()
        self.spec = spec
        self.batch_size = batch_size
        self.max_length: int = network.max_len
        self.max_gen_toks = max_gen_toks
        self._prefix = start_ids(spec)[0]  # <eos>, else the default prompt's first token

    @property
    def eot_token_id(self) -> int:
        return self._prefix

    def tok_encode(
        self, string: str, add_special_tokens: bool | None = None, **_: Any
    ) -> list[int]:
        return self.spec.encode(string)  # type: ignore[misc]  # checked in __init__

    def tok_decode(self, tokens: Sequence[int]) -> str:
        return self.spec.decode(tokens)

    @torch.no_grad()
    def _log_probs(self, inputs: list[list[int]]) -> torch.Tensor:
        """(B, T, V) float32 log-probabilities of the right-padded `inputs`."""
        width = max(map(len, inputs))
        ids = torch.zeros(len(inputs), width, dtype=torch.long)
        for row, tokens in enumerate(inputs):
            ids[row, : len(tokens)] = torch.tensor(tokens)
        logits = self.network(ids.to(self._device))
        return F.log_softmax(logits.float(), dim=-1)

    def _loglikelihood_tokens(
        self, requests: list[TokenRequest], disable_tqdm: bool = False, **_: Any
    ) -> list[tuple[float, bool]]:
        """(log p(continuation | context), whether greedy decoding gives the continuation)."""

        def longest_first(request: TokenRequest) -> tuple[int, tuple[int, ...]]:
            tokens = request[1] + request[2]
            return -len(tokens), tuple(tokens)

        too_long = [len(cont) for _, _, cont in requests if len(cont) > self.max_length]
        if too_long:  # HFLM refuses these too: a continuation's every token needs a position
            raise ValueError(
                f"a continuation of {too_long[0]} tokens is longer than the network's "
                f"max_len ({self.max_length})"
            )
        ordered = Collator(requests, sort_fn=longest_first)
        answers: list[tuple[float, bool]] = []
        progress = tqdm(total=len(requests), disable=disable_tqdm, desc="loglikelihood")
        for chunk in ordered.get_batched(n=self.batch_size):
            # The last max_len + 1 tokens; the network reads all but the last.
            inputs = [(context + cont)[-(self.max_length + 1) :][:-1] for _, context, cont in chunk]
            log_probs = self._log_probs(inputs)
            picked, greedy = [], []
            for (_, _, cont), tokens, scores in zip(chunk, inputs, log_probs, strict=True):
                scores = scores[len(tokens) - len(cont) : len(tokens)]  # (len(cont), V)
                target = torch.tensor(cont, device=scores.device)
                picked.append(scores.gather(1, target[:, None]).sum())
                greedy.append((scores.argmax(-1) == target).all())
            # One host read per batch.
            pairs = zip(torch.stack(picked).tolist(), torch.stack(greedy).tolist(), strict=True)
            answers += [(float(lp), bool(g)) for lp, g in pairs]
            progress.update(len(chunk))
        progress.close()
        return ordered.get_original(answers)

    def loglikelihood_rolling(self, requests: list[Any], disable_tqdm: bool = False) -> list[float]:
        """log p(text) of each whole text, in disjoint windows of max_len tokens."""
        windows: list[TokenRequest] = []
        counts = []
        for (text,) in (request.args for request in requests):
            pieces = get_rolling_token_windows(
                token_list=self.tok_encode(text),
                prefix_token=self.prefix_token_id,
                max_seq_len=self.max_length,
                context_len=1,
            )
            found = [(None, *make_disjoint_window(piece)) for piece in pieces]
            windows += found
            counts.append(len(found))
        scores = iter(self._loglikelihood_tokens(windows, disable_tqdm=disable_tqdm))
        return [sum(next(scores)[0] for _ in range(count)) for count in counts]

    def generate_until(self, requests: list[Any], disable_tqdm: bool = False) -> list[str]:
        """Each context continued (greedy unless the task samples) until a stop string,
        <eos> or max_gen_toks; contexts of one length and settings go in one batch."""
        arguments = [request.args for request in requests]
        out: list[str | None] = [None] * len(arguments)
        progress = tqdm(total=len(arguments), disable=disable_tqdm, desc="generate_until")
        for settings, ids, indices in self._generation_batches(arguments):
            for index, text in zip(indices, self._generate(ids, settings), strict=True):
                out[index] = text
                progress.update(1)
        progress.close()
        return [text or "" for text in out]

    def _generation_batches(
        self, arguments: list[tuple[str, dict[str, Any]]]
    ) -> Iterator[tuple[dict[str, Any], list[list[int]], list[int]]]:
        """(settings, contexts of one length, their request indices), batch_size at most."""
        groups: dict[tuple[str, int], list[int]] = {}
        encoded = []
        for index, (context, gen_kwargs) in enumerate(arguments):
            settings = normalize_gen_kwargs(dict(gen_kwargs), self.max_gen_toks)
            room = self.max_length - settings["max_gen_toks"]
            # Room for the new tokens, as HFLM leaves; past max_len the network slides.
            ids = self.tok_encode(context)[-(room if room > 0 else self.max_length) :]
            encoded.append((settings, ids or [self.prefix_token_id]))
            key = (json.dumps(settings, sort_keys=True, default=str), len(encoded[-1][1]))
            groups.setdefault(key, []).append(index)
        for indices in groups.values():
            for start in range(0, len(indices), self.batch_size):
                batch = indices[start : start + self.batch_size]
                yield encoded[batch[0]][0], [encoded[i][1] for i in batch], batch

    @torch.no_grad()
    def _generate(self, contexts: list[list[int]], settings: dict[str, Any]) -> list[str]:
        settings = dict(settings)
        until = handle_stop_sequences(settings.pop("until", None), eos=None)
        sample = settings.get("do_sample", False)
        ids = torch.tensor(contexts, device=self._device)
        out = self.network.generate(
            ids,
            settings["max_gen_toks"],
            temperature=float(settings.get("temperature", 1.0)) if sample else 0.0,
            top_k=settings.get("top_k"),
            top_p=settings.get("top_p"),
            eos_id=self.spec.eos_id,
        )
        texts = []
        for row in out[:, ids.size(1) :].tolist():
            if self.spec.eos_id in row:  # the rest of the row is <eos> padding
                row = row[: row.index(self.spec.eos_id)]
            texts.append(postprocess_generated_text(self.tok_decode(row), until, None))
        return texts
