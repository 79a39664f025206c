"""GPU throughput and MFU of a 124M GPT: attnlab's Trainer vs a hand loop vs nanoGPT's loop.

Three training loops on the same shapes (12 layers, d_model 768, 12 heads, T 1024, vocabulary
50304, no dropout, no biases), bf16 autocast, torch.compile, fused AdamW, gradient clipping 1.0,
the same random windows of a synthetic corpus (attnlab's toy_lm data); the paths are in
bench_gpu_paths.py (a: attnlab.run.train.train, b: a hand loop on attnlab's network and task
step, c: nanoGPT's model and loop).

Resolving 1%: every (path, repeat) runs in a fresh process, the repeats (--repeats, 3) in a
shuffled order, each timing --windows (10) windows of --window-steps (20) steps after --warmup
steps (compilation happens there), synchronised at the windows' ends only. Reported: the
median tokens/s over all windows of a path, and the ratios a/b and a/c with 95% intervals from
a bootstrap over repeats and, within them, windows. MFU twice: nanoGPT's convention (6 N +
12 L d T per token: causal attention counted as full) and the hardware's (causal attention
counted as executed, (T + 1) / 2 keys a query). Peak memory per path (CUDA: max allocated;
CPU: the process's peak resident set). Also: cached vs uncached generation and the SDPA
backends (--no-extras skips them), the largest batch that runs (--largest-batch), and the
time to a validation loss (--to-loss TARGET: attnlab AdamW, attnlab Muon, the nanoGPT loop;
bench_to_loss.py).

    PYTHONPATH=src python3 scripts/bench_gpu.py --json gpu.json     # a, b, c x 3 on a GPU
    python scripts/bench_gpu.py --loss-impl chunked --compile-mode max-autotune-no-cudagraphs
    python scripts/bench_gpu.py --to-loss 1.6 --json to_loss.json   # Tiny Shakespeare chars
    python scripts/bench_gpu.py --smoke                              # CPU, tiny sizes
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

SCRIPTS = Path(__file__).resolve().parent
sys.path.insert(0, str(SCRIPTS))  # bench_gpu_paths, bench_to_loss

from bench_gpu_paths import (  # noqa: E402
    PATHS,
    RUNNERS,
    SMOKE,
    Setup,
    hardware_flops_per_token,
    peak_flops,
)

# nanoGPT's shakespeare_char GPU run (conf/experiment/gpt_shakespeare_char.yaml), no dropout.
TO_LOSS_SETUP = dict(
    data="shakespeare_char",
    n_layers=6,
    n_heads=6,
    d_model=384,
    block_size=256,
    batch_size=64,
    lr=1e-3,
    betas=(0.9, 0.99),
    warmup=100,
    min_lr=1e-4,
    max_steps=5000,
)
TO_LOSS_SMOKE = dict(data="toy_lm", max_steps=6, warmup=1, lr=1e-3)
RATIOS = (("a", "b"), ("a", "c"), ("d", "c"), ("d", "a"))


# ---------------------------------------------------------------- one process


def _peak_memory(device: str) -> int:
    import torch

    if device == "cuda":
        return int(torch.cuda.max_memory_allocated())
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def worker(kind: str, setup: Setup, options: dict[str, Any]) -> dict[str, Any]:
    """One path, the extras, or one time-to-loss runner, in this (fresh) process."""
    import torch

    if setup.device == "cuda":
        torch.set_float32_matmul_precision("high")  # TF32 for what autocast leaves in fp32
    if setup.device == "cpu":  # tiny matmuls: more threads only contend (CI machines are small)
        torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        if kind in RUNNERS:
            row = RUNNERS[kind](setup, Path(tmp) / kind)
        elif kind == "extras":
            from bench_gpu_paths import flash_check, generation

            row = {
                "generation": generation(setup, Path(tmp)),
                "flash": flash_check(setup, Path(tmp)),
            }
        else:
            from bench_to_loss import TO_LOSS

            row = TO_LOSS[kind.removeprefix("to_loss:")][1](setup, Path(tmp), **options)
    row["peak_memory_bytes"] = _peak_memory(setup.device)
    return row


def run_worker(
    kind: str, setup: Setup, timeout: float, options: dict[str, Any] | None = None
) -> dict[str, Any]:
    """`worker` in a fresh interpreter; a failure (out of memory, a timeout) is returned as
    {"error": its last line}."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "row.json"
        command = [sys.executable, __file__, "--worker", kind, "--result", str(out)]
        command += ["--setup", json.dumps(asdict(setup)), "--options", json.dumps(options or {})]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return {"error": f"timed out after {timeout:.0f} s"}
        if done.returncode != 0 or not out.exists():
            lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
            return {"error": lines[-1][:300] if lines else f"exit {done.returncode}"}
        return json.loads(out.read_text())


