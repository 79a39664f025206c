"""`attnlab-coord-check`: μP's coordinate check (Yang et al., 2022, section D.1).

Trains a network for a few steps at several widths, under sp and under μP, and records the
size (mean |x|) of each kind of layer output at every step: the token embedding, attention,
the feed-forward network (MLP) and the logits. Under μP these stay flat as the width grows;
under sp the attention, MLP and logit outputs grow with it after the first updates. Writes
`coord_check.csv` (parametrization, width, step, layer, mean_abs) and `coord_check.png` (one
panel per layer type and parametrization, size against width, one line per step).

    attnlab-coord-check                                   # GPT on the toy LM, widths 32..256
    attnlab-coord-check --widths 64,128,256,512 --steps 6 --lr 0.01 model.n_layers=2
    attnlab-coord-check model=bert data=toy_mlm --out coord_bert

Arguments after the options are Hydra overrides of the training config (as `attnlab-train`
takes them; default `model=gpt data=toy_lm`); `model.d_model`, `model.parametrization` and
`model.mup_base_width` are set per run (the base width is the smallest, or --base-width).
Each run is a plain loop of AdamW steps at a constant lr over the same batches, on the CPU.
"""

from __future__ import annotations

import argparse
import csv
import tempfile
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict
from torch import Tensor, nn

from attnlab.models.attention import MultiHeadAttention
from attnlab.models.embedding import TokenEmbedding
from attnlab.models.feedforward import FeedForward, SwiGLUFeedForward
from attnlab.models.heads import Readout

LAYER_TYPES: dict[str, tuple[type[nn.Module], ...]] = {
    "embedding": (TokenEmbedding,),
    "attention": (MultiHeadAttention,),
    "mlp": (FeedForward, SwiGLUFeedForward),
    "logits": (Readout,),
}
DEFAULT_OVERRIDES = ("model=gpt", "data=toy_lm")


def with_defaults(overrides: Sequence[str]) -> list[str]:
    """`overrides` after DEFAULT_OVERRIDES for the groups (model, data) they do not choose."""
    chosen = {o.split("=", 1)[0].lstrip("+~") for o in overrides}
    return [*(d for d in DEFAULT_OVERRIDES if d.split("=")[0] not in chosen), *overrides]


