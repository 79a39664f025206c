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

`--gpt124m` instead times what a validation that finds a new best costs a 124M GPT (12 layers,
d_model 768, vocabulary 50304, block 1024; its real weights and AdamW state): best.ckpt and
last.ckpt as two full writes (attnlab before issue 19), best.ckpt plus a hard link (now), and
the same with `async_checkpoint=true`, where the training loop waits only for the tensors'
copy ("blocked") while the thread writes ("on disk": until the files are complete).

    python scripts/bench_checkpoint.py                       # 10M, 50M and 125M parameters
    python scripts/bench_checkpoint.py --params 350 --repeats 2 --dir /scratch/x
    python scripts/bench_checkpoint.py --gpt124m --repeats 3
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

from attnlab.models import DecoderOnly
from attnlab.optim import adamw, parameter_groups
from attnlab.run.checkpoint_io import (
    AsyncAtomicCheckpointIO,
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


def gpt124m_checkpoint() -> dict:
    """A 124M GPT's weights and the AdamW state after one step, as Lightning stores them."""
    network = DecoderOnly(
        vocab_size=50304, d_model=768, n_heads=12, n_layers=12, max_len=1024, dropout=0.0
    )
    optimizer = adamw(parameter_groups(network, 0.1), lr=6e-4)
    for param in network.parameters():
        param.grad = torch.randn_like(param) * 1e-3
    optimizer.step()
    n_params = sum(p.numel() for p in network.parameters())
    return {
        "state_dict": {f"network.{k}": v for k, v in network.state_dict().items()},
        "optimizer_states": [optimizer.state_dict()],
        "global_step": 1,
        "n_params": n_params,
    }


def best_and_last_full(io: AtomicCheckpointIO, checkpoint: dict, folder: Path) -> None:
    io.save_checkpoint(checkpoint, folder / "best.ckpt")
    io.save_checkpoint(checkpoint, folder / "last.ckpt")


def best_and_link(io: AtomicCheckpointIO, checkpoint: dict, folder: Path) -> None:
    io.save_checkpoint(checkpoint, folder / "best.ckpt")
    io.link_checkpoint(folder / "best.ckpt", folder / "last.ckpt")


def bench_gpt124m(repeats: int, directory: Path | None) -> None:
    checkpoint = gpt124m_checkpoint()
    print(f"124M GPT: {checkpoint['n_params'] / 1e6:.1f}M parameters")
    sync, background = AtomicCheckpointIO(), AsyncAtomicCheckpointIO()
    times: dict[str, list[float]] = {"two full": [], "link": [], "blocked": [], "on disk": []}
    with tempfile.TemporaryDirectory(dir=directory) as tmp:
        folder = Path(tmp)
        for _ in range(repeats):  # in turns, so that drift hits all alike
            times["two full"].append(timed(best_and_last_full, sync, checkpoint, folder))
            size = (folder / "best.ckpt").stat().st_size
            times["link"].append(timed(best_and_link, sync, checkpoint, folder))
            start = time.perf_counter()
            best_and_link(background, checkpoint, folder)
            times["blocked"].append(time.perf_counter() - start)
            background.wait()
            times["on disk"].append(time.perf_counter() - start)
            read_checkpoint(folder / "last.ckpt")  # whole and verified
        background.teardown()
        files = {p.stat().st_ino for p in folder.glob("*.ckpt")}
    median = {name: statistics.median(values) for name, values in times.items()}
    print(
        f"file {size / 1e9:.2f} GB (best.ckpt and last.ckpt: {len(files)} file on disk); "
        f"best + last, median of {repeats}:"
    )
    print(f"  two full writes (before):     {median['two full']:6.2f} s, {2 * size / 1e9:.2f} GB")
    print(f"  best + hard link (now):       {median['link']:6.2f} s, {size / 1e9:.2f} GB")
    print(f"  async_checkpoint, loop waits: {median['blocked']:6.2f} s")
    print(f"  async_checkpoint, on disk:    {median['on disk']:6.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=int, nargs="+", default=[10, 50, 125], help="millions")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dir", type=Path, default=None, help="where to write (default: tmp)")
    parser.add_argument("--gpt124m", action="store_true", help="best + last of a 124M GPT")
    args = parser.parse_args()
    if args.gpt124m:
        bench_gpt124m(args.repeats, args.dir)
        return
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
