"""Autoregressive decoding for seq2seq networks: greedy and beam search, both incremental
(the KV cache holds the prefix; each step feeds one new token).

The network is a Seq2SeqNetwork (attnlab/protocols.py): encode(src, mask) -> memory,
decode(tgt, memory, mask, caches=...) -> logits and new_caches(); EncoderDecoder, and
DecoderOnly as a prefix LM (its memory is the source).
"""

from __future__ import annotations

import torch

from attnlab.models.attention import decoding_kernels
from attnlab.protocols import Seq2SeqNetwork


@torch.no_grad()
@decoding_kernels()
def greedy_decode(
    network: Seq2SeqNetwork,
    src: torch.Tensor,
    src_padding_mask: torch.Tensor,
    bos_id: int,
    eos_id: int,
    pad_id: int,
    max_len: int,
) -> torch.Tensor:
    """Greedy decoding: (B, S) source -> (B, <=max_len) target ids starting with BOS.

    Finished rows are padded after their EOS.
    """
    memory = network.encode(src, src_padding_mask)  # (B, S, D)
    caches = network.new_caches()
    ys = torch.full((src.size(0), 1), bos_id, dtype=torch.long, device=src.device)
    finished = torch.zeros(src.size(0), dtype=torch.bool, device=src.device)
    for _ in range(max_len - 1):
        logits = network.decode(ys[:, -1:], memory, src_padding_mask, caches=caches)  # (B, 1, V)
        next_id = logits[:, -1].argmax(dim=-1)  # (B,)
        next_id = next_id.masked_fill(finished, pad_id)
        ys = torch.cat([ys, next_id[:, None]], dim=1)
        finished |= next_id == eos_id
        if finished.all():
            break
    return ys


@torch.no_grad()
@decoding_kernels()
def beam_search(
    network: Seq2SeqNetwork,
    src: torch.Tensor,
    src_padding_mask: torch.Tensor,
    bos_id: int,
    eos_id: int,
    pad_id: int,
    max_len: int,
    beam_size: int = 4,
    length_penalty: float = 1.0,
) -> torch.Tensor:
    """Batched beam search: (B, S) source -> (B, <=max_len) best target ids, BOS first.

    Every source keeps `beam_size` live hypotheses; each step extends them all in one decoder
    call over B * beam_size rows and reorders the KV caches to the surviving beams. A hypothesis
    ending in EOS is finished; its score is sum(log p) / length**length_penalty (length counts
    the generated tokens, EOS included; 0 = raw log-probability, >0 favours longer outputs).
    A source is done when it has `beam_size` finished hypotheses (fairseq's rule); at max_len
    the live ones are finished as they are. Returned rows are padded after their EOS.
    """
    if beam_size < 1:
        raise ValueError(f"beam_size={beam_size} must be at least 1")
    B, K, device = src.size(0), beam_size, src.device
    memory = network.encode(src, src_padding_mask).repeat_interleave(K, dim=0)  # (B*K, S, D)
    memory_mask = src_padding_mask.repeat_interleave(K, dim=0)  # (B*K, S)
    caches = network.new_caches()
    tokens = torch.full((B * K, 1), bos_id, dtype=torch.long, device=device)  # (B*K, T)
    scores = torch.full((B, K), float("-inf"), device=device)  # live beams' log-probabilities
    scores[:, 0] = 0.0  # all beams start equal: keep one so the first step has no duplicates
    finished: list[list[tuple[float, list[int]]]] = [[] for _ in range(B)]

    def finish(b: int, row: list[int], log_prob: float) -> None:
        length = max(len(row) - 1, 1)  # generated tokens (BOS excluded)
        finished[b].append((log_prob / length**length_penalty, row))

    for _ in range(1, max_len):
        logits = network.decode(tokens[:, -1:], memory, memory_mask, caches=caches)
        log_probs = logits[:, -1].float().log_softmax(dim=-1)  # (B*K, V)
        V = log_probs.size(-1)
        candidates = (scores[:, :, None] + log_probs.view(B, K, V)).view(B, K * V)
        top_scores, top_index = candidates.topk(min(2 * K, K * V), dim=-1)  # (B, 2K)
        prefixes = tokens.tolist()
        kept = []  # (beam row, token, score), K per source
        for b, (source_scores, source_index) in enumerate(
            zip(top_scores.tolist(), top_index.tolist(), strict=True)
        ):
            ended, live = _extend(
                b, K, V, source_scores, source_index, eos_id, pad_id, done=len(finished[b]) >= K
            )
            for row, token, score in ended:
                finish(b, [*prefixes[row], token], score)
            kept += live
        rows, new_tokens, new_scores = zip(*kept, strict=True)
        order = torch.tensor(rows, device=device)
        _reorder_caches(caches, order)
        tokens = torch.cat([tokens[order], torch.tensor(new_tokens, device=device)[:, None]], 1)
        scores = torch.tensor(new_scores, device=device).view(B, K)
        if all(len(f) >= K for f in finished):
            break

    rows, live_scores = tokens.tolist(), scores.tolist()
    for b in range(B):
        if len(finished[b]) < K:  # out of length: the live beams end here
            for k in range(K):
                if live_scores[b][k] > float("-inf"):
                    finish(b, rows[b * K + k], live_scores[b][k])
    best = [max(f, key=lambda hypothesis: hypothesis[0])[1] for f in finished]
    return _padded(best, pad_id).to(device)


def _padded(rows: list[list[int]], pad_id: int) -> torch.Tensor:
    out = torch.full((len(rows), max(len(row) for row in rows)), pad_id, dtype=torch.long)
    for b, row in enumerate(rows):
        out[b, : len(row)] = torch.tensor(row)
    return out


def _extend(
    b: int,
    K: int,
    V: int,
    scores: list[float],
    index: list[int],
    eos_id: int,
    pad_id: int,
    done: bool,
) -> tuple[list[tuple[int, int, float]], list[tuple[int, int, float]]]:
    """Source b's best candidates, (beam row, token, score), in score order: those ending in
    EOS (to be finished) and exactly K live ones. A done source, or a rare shortfall, is
    filled with dead beams (-inf, never chosen again)."""
    ended: list[tuple[int, int, float]] = []
    live: list[tuple[int, int, float]] = []
    if not done:
        for score, flat in zip(scores, index, strict=True):
            if score == float("-inf") or len(live) == K:
                break
            row, token = b * K + flat // V, flat % V
            (ended if token == eos_id else live).append((row, token, score))
    return ended, live + [(b * K, pad_id, float("-inf"))] * (K - len(live))


def _reorder_caches(caches: list, order: torch.Tensor) -> None:
    for layer_caches in caches:  # a KVCache, or a (self, cross) pair, per layer
        for cache in layer_caches if isinstance(layer_caches, tuple) else (layer_caches,):
            cache.reorder(order)


def strip_special(ids: list[int], bos_id: int, eos_id: int, pad_id: int) -> list[int]:
    """Token ids up to the first EOS, without BOS and padding."""
    out = []
    for token in ids:
        if token == eos_id:
            break
        if token not in (bos_id, pad_id):
            out.append(token)
    return out
