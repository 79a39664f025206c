"""Framework overhead: attnlab's trainer vs a minimal hand-written PyTorch loop.

Both train the same GPT on the same batches (the DataModule's training loader), with the same
optimiser, schedule, gradient clipping, device and autocast (from the trainer config: a GPU and
bf16 with `trainer=gpu`), for the same number of steps, in one process. Tokens/s are timed
(synchronising a GPU) from the end of warm-up step `--warmup` to the end of step `--steps`;
runs alternate (attnlab, hand, attnlab, hand, ...) and the median of `--repeats` is reported.

`--end-to-end`: launch-to-exit wall time of `attnlab-train experiment=...` against
scripts/plain_gpt_char.py (the same steps, validations and final test in plain PyTorch), as
interleaved pairs of processes, then where attnlab's extra seconds go (imports, time to the
first step, sanity check, validation, callbacks such as checkpoints and samples, the test pass).

    python scripts/bench_overhead.py                    # experiment=gpt_shakespeare_char_cpu
    python scripts/bench_overhead.py --steps 300 --repeats 3
    python scripts/bench_overhead.py trainer=gpu        # on a GPU, bf16 autocast
    ATTNLAB_DATA_DIR=../shared/data python scripts/bench_overhead.py --end-to-end --pairs 3
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from contextlib import nullcontext
from pathlib import Path

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from bench_gpu_paths import compose_overrides
from omegaconf import DictConfig

from attnlab import run as build
from attnlab.run.train import train

SCRIPTS = Path(__file__).resolve().parent


def device_of(cfg: DictConfig) -> str:
    """The device the configured Trainer trains on (one device)."""
    accelerator = str(cfg.trainer.get("accelerator", "auto"))
    return "cuda" if accelerator in ("gpu", "cuda", "auto") and torch.cuda.is_available() else "cpu"


def autocast_dtype(cfg: DictConfig) -> torch.dtype | None:
    """What Lightning's `trainer.precision` autocasts to (None: no autocast)."""
    precision = str(cfg.trainer.get("precision", "32-true"))
    if precision.startswith("bf16") and "mixed" in precision:
        return torch.bfloat16
    if precision.startswith("16") and "mixed" in precision:
        return torch.float16
    return None


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


class StepTimer(pl.Callback):
    """Wall time between the ends of two training steps (the GPU synchronised)."""

    def __init__(self, warmup: int, steps: int) -> None:
        self.warmup, self.steps = warmup, steps
        self.start = self.end = 0.0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step in (self.warmup, self.steps):
            sync(pl_module.device.type)
        if trainer.global_step == self.warmup:
            self.start = time.perf_counter()
        elif trainer.global_step == self.steps:
            self.end = time.perf_counter()


def attnlab_tokens_per_sec(cfg: DictConfig, warmup: int, steps: int) -> float:
    timer = StepTimer(warmup, steps)
    train(cfg, extra_callbacks=[timer])
    tokens = (steps - warmup) * cfg.data.batch_size * cfg.data.block_size
    return tokens / (timer.end - timer.start)


def hand_written_tokens_per_sec(cfg: DictConfig, warmup: int, steps: int) -> float:
    """The loop a researcher would write by hand: nothing but the training step."""
    pl.seed_everything(cfg.seed)
    datamodule = build.build_datamodule(cfg)
    module = build.build_module(cfg, datamodule)  # same network, optimiser and schedule
    datamodule.setup("fit")
    device = device_of(cfg)
    model = module.network.to(device)
    model.train()
    optimizer, scheduler = module.build_optimizer(total_steps=steps)
    clip = cfg.trainer.gradient_clip_val
    loader = datamodule.train_dataloader()
    dtype = autocast_dtype(cfg)
    scaler = torch.amp.GradScaler(device, enabled=dtype is torch.float16)
    autocast = torch.autocast(device, dtype=dtype) if dtype else nullcontext()
    step, start = 0, 0.0
    while step < steps:
        for batch in loader:
            inputs = batch["input_ids"].to(device, non_blocking=True)
            labels = batch["labels"].to(device, non_blocking=True)
            with autocast:
                logits = model(inputs)
                loss = F.cross_entropy(logits.flatten(0, 1), labels.flatten())
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
            scaler.step(optimizer)
            scaler.update()
            if scheduler is not None:
                scheduler.step()
            step += 1
            if step in (warmup, steps):
                sync(device)
            if step == warmup:
                start = time.perf_counter()
            if step == steps:
                break
    tokens = (steps - warmup) * cfg.data.batch_size * cfg.data.block_size
    return tokens / (time.perf_counter() - start)


