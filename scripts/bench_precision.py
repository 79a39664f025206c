"""Masked-LM training step time in fp32 and bf16 autocast, eager and torch.compile'd.

Builds the network of `experiment=bert_mlm_wikitext2` (or --experiment) as the trainer does and
times a bare step on random tokens: encode, the MLM head on 15% of positions, cross-entropy,
backward, AdamW. No data loading or Lightning, so only the arithmetic's precision differs.
Each mode is warmed up (compilation happens there); then the modes take turns, --repeats
times, timing --steps steps each; the median per mode is reported.

    python scripts/bench_precision.py
    python scripts/bench_precision.py --modes fp32 bf16 --steps 20
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_module
from omegaconf import DictConfig

from attnlab import run as build

MODES = {  # name -> (autocast to bf16, torch.compile the encoder)
    "fp32": (False, False),
    "bf16": (True, False),
    "fp32+compile": (False, True),
    "bf16+compile": (True, True),
}


def make_step(cfg: DictConfig, vocab: int, mode: str) -> Callable[[], None]:
    """One training step of a fresh network in `mode`, on fixed random tokens."""
    autocast, compiled = MODES[mode]
    torch.manual_seed(0)
    network = build.instantiate_section(cfg, "model", vocab_size=vocab)
    optimizer = torch.optim.AdamW(network.parameters(), lr=1e-3)
    batch, seq_len = cfg.data.batch_size, cfg.data.max_len
    ids = torch.randint(5, vocab, (batch, seq_len))
    padding_mask = torch.zeros(batch, seq_len, dtype=torch.bool)
    selected = torch.rand(batch, seq_len) < 0.15
    targets = ids[selected]
    encode = torch.compile(network.encode) if compiled else network.encode

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            logits = network.mlm_head(encode(ids, padding_mask)[selected])  # (N, V)
        F.cross_entropy(logits.float(), targets).backward()
        optimizer.step()
        optimizer.zero_grad()

    return step


def seconds_per_step(step: Callable[[], None], steps: int) -> float:
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiment", default="bert_mlm_wikitext2")
    parser.add_argument("--vocab", type=int, default=8192, help="WordPiece vocabulary size")
    parser.add_argument("--modes", nargs="+", choices=list(MODES), default=list(MODES))
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    with initialize_config_module("attnlab.conf", version_base="1.3"):
        cfg = compose("train", overrides=[f"experiment={args.experiment}"])
    tokens = cfg.data.batch_size * cfg.data.max_len
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU")
    print("| mode | ms/step | tokens/s | vs fp32 |")
    print("| --- | --- | --- | --- |")
    steps = {mode: make_step(cfg, args.vocab, mode) for mode in args.modes}
    for step in steps.values():  # compilation happens here
        seconds_per_step(step, args.warmup)
    # Modes alternate within each repeat, so a machine that slows down slows them all.
    timings: dict[str, list[float]] = {mode: [] for mode in args.modes}
    for _ in range(args.repeats):
        for mode, step in steps.items():
            timings[mode].append(seconds_per_step(step, args.steps))
    baseline = statistics.median(timings["fp32"]) if "fp32" in timings else None
    for mode in args.modes:
        seconds = statistics.median(timings[mode])
        ratio = f"{baseline / seconds:.2f}x" if baseline else "-"
        print(f"| {mode} | {seconds * 1000:.0f} | {tokens / seconds:,.0f} | {ratio} |")


if __name__ == "__main__":
    main()
