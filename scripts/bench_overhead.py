"""Framework overhead: attnlab's trainer vs a minimal hand-written PyTorch loop.

Both train the same GPT on the same batches (the DataModule's training loader), with the same
optimiser, schedule and gradient clipping, for the same number of steps, in one process.
Tokens/s are timed from the end of warm-up step `--warmup` to the end of step `--steps`;
runs alternate (attnlab, hand, attnlab, hand, ...) and the median of `--repeats` is reported.

    python scripts/bench_overhead.py                    # experiment=gpt_shakespeare_char_cpu
    python scripts/bench_overhead.py --steps 300 --repeats 3
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

from attnlab import build
from attnlab.train import train


class StepTimer(pl.Callback):
    """Wall time between the ends of two training steps."""

    def __init__(self, warmup: int, steps: int) -> None:
        self.warmup, self.steps = warmup, steps
        self.start = self.end = 0.0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step == self.warmup:
            self.start = time.perf_counter()
        elif trainer.global_step == self.steps:
            self.end = time.perf_counter()


def compose_run(overrides: list[str], out_dir: Path) -> DictConfig:
    GlobalHydra.instance().clear()
    with initialize_config_module("attnlab.conf", version_base="1.3"):
        cfg = compose("train", overrides=overrides, return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(out_dir)
        cfg.hydra.job.num = 0
    HydraConfig.instance().set_config(cfg)
    return cfg


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
    model = module.network
    model.train()
    optimizer, scheduler = module.build_optimizer(total_steps=steps)
    clip = cfg.trainer.gradient_clip_val
    loader = datamodule.train_dataloader()
    step, start = 0, 0.0
    while step < steps:
        for batch in loader:
            logits = model(batch["input_ids"])
            loss = F.cross_entropy(logits.flatten(0, 1), batch["labels"].flatten())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
            optimizer.step()
            scheduler.step()
            step += 1
            if step == warmup:
                start = time.perf_counter()
            if step == steps:
                break
    tokens = (steps - warmup) * cfg.data.batch_size * cfg.data.block_size
    return tokens / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiment", default="gpt_shakespeare_char_cpu")
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides for both runs")
    args = parser.parse_args()

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
            cfg = compose_run(overrides, Path(tmp) / f"attnlab_{repeat}")
            results["attnlab"].append(attnlab_tokens_per_sec(cfg, args.warmup, args.steps))
            cfg = compose_run(overrides, Path(tmp) / f"hand_{repeat}")
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