# ---------------------------------------------------------------- --end-to-end


def attnlab_command(args: argparse.Namespace, out_dir: Path) -> list[str]:
    """`attnlab-train experiment=... <overrides>` (python -m attnlab.run.train if not installed)."""
    exe = shutil.which("attnlab-train", path=str(Path(sys.executable).parent))
    launcher = [exe] if exe else [sys.executable, "-m", "attnlab.run.train"]
    overrides = [f"experiment={args.experiment}", f"hydra.run.dir={out_dir}"]
    return [*launcher, *overrides, *e2e_overrides(args), *args.overrides]


def e2e_overrides(args: argparse.Namespace) -> list[str]:
    """Fewer steps (and validations) than the experiment's, for both runs; no samples unless
    asked (--with-sampling: the plain script draws none)."""
    steps = [f"trainer.max_steps={args.e2e_steps}"] if args.e2e_steps else []
    every = [f"trainer.val_check_interval={args.e2e_val_interval}"] if args.e2e_val_interval else []
    sampling = [] if args.with_sampling else ["~callbacks.sample_text"]
    return [*steps, *every, *sampling]


def plain_command(args: argparse.Namespace, out_dir: Path) -> list[str]:
    steps = ["--steps", str(args.e2e_steps)] if args.e2e_steps else []
    if args.e2e_val_interval:
        steps += ["--val-interval", str(args.e2e_val_interval)]
    update = ["--fused"] if args.plain_update == "fused" else []  # attnlab's CPU AdamW: fused
    script = str(SCRIPTS / "plain_gpt_char.py")
    return [sys.executable, script, "--out", str(out_dir), *steps, *update]


def wall_time(command: list[str], log: Path) -> float:
    """Launch to exit, in seconds; the output goes to `log`."""
    start = time.perf_counter()
    with log.open("w") as out:
        subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, check=True)
    return time.perf_counter() - start


# Imported before the first step: attnlab-train's run layer, Lightning, torchmetrics and Hydra;
# the plain script's torch and numpy.
ATTNLAB_IMPORTS = (
    "import torch, lightning.pytorch, torchmetrics, hydra, attnlab.run.train, attnlab.run.assemble"
)
PLAIN_IMPORTS = "import torch, numpy"