def compose_train_config(overrides: Sequence[str], run_dir: Path) -> DictConfig:
    """The `attnlab-train` config of `overrides`, its run folder run_dir (which resolving the
    config locks, as a run's; nothing is written there otherwise)."""
    GlobalHydra.instance().clear()
    with initialize_config_module("attnlab.conf", version_base="1.3"):
        cfg = compose("train", overrides=list(overrides), return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(run_dir)
        cfg.hydra.job.num = 0
        cfg.hydra.job.id = "0"
    HydraConfig.instance().set_config(cfg)
    return cfg


@contextmanager
def record_sizes(network: nn.Module) -> Iterator[Callable[[], dict[str, float]]]:
    """While open, the outputs of each layer type are measured; the function it yields
    returns, per type, their mean |x| since its last call (averaged over the modules)."""
    pending: dict[str, list[Tensor]] = defaultdict(list)

    def hook(layer: str) -> Any:
        def record(module: nn.Module, inputs: Any, output: Tensor) -> None:
            pending[layer].append(output.detach().abs().mean())

        return record

    handles = [
        module.register_forward_hook(hook(layer))
        for module in network.modules()
        for layer, types in LAYER_TYPES.items()
        if isinstance(module, types)
    ]

    def collect() -> dict[str, float]:
        # A diagnostic, once per step: host reads are fine here.
        sizes = {layer: float(torch.stack(values).mean()) for layer, values in pending.items()}
        pending.clear()
        return sizes

    try:
        yield collect
    finally:
        for handle in handles:
            handle.remove()


def train_steps(
    cfg: DictConfig,
    steps: int,
    lr: float,
    seed: int = 0,
    batches: list[dict[str, Tensor]] | None = None,
) -> tuple[list[float], dict[str, list[float]], list[dict[str, Tensor]]]:
    """`steps` AdamW steps at a constant lr (μP's per-group multiples included) of the network
    and task of a composed config, from seed `seed`. Returns the loss and the layer sizes of
    each step (before its update), and the batches it used (pass them back to reuse them)."""
    from attnlab import run
    from attnlab.optim import parameter_groups

    datamodule = run.build_datamodule(cfg)
    if batches is None:
        datamodule.prepare_data()
        datamodule.setup("fit")
        torch.manual_seed(seed)
        loader = iter(datamodule.train_dataloader())
        batches = [next(loader) for _ in range(steps)]
    torch.manual_seed(seed)
    module = run.build_module(cfg, datamodule)
    network, task = module.network, module.task
    # The configured weight decay: the defaults of the optimiser the config builds.
    trainable = [p for p in network.parameters() if p.requires_grad]
    weight_decay = module.optimizer_factory(trainable).defaults.get("weight_decay", 0.0)
    groups = parameter_groups(network, weight_decay, lr=lr)
    optimizer = module.optimizer_factory(groups, lr=lr)
    losses, sizes = [], defaultdict(list)
    network.train()
    with record_sizes(network) as collect:
        for batch in batches[:steps]:
            optimizer.zero_grad(set_to_none=True)
            loss = task.step(network, batch, "train")
            for layer, size in collect().items():
                sizes[layer].append(size)
            loss.backward()
            optimizer.step()
            losses.append(float(loss.detach()))
    return losses, dict(sizes), batches


def width_config(
    overrides: Sequence[str], width: int, parametrization: str, base_width: int, run_dir: Path
) -> DictConfig:
    """The training config of `overrides` at d_model=width under `parametrization`."""
    run = [
        *overrides,
        f"model.d_model={width}",
        f"model.parametrization={parametrization}",
        f"model.mup_base_width={base_width}",
    ]
    return compose_train_config(run, run_dir)


def coord_check(
    overrides: Sequence[str] = DEFAULT_OVERRIDES,
    widths: Sequence[int] = (32, 64, 128, 256),
    steps: int = 5,
    lr: float = 1e-2,
    base_width: int | None = None,
    parametrizations: Sequence[str] = ("sp", "mup"),
    seed: int = 0,
) -> list[dict[str, Any]]:
    """The rows of coord_check.csv: one per parametrization, width, step and layer type."""
    base = base_width or min(widths)
    rows: list[dict[str, Any]] = []
    batches = None
    with tempfile.TemporaryDirectory(prefix="attnlab-coord-check-") as run_dir:
        for parametrization in parametrizations:
            for width in widths:
                cfg = width_config(overrides, width, parametrization, base, Path(run_dir))
                _, sizes, batches = train_steps(cfg, steps, lr, seed, batches)
                rows += size_rows(sizes, parametrization, width)
    return rows


def size_rows(sizes: dict[str, list[float]], parametrization: str, width: int) -> list[dict]:
    """CSV rows of one run's layer sizes, one per step and layer type."""
    return [
        dict(parametrization=parametrization, width=width, step=step, layer=layer, mean_abs=v)
        for layer, values in sizes.items()
        for step, v in enumerate(values)
    ]


def write_csv(rows: list[dict[str, Any]], path: Path) -> None:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def plot(rows: list[dict[str, Any]], path: Path, title: str = "") -> None:
    """One panel per (parametrization, layer type): mean |x| against width, a line per step."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    parametrizations = list(dict.fromkeys(r["parametrization"] for r in rows))
    layers = [layer for layer in LAYER_TYPES if any(r["layer"] == layer for r in rows)]
    steps = sorted({r["step"] for r in rows})
    fig, axes = plt.subplots(
        len(parametrizations),
        len(layers),
        figsize=(3.2 * len(layers), 2.8 * len(parametrizations)),
        squeeze=False,
        sharex=True,
        sharey="col",  # sp and μP of a layer type on one scale
    )
    colours = plt.get_cmap("viridis")
    for i, parametrization in enumerate(parametrizations):
        for j, layer in enumerate(layers):
            ax = axes[i][j]
            for step in steps:
                points = sorted(
                    (r["width"], r["mean_abs"])
                    for r in rows
                    if (r["parametrization"], r["layer"], r["step"])
                    == (parametrization, layer, step)
                )
                ax.plot(
                    *zip(*points, strict=True),
                    marker="o",
                    color=colours(step / max(1, len(steps) - 1)),
                    label=f"step {step}",
                )
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.set_title(f"{parametrization}: {layer}")
            if i == len(parametrizations) - 1:
                ax.set_xlabel("width (d_model)")
            if j == 0:
                ax.set_ylabel("mean |x|")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(steps), fontsize="small")
    if title:
        fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.06, 1, 1))  # room for the legend below the panels
    fig.savefig(path, dpi=120)
    plt.close(fig)


def growth(rows: list[dict[str, Any]], parametrization: str, layer: str, step: int) -> float:
    """Size at the largest width over size at the smallest, at `step`."""
    points = sorted(
        (r["width"], r["mean_abs"])
        for r in rows
        if (r["parametrization"], r["layer"], r["step"]) == (parametrization, layer, step)
    )
    return points[-1][1] / points[0][1]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="attnlab-coord-check",
        description="μP coordinate check: layer output sizes against width under sp and mup.",
    )
    parser.add_argument(
        "--widths", default="32,64,128,256", help="d_model values (default %(default)s)"
    )
    parser.add_argument("--steps", type=int, default=5, help="training steps (default %(default)s)")
    parser.add_argument("--lr", type=float, default=1e-2, help="AdamW lr (default %(default)s)")
    parser.add_argument(
        "--base-width", type=int, default=None, help="mup_base_width (default: smallest width)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("coord_check"), help="output folder")
    parser.add_argument(
        "overrides", nargs="*", help="Hydra overrides (default: model=gpt data=toy_lm)"
    )
    args = parser.parse_args(argv)
    try:
        widths = [int(w) for w in args.widths.split(",")]
    except ValueError:
        parser.error(f"--widths={args.widths!r} is not valid: give integers separated by commas")
    if len(widths) < 2 or any(w < 1 for w in widths):
        parser.error(f"--widths={args.widths!r} is not valid: give two or more positive widths")
    overrides = with_defaults(args.overrides)
    args.out.mkdir(parents=True, exist_ok=True)
    rows = coord_check(overrides, widths, args.steps, args.lr, args.base_width, seed=args.seed)
    write_csv(rows, args.out / "coord_check.csv")
    title = f"{' '.join(args.overrides) or 'model=gpt data=toy_lm'}, AdamW lr={args.lr:g}"
    plot(rows, args.out / "coord_check.png", title)
    last = args.steps - 1
    print(f"size at width {max(widths)} / size at width {min(widths)}, step {last}:")
    for layer in LAYER_TYPES:
        if any(r["layer"] == layer for r in rows):
            sp, mup = growth(rows, "sp", layer, last), growth(rows, "mup", layer, last)
            print(f"  {layer:<10} sp {sp:6.2f}   mup {mup:6.2f}")
    print(f"wrote {args.out / 'coord_check.csv'} and {args.out / 'coord_check.png'}")


if __name__ == "__main__":
    main()
