"""The plain-PyTorch twin of `attnlab-train experiment=gpt_shakespeare_char_cpu` (nanoGPT style).

Same data (Tiny Shakespeare characters, first 90% train, last 10% val = test), same network
size (the GPT of bench_gpu.py: 4 layers, 4 heads, d_model 128, block 64, no biases, no dropout),
batch 12, AdamW (0.9, 0.99) with weight decay 0.1 on matrices, warm-up then cosine to 1e-4, clip
1.0, validation every 250 steps on 20 batches with a checkpoint when it improves, and a final
test of the best checkpoint on the whole split. No Trainer, no callbacks, no loggers: the
reference for `bench_overhead.py --end-to-end`.

    python scripts/plain_gpt_char.py --data-dir ../shared/data --steps 2000 --out /tmp/plain
"""

from __future__ import annotations

import argparse
import math
import os
import time
from pathlib import Path

import numpy as np
import torch
from bench_gpu_paths import NanoGPT, Setup


def windows(tokens: torch.Tensor, offsets: torch.Tensor, block: int) -> tuple[torch.Tensor, ...]:
    """Inputs and next-token labels (B, block) at the given offsets."""
    index = offsets[:, None] + torch.arange(block)  # (B, block)
    return tokens[index], tokens[index + 1]


@torch.no_grad()
def evaluate(model: NanoGPT, tokens: torch.Tensor, block: int, batch: int, limit: int | None):
    """Mean loss over non-overlapping windows in order (the first `limit` batches)."""
    model.eval()
    starts = torch.arange(0, len(tokens) - block, block)  # windows with a full label row
    batches = starts.split(batch)[:limit] if limit else starts.split(batch)
    losses = [model(*windows(tokens, offsets, block)).item() for offsets in batches]
    model.train()
    return sum(losses) / len(losses)


def lr_at(step: int, args: argparse.Namespace) -> float:
    if step < args.warmup:
        return args.lr * (step + 1) / args.warmup
    ratio = (step - args.warmup) / max(1, args.steps - args.warmup)
    return args.min_lr + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (args.lr - args.min_lr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=os.environ.get("ATTNLAB_DATA_DIR", "data"))
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--val-interval", type=int, default=250)
    parser.add_argument("--val-batches", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=12)
    parser.add_argument("--block-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--min-lr", type=float, default=1e-4)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--log-interval", type=int, default=50)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument(
        "--fused", action="store_true", help="fused AdamW on the CPU too (attnlab's default)"
    )
    args = parser.parse_args()
    start = time.perf_counter()
    torch.manual_seed(args.seed)

    text = (Path(args.data_dir) / "tinyshakespeare" / "input.txt").read_text()
    chars = sorted(set(text))
    lookup = {c: i for i, c in enumerate(chars)}
    tokens = torch.from_numpy(np.array([lookup[c] for c in text], dtype=np.int64))
    n_train = int(len(tokens) * 0.9)
    train, val = tokens[:n_train], tokens[n_train:]

    setup = Setup(n_layers=4, n_heads=4, d_model=128, block_size=args.block_size)
    setup.vocab_size = len(chars)
    model = NanoGPT(setup)
    # nanoGPT fuses AdamW on CUDA only; --fused: the update attnlab's CPU default makes
    optimizer = model.configure_optimizers(0.1, args.lr, fused=args.fused)
    for group in optimizer.param_groups:
        group["betas"] = (0.9, 0.99)
    args.out.mkdir(parents=True, exist_ok=True)
    best, best_path = math.inf, args.out / "best.pt"

    for step in range(args.steps):
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, args)
        offsets = torch.randint(len(train) - args.block_size, (args.batch_size,))
        loss = model(*windows(train, offsets, args.block_size))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        if (step + 1) % args.log_interval == 0:
            print(f"step {step + 1}: train loss {loss.item():.4f}", flush=True)
        if (step + 1) % args.val_interval == 0:
            val_loss = evaluate(model, val, args.block_size, args.batch_size, args.val_batches)
            print(f"step {step + 1}: val loss {val_loss:.4f}", flush=True)
            if val_loss < best:
                best = val_loss
                state = {"model": model.state_dict(), "optimizer": optimizer.state_dict()}
                torch.save({**state, "step": step + 1, "val_loss": val_loss}, best_path)

    model.load_state_dict(torch.load(best_path, weights_only=True)["model"])
    test_loss = evaluate(model, val, args.block_size, args.batch_size, None)
    print(f"test loss {test_loss:.4f}, ppl {math.exp(test_loss):.2f}")
    print(f"wall time {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
