"""What the checkpoint checksum costs: saving and loading with and without it.

A checkpoint shaped like a training one (fp32 weights and AdamW's two moments, i.e. 12 bytes a
parameter) is written three ways: `torch.save` over the file + fsync (Lightning's write, less
its staging copy), the same into a new file renamed over the target (atomic), and attnlab's
`AtomicCheckpointIO` (atomic + checksum). `checksum s` is the hashing alone. It is read back
with `torch.load` and with `read_checkpoint` (load + verify). The last two columns time what a
resume reads before training: three verified reads (the integrity check, the config
comparison, Lightning's `fit`), as attnlab did, and one read kept for the other two
(`read_checkpoint(keep=True)`), as it does now. Each figure is the median of `--repeats`, the
ways compared run in turns.

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

from attnlab.checkpoint_io import (
    AtomicCheckpointIO,
    payload_checksum,
    read_checkpoint,
    release_kept_checkpoint,
)


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


def save_in_place(checkpoint: dict, path: Path) -> None:
    """torch.save over the file + fsync (Lightning's write, less its staging copy)."""
    with open(path, "wb") as file:
        torch.save(checkpoint, file)
        file.flush()
        os.fsync(file.fileno())


def save_atomic(checkpoint: dict, path: Path) -> None:
    """A new file beside the target, fsynced and renamed over it, without the checksum: what
    AtomicCheckpointIO does less the checksum."""
    partial = path.with_name(path.name + ".partial")
    save_in_place(checkpoint, partial)
    os.replace(partial, path)


def load_plain(path: Path) -> dict:
    return torch.load(path, weights_only=False)  # as read_checkpoint does, less the checksum


def resume_reads_before(path: Path) -> None:
    for _ in range(3):  # check, config comparison, fit: each read and verified the file
        read_checkpoint(path)


def resume_reads_now(path: Path) -> None:
    read_checkpoint(path, keep=True)  # newest_intact
    read_checkpoint(path, keep=True)  # check_resume_keeps_run: the kept copy
    read_checkpoint(path)  # Lightning's fit (AtomicCheckpointIO.load_checkpoint) takes it
    release_kept_checkpoint()


def timed(action: Callable[..., object], *args: object) -> float:
    start = time.perf_counter()
    action(*args)
    return time.perf_counter() - start


def alternating(actions: dict[str, tuple], repeats: int) -> dict[str, float]:
    """The median time of each (function, *args), run in turns so drift hits all alike."""
    times: dict[str, list[float]] = {name: [] for name in actions}
    for _ in range(repeats):
        for name, (action, *args) in actions.items():
            times[name].append(timed(action, *args))
    return {name: statistics.median(values) for name, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=int, nargs="+", default=[10, 50, 125], help="millions")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dir", type=Path, default=None, help="where to write (default: tmp)")
    args = parser.parse_args()
    io = AtomicCheckpointIO()
    print(
        f"{'params':>7} {'file GB':>8} {'in place s':>11} {'atomic s':>9} {'+checksum s':>12} "
        f"{'checksum s':>11} {'load s':>7} {'+verify s':>10} {'resume 3 reads s':>17} "
        f"{'resume 1 read s':>16}"
    )
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        for millions in args.params:
            checkpoint = training_checkpoint(millions * 1_000_000)
            plain, checked = Path(tmp) / "plain.ckpt", Path(tmp) / "checked.ckpt"
            save = alternating(
                {
                    "in place": (save_in_place, checkpoint, plain),
                    "atomic": (save_atomic, checkpoint, plain),
                    "checksum": (io.save_checkpoint, checkpoint, checked),
                },
                args.repeats,
            )
            read = alternating(
                {
                    "checksum": (payload_checksum, checkpoint),
                    "load": (load_plain, checked),
                    "verify": (read_checkpoint, checked),
                    "3 reads": (resume_reads_before, checked),
                    "1 read": (resume_reads_now, checked),
                },
                args.repeats,
            )
            size = checked.stat().st_size / 1e9
            print(
                f"{millions:>6}M {size:>8.2f} {save['in place']:>11.2f} {save['atomic']:>9.2f} "
                f"{save['checksum']:>12.2f} {read['checksum']:>11.2f} {read['load']:>7.2f} "
                f"{read['verify']:>10.2f} {read['3 reads']:>17.2f} {read['1 read']:>16.2f}"
            )


if __name__ == "__main__":
    main()
