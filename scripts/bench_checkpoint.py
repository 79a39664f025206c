"""What the checkpoint checksum costs: saving and loading with and without it.

A checkpoint shaped like a training one (fp32 weights and AdamW's two moments, i.e. 12 bytes a
parameter) is written with plain `torch.save` + fsync (what Lightning does, less its staging
copy) and with attnlab's `AtomicCheckpointIO` (checksum, temporary file, fsync, rename), then
read back with `torch.load` and with `read_checkpoint` (load + verify). Each timing is the
median of `--repeats`, alternating the two ways.

    python scripts/bench_checkpoint.py                       # 10M, 50M and 125M parameters
    python scripts/bench_checkpoint.py --params 350 --repeats 2 --dir /scratch/x
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

from attnlab.checkpoint_io import AtomicCheckpointIO, payload_checksum, read_checkpoint


def training_checkpoint(n_params: int) -> dict:
    """Weights in 1M-parameter matrices, and AdamW states of the same shapes."""
    shapes = [(1000, 1000)] * (n_params // 1_000_000)
    weights = {f"layer{i}.weight": torch.randn(shape) for i, shape in enumerate(shapes)}
    moments = {
        i: {"step": torch.tensor(10.0), "exp_avg": torch.randn(s), "exp_avg_sq": torch.rand(s)}
        for i, s in enumerate(shapes)
    }
    return {
        "state_dict": weights,
        "optimizer_states": [{"state": moments, "param_groups": [{"lr": 1e-3}]}],
        "global_step": 10,
    }


def plain_save(checkpoint: dict, path: Path) -> None:
    with open(path, "wb") as file:
        torch.save(checkpoint, file)
        file.flush()
        os.fsync(file.fileno())


def median_time(action: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=int, nargs="+", default=[10, 50, 125], help="millions")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dir", type=Path, default=None, help="where to write (default: tmp)")
    args = parser.parse_args()
    io = AtomicCheckpointIO()
    header = (
        f"{'params':>7} {'file GB':>8} {'save s':>7} {'+checksum s':>12} {'ratio':>6} "
        f"{'checksum s':>11} {'load s':>7} {'+verify s':>10} {'ratio':>6}"
    )
    print(header)
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        for millions in args.params:
            checkpoint = training_checkpoint(millions * 1_000_000)
            plain, checked = Path(tmp) / "plain.ckpt", Path(tmp) / "checked.ckpt"
            save_times: dict[str, list[float]] = {"plain": [], "checked": []}
            for _ in range(args.repeats):  # alternate, so drift hits both alike
                save_times["plain"].append(median_time(lambda: plain_save(checkpoint, plain), 1))
                save_times["checked"].append(
                    median_time(lambda: io.save_checkpoint(checkpoint, checked), 1)
                )
            save = statistics.median(save_times["plain"])
            save_checked = statistics.median(save_times["checked"])
            checksum = median_time(lambda: payload_checksum(checkpoint), args.repeats)
            load = median_time(lambda: torch.load(checked, weights_only=False), args.repeats)
            load_checked = median_time(lambda: read_checkpoint(checked), args.repeats)
            size = checked.stat().st_size / 1e9
            print(
                f"{millions:>6}M {size:>8.2f} {save:>7.2f} {save_checked:>12.2f} "
                f"{save_checked / save:>6.2f} {checksum:>11.2f} {load:>7.2f} "
                f"{load_checked:>10.2f} {load_checked / load:>6.2f}"
            )


if __name__ == "__main__":
    main()
