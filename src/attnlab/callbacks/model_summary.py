"""Lightning's rich model summary without its FLOPs, which it counts only for modules that set
`example_input_array` ("Total FLOPs: 0" otherwise): attnlab's own estimate instead, the
training FLOPs per token that metrics.json reports (`flops_per_token`)."""

from __future__ import annotations

import lightning.pytorch as pl
from lightning.pytorch.utilities.model_summary import summarize
from lightning.pytorch.utilities.model_summary.model_summary import (
    get_formatted_model_size,
    get_human_readable_count,
)


class ModelSummary(pl.callbacks.RichModelSummary):
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self._max_depth or not trainer.is_global_zero:
            return
        print_summary(pl_module, self._max_depth, flops_per_token(pl_module))


def flops_per_token(pl_module: pl.LightningModule) -> str | None:
    """E.g. "1.2 M (at 256 tokens)", where the network estimates its FLOPs: the figure
    metrics.json reports, at the configured sequence length (data.block_size or max_len)."""
    task, network = getattr(pl_module, "task", None), getattr(pl_module, "network", None)
    data = ((getattr(pl_module, "hparams", None) or {}).get("config") or {}).get("data") or {}
    seq_len = data.get("block_size") or data.get("max_len")
    if task is None or network is None or not seq_len:
        return None
    flops = task.flops_per_token(network, seq_len)
    if not flops:
        return None
    return f"{get_human_readable_count(flops).strip()} (at {seq_len} tokens)"


def print_summary(pl_module: pl.LightningModule, max_depth: int, flops: str | None) -> None:
    from rich import get_console
    from rich.table import Table

    summary = summarize(pl_module, max_depth=max_depth)
    columns = [(name, values) for name, values in summary._get_summary_data() if name != "FLOPs"]
    table = Table(header_style="bold magenta")
    for name, _ in columns:
        right = name not in (" ", "Name", "Type", "Mode")
        table.add_column(name, justify="right" if right else "left", no_wrap=name == "Name")
    for row in zip(*(values for _, values in columns), strict=True):
        table.add_row(*row)
    console = get_console()
    console.print(table)
    trainable, total = summary.trainable_parameters, summary.total_parameters
    lines = [
        f"[bold]Trainable params[/]: {get_human_readable_count(trainable)}",
        f"[bold]Non-trainable params[/]: {get_human_readable_count(total - trainable)}",
        f"[bold]Total params[/]: {get_human_readable_count(total)}",
        "[bold]Total estimated model params size (MB)[/]: "
        + get_formatted_model_size(summary.model_size),
        f"[bold]Modules in train mode[/]: {summary.total_training_modes['train']}",
        f"[bold]Modules in eval mode[/]: {summary.total_training_modes['eval']}",
    ]
    if flops:
        lines.append(f"[bold]Training FLOPs per token[/]: {flops}")
    grid = Table.grid(expand=True)
    grid.add_column()
    for line in lines:
        grid.add_row(line)
    console.print(grid)