# ---------------------------------------------------------------- statistics


def _median_of(runs: list[list[float]]) -> float:
    return statistics.median([w for run in runs for w in run])


def bootstrap_ratio(
    top: list[list[float]], bottom: list[list[float]], samples: int = 2000, seed: int = 0
) -> tuple[float, float, float]:
    """median(top) / median(bottom) over all windows, and its 95% percentile interval from a
    two-level bootstrap: repeats with replacement, then windows within each repeat."""
    rng = random.Random(seed)

    def draw(runs: list[list[float]]) -> list[list[float]]:
        chosen = [runs[rng.randrange(len(runs))] for _ in runs]
        return [[run[rng.randrange(len(run))] for _ in run] for run in chosen]

    ratios = sorted(_median_of(draw(top)) / _median_of(draw(bottom)) for _ in range(samples))
    low, high = ratios[int(0.025 * samples)], ratios[int(0.975 * samples) - 1]
    return _median_of(top) / _median_of(bottom), low, high


# ---------------------------------------------------------------- the benchmark


def throughput(setups: dict[str, Setup], repeats: int, seed: int, timeout: float) -> dict:
    """Every path of `setups` `repeats` times, each a fresh process, in a shuffled order."""
    order = [key for _ in range(repeats) for key in setups]
    random.Random(seed).shuffle(order)  # no path always first, or always after another
    runs: dict[str, list[dict[str, Any]]] = {key: [] for key in setups}
    for key in order:
        row = run_worker(key, setups[key], timeout)
        runs[key].append(row)
        shown = row.get("error") or f"{statistics.median(row['windows']):,.0f} tokens/s"
        print(f"{key} ({PATHS[key]}), repeat {len(runs[key])}: {shown}", flush=True)
    return {"order": order, "runs": runs}


def summarise(setups: dict[str, Setup], runs: dict[str, list[dict]], peak: float | None) -> dict:
    paths: dict[str, Any] = {}
    for key, rows in runs.items():
        good = [r for r in rows if "windows" in r]
        if not good:
            paths[key] = {"error": rows[0].get("error") if rows else "not run"}
            continue
        first = good[0]
        tokens_per_s = _median_of([r["windows"] for r in good])
        hardware = hardware_flops_per_token(first["matmul_params"], setups[key])
        paths[key] = {
            "tokens_per_s": tokens_per_s,
            "repeat_medians": [statistics.median(r["windows"]) for r in good],
            "windows": [w for r in good for w in r["windows"]],
            "repeats": len(good),
            "failed": [r["error"] for r in rows if "error" in r],
            "params": first["params"],
            "flops_per_token": first["flops_per_token"],
            "hardware_flops_per_token": hardware,
            "mfu": first["flops_per_token"] * tokens_per_s / peak if peak else None,
            "hardware_mfu": hardware * tokens_per_s / peak if peak else None,
            "peak_memory_bytes": max(r["peak_memory_bytes"] for r in good),
        }
    ratios = {}
    for top, bottom in RATIOS:
        if "tokens_per_s" in paths.get(top, {}) and "tokens_per_s" in paths.get(bottom, {}):
            a = [r["windows"] for r in runs[top] if "windows" in r]
            b = [r["windows"] for r in runs[bottom] if "windows" in r]
            ratio, low, high = bootstrap_ratio(a, b)
            ratios[f"{top}/{bottom}"] = {"ratio": ratio, "low": low, "high": high}
    return {"paths": paths, "ratios": ratios}


def largest_batch(setups: dict[str, Setup], cap: int, timeout: float) -> dict[str, Any]:
    """Per path, the largest power-of-2 multiple of the batch size that runs a few steps."""
    out: dict[str, Any] = {}
    for key, setup in setups.items():
        batch, fits, failure = setup.batch_size, None, None
        while batch <= cap:
            trial = Setup(**{**asdict(setup), "batch_size": batch})
            trial.warmup, trial.windows, trial.window_steps = 1, 1, 2
            row = run_worker(key, trial, timeout)
            if "error" in row:
                failure = f"{batch}: {row['error']}"
                break
            fits, batch = batch, batch * 2
        out[key] = {"largest": fits, "first_failure": failure, "cap": cap}
        print(f"{key}: largest batch {fits} ({failure or f'cap {cap}'})", flush=True)
    return out


