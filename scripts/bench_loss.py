"""Peak memory and time of the LM loss, dense vs chunked (task.loss_impl), at a large vocabulary.

One forward + backward of the loss alone, from hidden states (B*T, D) and a tied, padded head
weight (R, D), for each implementation in a fresh process (so that one's high-water mark does
not hide the other's). Memory: on CUDA torch.cuda.max_memory_allocated above what the inputs
hold; on the CPU the process's peak resident set (VmHWM) above its resident set before the
step (all the step's allocations, torch's and the allocator's, counted as the OS sees them).

    python scripts/bench_loss.py                        # CPU: B 4, T 1024, D 768, V 50257
    python scripts/bench_loss.py --device cuda --dtype bf16 --batch-size 32
    python scripts/bench_loss.py --impls dense,chunked,liger --json loss.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def worker(args: argparse.Namespace) -> dict:
    import torch
    import torch.nn.functional as F

    sys.path.insert(0, str(ROOT / "src"))
    from attnlab.tasks.lm_loss import ReadoutLoss

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[args.dtype]
    rows = -(-args.vocab // 64) * 64  # padded to a multiple of 64
    g = torch.Generator(device=device).manual_seed(0)
    N = args.batch_size * args.seq_len
    hidden = torch.randn(N, args.d_model, device=device, generator=g, requires_grad=True)
    weight = (0.02 * torch.randn(rows, args.d_model, device=device, generator=g)).requires_grad_()
    labels = torch.randint(args.vocab, (N,), device=device, generator=g)
    head = torch.nn.Module()
    head.weight, head.bias, head.vocab_size, head.output_mult = weight, None, args.vocab, 1.0
    chunk = args.chunk_tokens or None
    readout = ReadoutLoss(args.worker, chunk_tokens=chunk) if args.worker != "dense" else None

    def step() -> None:
        with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
            if readout is None:
                logits = F.linear(hidden, weight)[:, : args.vocab]  # (N, V)
                loss = F.cross_entropy(logits, labels)
            else:
                loss = readout(head, hidden, labels)
        loss.backward()
        hidden.grad = weight.grad = None

    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
    else:
        before = _status_kib("VmRSS") * 1024
    step()  # the first step: its peak is the one measured
    sync()
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated() - before
    else:
        peak = _status_kib("VmHWM") * 1024 - before
    times = []
    for _ in range(args.repeats):
        sync()
        start = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - start)
    return {"impl": args.worker, "peak_bytes": peak, "ms": [1e3 * t for t in times]}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--impls", default="dense,chunked")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="fp32", choices=["fp32", "bf16"])
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--seq-len", type=int, default=1024)
    parser.add_argument("--d-model", type=int, default=768)
    parser.add_argument("--vocab", type=int, default=50257)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--chunk-tokens", type=int, default=0, help="0: auto (tasks/lm_loss.py)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args)))
        return
    rows = []
    passed = [
        f"--{key.replace('_', '-')}={value}"
        for key, value in vars(args).items()
        if key not in ("json", "worker", "impls")
    ]
    for impl in args.impls.split(","):
        out = subprocess.run(
            [sys.executable, __file__, *passed, "--worker", impl], capture_output=True, text=True
        )
        if out.returncode == 0:
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        else:  # liger without its library or a GPU, out of memory: one line, the others go on
            lines = out.stderr.strip().splitlines() or [f"exit {out.returncode}"]
            rows.append({"impl": impl, "error": lines[-1][:300]})
    N = args.batch_size * args.seq_len
    print(
        f"B*T {N}, D {args.d_model}, V {args.vocab}, {args.dtype}, {args.device}; "
        f"dense fp32 logits alone: {N * args.vocab * 4 / 2**20:,.0f} MiB"
    )
    print("| loss_impl | peak memory of the step (MiB) | ms per step (median) | vs dense |")
    print("| --- | --- | --- | --- |")
    for row in rows:
        if "error" in row:
            print(f"| {row['impl']} | failed: {row['error']} | | |")
            continue
        ratio = row["peak_bytes"] / rows[0]["peak_bytes"]
        print(
            f"| {row['impl']} | {row['peak_bytes'] / 2**20:,.0f} | "
            f"{statistics.median(row['ms']):,.0f} | {ratio:.3f}x memory |"
        )
    if args.json:
        args.json.write_text(json.dumps({"args": passed, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