def import_seconds(statement: str, repeats: int = 2) -> float:
    """Median launch-to-exit time of `python -c statement`."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", statement], check=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


class Phases(pl.Callback):
    """Where a run's time goes: set-up, sanity check, validation and test loops, training."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.marks: dict[str, float] = {}
        self.spans: dict[str, float] = defaultdict(float)
        self.opened: dict[str, float] = {}
        self.trainer: pl.Trainer | None = None

    def _open(self, name: str) -> None:
        self.opened[name] = time.perf_counter()

    def _close(self, name: str) -> None:
        self.spans[name] += time.perf_counter() - self.opened.pop(name)

    def setup(self, trainer, pl_module, stage) -> None:
        self.trainer = trainer

    def on_sanity_check_start(self, trainer, pl_module) -> None:
        self._open("sanity check")

    def on_sanity_check_end(self, trainer, pl_module) -> None:
        self._close("sanity check")

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.marks.setdefault("first step", time.perf_counter())

    def on_validation_start(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking:
            self._open("validation loops")

    def on_validation_end(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking:
            self._close("validation loops")

    def on_train_end(self, trainer, pl_module) -> None:
        self.marks["fit end"] = time.perf_counter()

    def on_test_start(self, trainer, pl_module) -> None:
        self._open("test loop")

    def on_test_end(self, trainer, pl_module) -> None:
        self._close("test loop")


def breakdown(args: argparse.Namespace, out_dir: Path) -> dict[str, float]:
    """One attnlab run in this process, timed by phase, and Lightning's profiler for the
    callbacks (checkpoints, samples, ...); imports are timed in fresh processes."""
    overrides = [f"experiment={args.experiment}", *e2e_overrides(args), "++trainer.profiler=simple"]
    cfg = compose_overrides([*overrides, *args.overrides], out_dir)
    phases = Phases()
    train(cfg, extra_callbacks=[phases])
    end = time.perf_counter()
    durations = phases.trainer.profiler.recorded_durations
    callbacks: dict[str, float] = defaultdict(float)
    for action, values in durations.items():
        if action.startswith("[Callback]"):
            name = action.removeprefix("[Callback]").split("{")[0].split(".")[0]
            callbacks[name] += sum(values)
    first, fit_end = phases.marks["first step"], phases.marks["fit end"]
    result = {
        "import torch (fresh process)": import_seconds("import torch"),
        "import attnlab.run.train (fresh process)": import_seconds("import attnlab.run.train"),
        "set-up to the first step, sanity check excluded": first
        - phases.start
        - phases.spans["sanity check"],
        **dict(phases.spans),
        "first step to the end of fit (steps, validation, callbacks)": fit_end - first,
        "after fit (test pass, checkpoint load, metrics.json)": end - fit_end,
    }
    result.update({f"callback {name} (all hooks)": value for name, value in callbacks.items()})
    return result


def print_phases(phases: dict[str, float]) -> None:
    print("\nattnlab run, by phase (one run in-process, Lightning's simple profiler on)")
    print("| phase | seconds |")
    print("| --- | --- |")
    for name, seconds in phases.items():
        print(f"| {name} | {seconds:.2f} |")
    print(flush=True)


def end_to_end(args: argparse.Namespace) -> None:
    if args.experiment != "gpt_shakespeare_char_cpu":
        sys.exit("--end-to-end: plain_gpt_char.py reproduces experiment=gpt_shakespeare_char_cpu")
    if "ATTNLAB_DATA_DIR" not in os.environ:
        sys.exit("--end-to-end: set ATTNLAB_DATA_DIR (Tiny Shakespeare), e.g. ../shared/data")
    times: dict[str, list[float]] = {"attnlab-train": [], "plain PyTorch": []}
    with tempfile.TemporaryDirectory() as tmp:
        if args.breakdown:  # first: a crash here costs no pairs
            print_phases(breakdown(args, Path(tmp) / "breakdown"))
        for pair in range(args.pairs):
            runs = [
                ("attnlab-train", attnlab_command(args, Path(tmp) / f"attnlab_{pair}")),
                ("plain PyTorch", plain_command(args, Path(tmp) / f"plain_{pair}")),
            ]
            for name, command in runs if pair % 2 == 0 else runs[::-1]:  # alternate who goes first
                times[name].append(wall_time(command, Path(tmp) / f"{name[:5]}_{pair}.log"))
                print(f"pair {pair}: {name} {times[name][-1]:.1f} s", flush=True)

        # What each side imports before its first step, in fresh processes (median of 3).
        imports = {
            "attnlab-train": import_seconds(ATTNLAB_IMPORTS, repeats=3),
            "plain PyTorch": import_seconds(PLAIN_IMPORTS, repeats=3),
        }

    steps = args.e2e_steps or "the experiment's"
    print(
        f"\n{args.experiment}, {steps} steps, launch to exit, {args.pairs} interleaved pairs; "
        f"plain update: {args.plain_update} AdamW; sampling: {args.with_sampling}"
    )
    print("| run | seconds (median) | runs | imports (fresh process) | without imports |")
    print("| --- | --- | --- | --- | --- |")
    for name, values in times.items():
        runs = ", ".join(f"{v:.1f}" for v in values)
        median, spent = statistics.median(values), imports[name]
        print(f"| {name} | {median:.1f} | {runs} | {spent:.1f} | {median - spent:.1f} |")
    pairs = [a / p for a, p in zip(times["attnlab-train"], times["plain PyTorch"], strict=True)]
    net = [
        (a - imports["attnlab-train"]) / (p - imports["plain PyTorch"])
        for a, p in zip(times["attnlab-train"], times["plain PyTorch"], strict=True)
    ]
    per_pair = ", ".join(f"{r:.3f}" for r in pairs)
    print(
        f"| ratio attnlab / plain | {statistics.median(pairs):.3f} (median) | {per_pair} | | ",
        end="",
    )
    print(f"{statistics.median(net):.3f} (median; {', '.join(f'{r:.3f}' for r in net)}) |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiment", default="gpt_shakespeare_char_cpu")
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--end-to-end", action="store_true", help="attnlab-train vs plain script")
    parser.add_argument("--pairs", type=int, default=3, help="--end-to-end: interleaved pairs")
    parser.add_argument("--e2e-steps", type=int, help="--end-to-end: steps (default: 2000)")
    parser.add_argument("--e2e-val-interval", type=int, help="--end-to-end: default 250")
    parser.add_argument(
        "--no-breakdown", dest="breakdown", action="store_false", help="skip the phase timing"
    )
    parser.add_argument(
        "--plain-update",
        choices=["fused", "foreach"],
        default="fused",
        help="--end-to-end: the plain script's AdamW (fused: the same update as attnlab's)",
    )
    parser.add_argument(
        "--with-sampling", action="store_true", help="--end-to-end: keep attnlab's samples"
    )
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides for both runs")
    args = parser.parse_args()
    if args.end_to_end:
        end_to_end(args)
        return

    results: dict[str, list[float]] = {"attnlab": [], "hand-written": []}
    with tempfile.TemporaryDirectory() as tmp:
        overrides = [
            f"experiment={args.experiment}",
            f"trainer.max_steps={args.steps}",
            "trainer.limit_val_batches=0",
            "test=false",
            "print_config=false",
            *args.overrides,
        ]
        for repeat in range(args.repeats):
            cfg = compose_overrides(overrides, Path(tmp) / f"attnlab_{repeat}")
            results["attnlab"].append(attnlab_tokens_per_sec(cfg, args.warmup, args.steps))
            cfg = compose_overrides(overrides, Path(tmp) / f"hand_{repeat}")
            results["hand-written"].append(
                hand_written_tokens_per_sec(cfg, args.warmup, args.steps)
            )

    attnlab, hand = (statistics.median(results[k]) for k in ("attnlab", "hand-written"))
    print(
        f"\n{args.experiment}: {args.steps - args.warmup} timed steps x {args.repeats} repeats, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads"
    )
    print("| loop | tokens/s (median) | runs |")
    print("| --- | --- | --- |")
    for name, values in results.items():
        runs = ", ".join(f"{v:,.0f}" for v in values)
        print(f"| {name} | {statistics.median(values):,.0f} | {runs} |")
    pairs = [a / h for a, h in zip(results["attnlab"], results["hand-written"], strict=True)]
    per_pair = ", ".join(f"{r:.3f}" for r in pairs)
    print(
        f"| ratio attnlab / hand-written | {attnlab / hand:.3f} | "
        f"per pair: {per_pair} (median {statistics.median(pairs):.3f}) |"
    )


if __name__ == "__main__":
    main()
