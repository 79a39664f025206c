"""The one LightningModule: a network from the `model` group, trained on the data's task."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

import lightning.pytorch as pl
import torch
from lightning.pytorch.plugins.precision import Precision
from lightning.pytorch.strategies import FSDPStrategy
from lightning.pytorch.utilities.enums import GradClipAlgorithmType
from torch import nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

from attnlab.optim import parameter_groups
from attnlab.tasks import Task
from attnlab.utils import lightning_compat as compat

OptimizerFactory = Callable[..., Optimizer]
SchedulerFactory = Callable[..., LRScheduler]


@runtime_checkable
class ShardsNetwork(Protocol):
    """A strategy that shards the network itself when `configure_model` runs: trainer=fsdp's
    attnlab.run.distributed.FullyShardedStrategy (a protocol: the run layer sits above)."""

    def shard(self, network: nn.Module) -> None: ...


def is_logging_step(trainer: pl.Trainer, batch_idx: int) -> bool:
    """Whether training batch `batch_idx` logs: every `log_every_n_steps`-th batch of an epoch,
    and its last. Only these steps read tensor values on the host (a GPU waits for each read):
    the module's logged loss, NanGuard's check, the progress bar."""
    n = trainer.log_every_n_steps
    return (n > 0 and (batch_idx + 1) % n == 0) or batch_idx + 1 == trainer.num_training_batches


class AttnLabModule(pl.LightningModule):
    """Wires network + task + optimiser; logs every metric as `{stage}/{name}`.

    `config` is the resolved run config: it is saved in every checkpoint so that evaluation,
    generation and fine-tuning can rebuild the run from the checkpoint alone.
    """

    def __init__(
        self,
        network: nn.Module,
        task: Task,
        optimizer: OptimizerFactory,
        scheduler: SchedulerFactory | None = None,
        body_lr_scale: float = 1.0,
        config: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters({"config": config}, logger=False)
        self.network = network
        self.task = task
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.body_lr_scale = body_lr_scale
        self._tokens_counted = 0  # read on the host: restored from / saved to checkpoints
        self._tokens_pending: torch.Tensor | int = 0  # counted on the device since
        self._fit_start: float | None = None

    @property
    def tokens_seen(self) -> int:
        """Tokens trained on so far (padding excluded). Counted on the device without a host
        read per step; reading this property reads the count."""
        self._tokens_counted += int(self._tokens_pending)
        self._tokens_pending = 0
        return self._tokens_counted

    @tokens_seen.setter
    def tokens_seen(self, value: int) -> None:
        self._tokens_counted, self._tokens_pending = int(value), 0

    def forward(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        return self.network(*args, **kwargs)

    def _shared_step(
        self, batch: dict[str, torch.Tensor], stage: str, log: bool = True
    ) -> torch.Tensor:
        loss = self.task.step(self.network, batch, stage)  # also updates the task's metrics
        if not log:
            return loss
        training = stage == "train"
        batch_size = next(iter(batch.values())).size(0)
        # Training loss per step (the curve); evaluation loss averaged over the whole split.
        # Lightning converts progress-bar values with .item() after every batch, a host read
        # that makes a GPU wait: attnlab's progress bar shows train/loss itself, read when
        # logged (callbacks/progress.py).
        self.log(
            f"{stage}/loss",
            loss,
            on_step=training,
            on_epoch=not training,
            prog_bar=not training,
            batch_size=batch_size,
            sync_dist=not training,
        )
        # Metric objects accumulate in task.step; logging them once an epoch would do, and
        # Lightning computes them at the epoch's end.
        self.log_dict(
            self.task.metrics(stage),
            on_step=False,
            on_epoch=True,
            prog_bar=not training,
            batch_size=batch_size,
        )
        return loss

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        # A tensor on the device (no host read); read when logged or saved.
        self._tokens_pending = self._tokens_pending + self.task.count_tokens(batch)
        # Each self.log costs about a millisecond on a CPU and its value is read on the host
        # when logged; the loggers only record every log_every_n_steps, so log then (and on an
        # epoch's last batch, for epoch metrics).
        log = is_logging_step(self.trainer, batch_idx)
        return self._shared_step(batch, "train", log=log)

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._shared_step(batch, "val")

    def on_fit_start(self) -> None:
        self._fit_start = time.perf_counter()

    def on_validation_epoch_end(self) -> None:
        # Where each validation point sits, so curves can be compared at equal tokens or time
        # (attnlab-compare): tokens seen, and seconds since fit began.
        if self.trainer.sanity_checking or self._fit_start is None:
            return
        elapsed = time.perf_counter() - self._fit_start
        # Under DDP: the tokens of all ranks, and the slowest rank's time.
        self.log("progress/tokens_seen", float(self.tokens_seen), sync_dist=True, reduce_fx="sum")
        self.log("progress/wall_time_s", elapsed, sync_dist=True, reduce_fx="max")

    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._shared_step(batch, "test")

    def configure_model(self) -> None:
        """Under trainer=fsdp, shard the network (FullyShardedStrategy.shard); under any other
        strategy it stays as it is. Lightning calls this before configure_optimizers."""
        trainer = compat.attached_trainer(self)
        strategy = trainer.strategy if trainer is not None else None
        if isinstance(strategy, ShardsNetwork):
            strategy.shard(self.network)
        elif isinstance(strategy, FSDPStrategy):
            # FSDP1 flattens parameters into 1-D shards: weight decay by shape would be off.
            raise ValueError(
                f"trainer.strategy={type(strategy).__name__} (FSDP1) is not supported: "
                "use trainer=fsdp (FSDP2, attnlab.run.distributed.FullyShardedStrategy)"
            )

    def configure_gradient_clipping(
        self,
        optimizer: Optimizer,
        gradient_clip_val: float | None = None,
        gradient_clip_algorithm: str | None = None,
    ) -> None:
        """Lightning's mixed-precision plugin refuses to clip for a fused optimizer (which
        unscales fp16 gradients inside its step), bf16 included, where no gradient is scaled.
        Without a grad scaler the gradients are true ones: clip them as full precision does."""
        plugin = self.trainer.precision_plugin
        if (
            gradient_clip_val
            and getattr(plugin, "scaler", None) is None
            and getattr(optimizer, "_step_supports_amp_scaling", False)
        ):
            algorithm = GradClipAlgorithmType(gradient_clip_algorithm or "norm")
            Precision.clip_gradients(plugin, optimizer, gradient_clip_val, algorithm)
            return
        self.clip_gradients(optimizer, gradient_clip_val, gradient_clip_algorithm)

    def build_optimizer(self, total_steps: int) -> tuple[Optimizer, LRScheduler | None]:
        """The configured optimiser over parameter groups, and its schedule (or None)."""
        # The configured lr and weight decay are the defaults of the optimiser the config
        # builds (state is allocated at the first step: building one to read them is free).
        # The groups then carry their own: weight decay on matrices only (see
        # parameter_groups), μP's per-group rates, a pretrained body's slower lr.
        trainable = [p for p in self.network.parameters() if p.requires_grad]
        defaults = self.optimizer_factory(trainable).defaults
        lr, weight_decay = defaults["lr"], defaults.get("weight_decay", 0.0)
        body_lr = None
        if self.body_lr_scale != 1.0:  # a pretrained body learns more slowly than new heads
            body_lr = lr * self.body_lr_scale
        # An optimiser that treats hidden matrices apart (optimizer=muon) says so in its defaults.
        apart = defaults.get("hidden_apart", False)
        groups = parameter_groups(
            self.network, weight_decay, body_lr=body_lr, lr=lr, hidden_apart=apart
        )
        optimizer = self.optimizer_factory(groups)
        if self.scheduler_factory is None:
            return optimizer, None
        return optimizer, self.scheduler_factory(optimizer, total_steps=total_steps)

    def configure_optimizers(self) -> dict[str, Any]:
        optimizer, scheduler = self.build_optimizer(int(self.trainer.estimated_stepping_batches))
        if scheduler is None:
            return {"optimizer": optimizer}
        return {
            "optimizer": optimizer,
            # LearningRateMonitor logs it as train/lr/<param group name>.
            "lr_scheduler": {"scheduler": scheduler, "interval": "step", "name": "train/lr"},
        }

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["tokens_seen"] = self.tokens_seen
        # The tokenizer travels with the weights, so fine-tuning reads text the same way.
        tokenizer = getattr(self.trainer.datamodule, "tokenizer", None)
        if tokenizer is not None:
            checkpoint["tokenizer"] = {
                "fingerprint": tokenizer.fingerprint,
                "json": tokenizer.to_json(),
            }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.tokens_seen = checkpoint.get("tokens_seen", 0)