def time_to_loss(setup: Setup, target: float, options: dict, timeout: float) -> dict[str, Any]:
    from bench_to_loss import TO_LOSS

    out = {}
    for name, (optimizer, _) in TO_LOSS.items():
        trial = Setup(**{**asdict(setup), "optimizer": optimizer})
        row = run_worker(f"to_loss:{name}", trial, timeout, {"target": target, **options})
        out[name] = row
        shown = row.get("error") or (
            f"{'reached' if row['reached'] else 'NOT reached'} {row.get('loss', float('nan')):.4f}"
            f" at step {row.get('step')}, {row.get('tokens', 0):,} tokens, "
            f"{row.get('wall_s', 0):.1f} s"
        )
        print(f"to loss {target} ({name}): {shown}", flush=True)
    return out


# ---------------------------------------------------------------- report


def fmt(value: float | None, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def report(results: dict[str, Any]) -> str:
    s = results["setup"]
    lines = [
        f"device: {results['device']}, torch {results['torch']}, peak "
        f"{fmt(results['peak_flops'], '.3g')} FLOP/s; batch {s['batch_size']} x "
        f"{s['block_size']}, loss_impl {s['loss_impl']}, compile {s['compile']} "
        f"({s['compile_mode']}), optimizer {s['optimizer']}; order {''.join(results['order'])}",
        "| path | tokens/s (median) | repeat medians | MFU (nanoGPT) | MFU (hardware) "
        "| peak memory | params |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    if results.get("tuned"):
        lines.insert(
            1, "path d: path a with " + ", ".join(f"{k} {v}" for k, v in results["tuned"].items())
        )
    for key, row in results["paths"].items():
        if "error" in row:
            lines.append(f"| {key}: {PATHS[key]} | failed: {row['error']} | | | | | |")
            continue
        medians = ", ".join(f"{m:,.0f}" for m in row["repeat_medians"])
        lines.append(
            f"| {key}: {PATHS[key]} | {row['tokens_per_s']:,.0f} | {medians} | "
            f"{fmt(row['mfu'], '.1%')} | {fmt(row['hardware_mfu'], '.1%')} | "
            f"{row['peak_memory_bytes'] / 2**20:,.0f} MiB | {row['params']:,} |"
        )
    for name, r in results["ratios"].items():
        lines.append(
            f"| ratio {name} | {r['ratio']:.3f} [{r['low']:.3f}, {r['high']:.3f}] | | | | | |"
        )
    extras = results.get("extras") or {}
    gen = extras.get("generation")
    if gen:
        lines.append(
            f"generation (batch {gen['batch']}, prompt {gen['prompt']}, {gen['new_tokens']} new): "
            f"cached {gen['cached_tokens_per_s']:,.0f} tokens/s, uncached "
            f"{gen['uncached_tokens_per_s']:,.0f} tokens/s ({gen['speedup']:.1f}x)"
        )
    for name in ("attnlab", "nanogpt") if extras.get("flash") else ():
        flash = extras["flash"]
        lines.append(
            f"SDPA {name}: backends {flash[f'{name}_backends'] or 'none seen'}, "
            f"flash only: {flash[f'{name}_flash_only']}"
        )
    lines.append(f"wall time {results['wall_s']:.0f} s")
    return "\n".join(lines)


def to_loss_report(rows: dict[str, Any], target: float) -> str:
    lines = [
        f"| to val loss {target} | reached | val loss | steps | tokens | wall s | peak memory |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, row in rows.items():
        if "error" in row:
            lines.append(f"| {name} | failed: {row['error']} | | | | | |")
            continue
        lines.append(
            f"| {name} | {'yes' if row['reached'] else 'no'} | {row.get('loss', float('nan')):.4f} "
            f"| {row.get('step')} | {row.get('tokens', 0):,} | {row.get('wall_s', 0):.1f} | "
            f"{row['peak_memory_bytes'] / 2**20:,.0f} MiB |"
        )
    return "\n".join(lines)


# ---------------------------------------------------------------- command line


def _setup(args: argparse.Namespace) -> Setup:
    base = dict(SMOKE) if args.smoke else {}
    if args.to_loss is not None:
        base |= TO_LOSS_SMOKE if args.smoke else TO_LOSS_SETUP
    setup = Setup(**base)
    for field in ("warmup", "windows", "window_steps", "batch_size", "compile_mode", "loss_impl"):
        if getattr(args, field) is not None:
            setattr(setup, field, getattr(args, field))
    if args.to_loss_max_steps is not None:
        setup.max_steps = args.to_loss_max_steps
    if args.muon_lr is not None:
        setup.muon_lr = args.muon_lr
    setup.optimizer, setup.fp8 = args.optimizer, args.fp8
    setup.compile = setup.compile and not args.no_compile
    return setup


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add = parser.add_argument
    add("--only", default="a,b,c", help="paths to run, e.g. a,c,d (d: a with --tuned-*)")
    add("--repeats", type=int, help="fresh processes per path (default 3; --smoke 2)")
    add("--windows", type=int, help="timed windows per process (default 10)")
    add("--window-steps", type=int, help="steps per window (default 20)")
    add("--warmup", type=int, help="untimed steps first (default 10)")
    add("--batch-size", type=int, help="sequences per step (default 32)")
    add("--no-compile", action="store_true", help="eager, for all paths")
    add("--compile-mode", help="paths a, b: torch.compile's mode (attnlab's compile_mode)")
    add("--loss-impl", help="paths a, b: task.loss_impl (dense, chunked, liger)")
    add("--optimizer", default="adamw", choices=["adamw", "muon"], help="paths a, b")
    add("--muon-lr", type=float, help="optimizer=muon: optimizer.muon_lr")
    add("--fp8", action="store_true", help="paths a, b: fp8=true (H100-class GPUs)")
    add("--tuned-loss-impl", default="chunked", help="path d: task.loss_impl")
    add("--tuned-compile-mode", default="default", help="path d: compile_mode")
    add("--tuned-fp8", action="store_true", help="path d: fp8=true")
    add("--no-extras", action="store_true", help="skip generation and the SDPA check")
    add("--largest-batch", action="store_true", help="also: the largest batch that runs")
    add("--batch-cap", type=int, default=1024, help="--largest-batch stops here")
    add("--to-loss", type=float, help="instead: time to this validation loss (3 runners)")
    add("--to-loss-max-steps", type=int, help="--to-loss: step cap and schedule length")
    add("--eval-interval", type=int, help="--to-loss: steps between validations (250)")
    add("--eval-batches", type=int, default=20, help="--to-loss: validation batches")
    add("--peak-flops", type=float, help="override the device's peak FLOP/s")
    add("--timeout", type=float, default=900, help="seconds per process")
    add("--seed", type=int, default=0, help="the shuffle's and the bootstrap's")
    add("--json", type=Path, help="also write the results here")
    add("--smoke", action="store_true", help="CPU, tiny sizes, fp32, no compile")
    add("--worker", help=argparse.SUPPRESS)
    add("--setup", help=argparse.SUPPRESS)
    add("--options", help=argparse.SUPPRESS)
    add("--result", type=Path, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    if args.worker:  # one process of the benchmark
        known = {f.name for f in fields(Setup)}
        setup = Setup(**{k: v for k, v in json.loads(args.setup).items() if k in known})
        row = worker(args.worker, setup, json.loads(args.options or "{}"))
        args.result.write_text(json.dumps(row))
        return
    import torch

    only = [key.strip() for key in args.only.split(",") if key.strip()]
    if not only or set(only) - set(RUNNERS):
        sys.exit(f"--only={args.only!r}: choose from a, b, c, d (comma-separated)")
    if not args.smoke and not torch.cuda.is_available():
        sys.exit("no CUDA device: run with --smoke for the CPU check")
    setup = _setup(args)
    device_peak, device_name = peak_flops(setup.device)
    start = time.perf_counter()
    results: dict[str, Any] = {
        "device": device_name,
        "torch": torch.__version__,
        "setup": asdict(setup),
        "peak_flops": args.peak_flops or device_peak,
    }
    if args.to_loss is not None:
        interval = args.eval_interval or (2 if args.smoke else 250)
        options = {"eval_interval": interval, "eval_batches": args.eval_batches}
        rows = time_to_loss(setup, args.to_loss, options, args.timeout)
        results |= {"to_loss": rows, "wall_s": time.perf_counter() - start}
        print()
        print(to_loss_report(rows, args.to_loss))
    else:
        repeats = args.repeats or (2 if args.smoke else 3)
        setups = {key: setup for key in only}
        if "d" in setups:
            tuned = {"loss_impl": args.tuned_loss_impl, "compile_mode": args.tuned_compile_mode}
            setups["d"] = Setup(**{**asdict(setup), **tuned, "fp8": args.tuned_fp8})
            results["tuned"] = {**tuned, "fp8": args.tuned_fp8}
        measured = throughput(setups, repeats, args.seed, args.timeout)
        results |= {"order": measured["order"], "raw": measured["runs"]}
        results |= summarise(setups, measured["runs"], results["peak_flops"])
        if not args.no_extras:
            results["extras"] = run_worker("extras", setup, args.timeout)
        if args.largest_batch:
            cap = min(args.batch_cap, 8) if args.smoke else args.batch_cap
            results["largest_batch"] = largest_batch(setups, cap, args.timeout)
        results["wall_s"] = time.perf_counter() - start
        print()
        print(report(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
