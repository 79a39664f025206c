"""Time to a target validation loss (scripts/bench_gpu.py --to-loss), one runner per process.

Each runner trains until the validation loss (the first `eval_batches` batches of the
validation split, every `eval_interval` steps) is at or below the target, or until
`max_steps`, and reports the wall time from the first training step (compilation included,
for every runner alike), the tokens trained and the steps:

  attnlab-adamw, attnlab-muon  attnlab.run.train.train (path a) with optimizer=adamw / muon;
  nanogpt                      nanoGPT's loop and model (path c), AdamW.

Same data, batches, network shape, schedule (warm-up, cosine to min_lr over max_steps) and
clipping for all; nanoGPT's vocabulary is the data's own, attnlab's padded as its trainer says.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch
from bench_gpu_paths import (
    NanoGPT,
    Setup,
    autocast,
    batches,
    build_attnlab,
    compose_run,
    nanogpt_step,
    sync,
)


def _point(step: int, tokens: int, start: float, loss: float) -> dict[str, float]:
    return {"step": step, "tokens": tokens, "wall_s": time.perf_counter() - start, "loss": loss}


def to_loss_attnlab(
    setup: Setup, out_dir: Path, target: float, eval_interval: int, eval_batches: int
) -> dict[str, Any]:
    import lightning.pytorch as pl

    from attnlab.run.train import train

    curve: list[dict[str, float]] = []
    clock: dict[str, float] = {}

    class ToLoss(pl.Callback):
        def on_train_start(self, trainer: Any, pl_module: Any) -> None:
            clock["start"] = time.perf_counter()

        def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
            if trainer.sanity_checking or "start" not in clock:
                return
            loss = float(trainer.callback_metrics["val/loss"])
            point = _point(trainer.global_step, pl_module.tokens_seen, clock["start"], loss)
            curve.append(point)
            if loss <= target:
                trainer.should_stop = True

    extra = [
        f"trainer.limit_val_batches={eval_batches}",
        f"trainer.val_check_interval={eval_interval}",
        "trainer.check_val_every_n_epoch=null",
    ]
    train(compose_run(setup, out_dir, extra), extra_callbacks=[ToLoss()])
    return _summary(curve, target)


@torch.no_grad()
def _evaluate(model: NanoGPT, loader: Any, setup: Setup, limit: int) -> float:
    model.eval()
    losses = []
    for i, batch in enumerate(loader):
        if i == limit:
            break
        batch = {k: v.to(setup.device) for k, v in batch.items()}
        with autocast(setup):
            losses.append(model(batch["input_ids"], batch["labels"]).float())
    model.train()
    return float(torch.stack(losses).mean())


def to_loss_nanogpt(
    setup: Setup, out_dir: Path, target: float, eval_interval: int, eval_batches: int
) -> dict[str, Any]:
    datamodule, _ = build_attnlab(setup, out_dir, compile=False)  # the data only
    setup.vocab_size = datamodule.spec.vocab_size
    torch.manual_seed(0)
    model = NanoGPT(setup).to(setup.device)
    optimizer = model.configure_optimizers(0.1, setup.lr, fused=setup.device == "cuda")
    step_model = torch.compile(model) if setup.compile else model
    data = batches(datamodule.train_dataloader(), setup.device)
    curve: list[dict[str, float]] = []
    tokens_per_step = setup.batch_size * setup.block_size
    sync(setup.device)
    start = time.perf_counter()
    for step in range(1, setup.total_steps + 1):
        nanogpt_step(step, model, step_model, optimizer, next(data), setup)
        if step % eval_interval == 0 or step == setup.total_steps:
            val = _evaluate(step_model, datamodule.val_dataloader(), setup, eval_batches)
            curve.append(_point(step, step * tokens_per_step, start, val))
            if val <= target:
                break
    return _summary(curve, target)


def _summary(curve: list[dict[str, float]], target: float) -> dict[str, Any]:
    reached = next((p for p in curve if p["loss"] <= target), None)
    last = reached or (curve[-1] if curve else {})
    return {"target": target, "reached": reached is not None, **last, "curve": curve}


TO_LOSS = {
    "attnlab-adamw": ("adamw", to_loss_attnlab),
    "attnlab-muon": ("muon", to_loss_attnlab),
    "nanogpt": ("adamw", to_loss_nanogpt),
}
