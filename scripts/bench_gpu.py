"""GPU throughput and MFU of a 124M GPT: attnlab's Trainer vs a hand loop vs nanoGPT's loop.

Three training loops on the same shapes (12 layers, d_model 768, 12 heads, T 1024, vocabulary
50304, no dropout, no biases), bf16 autocast, torch.compile, fused AdamW, gradient clipping 1.0,
the same random windows of a synthetic corpus (attnlab's toy_lm data):

  a  attnlab-train's path: the config composed with overrides, attnlab.run.train.train (the
     Trainer, callbacks and LightningModule that `attnlab-train` builds);
  b  a hand-written loop on the same attnlab network, optimiser and schedule (task.step);
  c  a nanoGPT-equivalent loop: the GPT of nanoGPT's model.py, written below (fused c_attn,
     SDPA is_causal, GELU MLP, tied head, fused AdamW, loss inside the compiled forward).

Tokens/s are the median of --windows timed windows after --warmup steps (compilation happens
there), with torch.cuda.synchronize at each window's ends. MFU = flops_per_token(T) x tokens/s /
peak, with attnlab's estimate (6 N + 12 L d T) for both networks. Also: cached vs uncached
generation tokens/s of the attnlab network, and which SDPA backend runs (flash or not).

    PYTHONPATH=src python3 scripts/bench_gpu.py                  # ~3-4 min on an H100
    python scripts/bench_gpu.py --batch-size 32 --json gpu.json
    python scripts/bench_gpu.py --smoke                          # CPU, tiny sizes, seconds
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import itertools
import json
import math
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
PATHS = {"a": "attnlab Trainer", "b": "hand loop, attnlab network", "c": "nanoGPT loop"}

# Dense bf16 peak FLOP/s by device name (the first key found in the name wins).
PEAK_BF16_FLOPS = (
    ("H100 SXM", 989e12),
    ("H100 80GB HBM3", 989e12),
    ("H200", 989e12),
    ("A100", 312e12),
)


@dataclass
class Setup:
    n_layers: int = 12
    n_heads: int = 12
    d_model: int = 768
    block_size: int = 1024
    vocab_size: int = 50304
    batch_size: int = 16
    warmup: int = 10
    steps: int = 40  # timed steps, after warm-up
    windows: int = 4
    compile: bool = True
    device: str = "cuda"
    lr: float = 6e-4
    gen_batch: int = 8
    gen_prompt: int = 32
    gen_new: int = 128

    @property
    def bf16(self) -> bool:
        return self.device == "cuda"

    @property
    def window(self) -> int:
        return max(1, self.steps // self.windows)

    @property
    def marks(self) -> list[int]:
        """Steps (counted from 1) at whose end the clock is read."""
        return [self.warmup + k * self.window for k in range(self.windows + 1)]

    @property
    def total_steps(self) -> int:
        return self.marks[-1]


SMOKE = {
    "n_layers": 2,
    "n_heads": 4,
    "d_model": 64,
    "block_size": 64,
    "vocab_size": 256,
    "batch_size": 4,
    "warmup": 1,
    "steps": 4,
    "windows": 2,
    "compile": False,
    "device": "cpu",
    "gen_batch": 2,
    "gen_prompt": 8,
    "gen_new": 8,
}


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


class Clock:
    """Wall time at the end of the marked steps (synchronised), and tokens/s per window."""

    def __init__(self, setup: Setup) -> None:
        self.setup = setup
        self.times: dict[int, float] = {}

    def tick(self, step: int) -> None:
        if step in self.setup.marks:
            sync(self.setup.device)
            self.times[step] = time.perf_counter()

    def tokens_per_s(self) -> list[float]:
        s = self.setup
        tokens = s.window * s.batch_size * s.block_size
        ends = [self.times[m] for m in s.marks]
        return [tokens / (b - a) for a, b in itertools.pairwise(ends)]


def autocast(setup: Setup) -> torch.autocast:
    return torch.autocast(setup.device, dtype=torch.bfloat16, enabled=setup.bf16)


# ---------------------------------------------------------------- attnlab: config and paths a, b


def use_repo_config_package() -> None:
    """`attnlab.conf` is conf/ at the repository root, mapped into the package by pip; with
    PYTHONPATH=src only (no install) map it here, so that Hydra finds pkg://attnlab.conf."""
    if importlib.util.find_spec("attnlab.conf") is not None:
        return
    spec = importlib.util.spec_from_file_location(
        "attnlab.conf",
        ROOT / "conf" / "__init__.py",
        submodule_search_locations=[str(ROOT / "conf")],
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules["attnlab.conf"] = module
    spec.loader.exec_module(module)


def attnlab_overrides(setup: Setup) -> list[str]:
    s = setup
    overrides = [
        "data=toy_lm",
        "model=gpt",
        "scheduler=cosine",
        f"trainer={'gpu' if s.device == 'cuda' else 'cpu'}",
        f"trainer.precision={'bf16-mixed' if s.bf16 else '32-true'}",
        f"data.vocab_size={s.vocab_size}",
        f"data.block_size={s.block_size}",
        f"data.batch_size={s.batch_size}",
        f"data.num_train_tokens={max(200_000, 4 * s.block_size)}",
        f"data.num_val_tokens={2 * s.block_size + 1}",
        f"data.num_test_tokens={2 * s.block_size + 1}",
        f"data.train_samples_per_epoch={s.batch_size * (s.total_steps + 1)}",
        f"++data.pin_memory={str(s.device == 'cuda').lower()}",
        f"model.n_layers={s.n_layers}",
        f"model.n_heads={s.n_heads}",
        f"model.d_model={s.d_model}",
        "model.dropout=0.0",
        "model.bias=false",
        f"optimizer.lr={s.lr}",
        "optimizer.betas=[0.9,0.95]",
        "optimizer.eps=1e-8",
        "optimizer.weight_decay=0.1",
        f"scheduler.warmup_steps={s.warmup}",
        f"scheduler.min_lr={s.lr / 10}",
        f"trainer.max_steps={s.total_steps}",
        "trainer.max_epochs=-1",
        "trainer.limit_val_batches=0",
        "++trainer.num_sanity_val_steps=0",
        "trainer.gradient_clip_val=1.0",
        "++trainer.enable_checkpointing=false",
        "~callbacks.model_checkpoint",  # no validation: nothing to rank
        f"compile={str(s.compile).lower()}",
        "test=false",
        "print_config=false",
        "seed=0",
    ]
    if s.device == "cuda":
        overrides.append("++optimizer.fused=true")
    if importlib.util.find_spec("rich") is None:  # the default progress bar needs rich
        overrides.append("~callbacks.rich_progress_bar")
    return overrides


def compose_run(setup: Setup, out_dir: Path) -> Any:
    """The run config `attnlab-train <overrides>` would get, with out_dir as its folder."""
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    use_repo_config_package()
    GlobalHydra.instance().clear()
    with initialize_config_module("attnlab.conf", version_base="1.3"):
        cfg = compose("train", overrides=attnlab_overrides(setup), return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(out_dir)
        cfg.hydra.job.num = 0
    HydraConfig.instance().set_config(cfg)
    return cfg


def run_attnlab_trainer(setup: Setup, out_dir: Path) -> dict[str, Any]:
    """Path a: attnlab.run.train.train, what `attnlab-train` runs, with a timing callback."""
    import lightning.pytorch as pl

    from attnlab.run.train import train

    clock = Clock(setup)

    class StepClock(pl.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            clock.tick(trainer.global_step)

    cfg = compose_run(setup, out_dir)
    result = train(cfg, extra_callbacks=[StepClock()])
    return {
        "windows": clock.tokens_per_s(),
        "flops_per_token": result["flops_per_token"],
        "params": result["parameters"]["total"],
    }


def build_attnlab(setup: Setup, out_dir: Path, compile: bool) -> tuple[Any, Any]:
    """The datamodule and module that path a trains, built by attnlab's build functions."""
    import lightning.pytorch as pl
    from omegaconf import open_dict

    from attnlab import run as build

    cfg = compose_run(setup, out_dir)
    with open_dict(cfg):
        cfg.compile = compile
    pl.seed_everything(cfg.seed)
    datamodule = build.build_datamodule(cfg)
    module = build.build_module(cfg, datamodule)
    datamodule.setup("fit")
    return datamodule, module


def batches(loader: Any, device: str) -> Iterator[dict[str, torch.Tensor]]:
    """Training batches on the device, epoch after epoch."""
    while True:
        for batch in loader:
            yield {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def run_hand_loop(setup: Setup, out_dir: Path) -> dict[str, Any]:
    """Path b: the loop a researcher writes by hand around the same network and task step."""
    datamodule, module = build_attnlab(setup, out_dir, setup.compile)
    module.to(setup.device)
    network, task = module.network, module.task
    network.train()
    optimizer, scheduler = module.build_optimizer(total_steps=setup.total_steps)
    clock = Clock(setup)
    data = batches(datamodule.train_dataloader(), setup.device)
    for step in range(1, setup.total_steps + 1):
        batch = next(data)
        with autocast(setup):
            loss = task.step(network, batch, "train")
        loss.backward()
        torch.nn.utils.clip_grad_norm_(network.parameters(), 1.0)
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        clock.tick(step)
    return {
        "windows": clock.tokens_per_s(),
        "flops_per_token": task.flops_per_token(network, setup.block_size),
        "params": sum(p.numel() for p in network.parameters()),
    }


# ---------------------------------------------------------------- path c: nanoGPT's model.py


class CausalSelfAttention(nn.Module):
    def __init__(self, d: int, n_heads: int) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.c_attn = nn.Linear(d, 3 * d, bias=False)  # q, k, v in one matmul
        self.c_proj = nn.Linear(d, d, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.size()
        q, k, v = self.c_attn(x).split(C, dim=2)
        # (B, nh, T, hs)
        q, k, v = (t.view(B, T, self.n_heads, C // self.n_heads).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.c_proj(y.transpose(1, 2).contiguous().view(B, T, C))


class MLP(nn.Module):
    def __init__(self, d: int) -> None:
        super().__init__()
        self.c_fc = nn.Linear(d, 4 * d, bias=False)
        self.gelu = nn.GELU()
        self.c_proj = nn.Linear(4 * d, d, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c_proj(self.gelu(self.c_fc(x)))


class Block(nn.Module):
    def __init__(self, d: int, n_heads: int) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(d, bias=False)
        self.attn = CausalSelfAttention(d, n_heads)
        self.ln_2 = nn.LayerNorm(d, bias=False)
        self.mlp = MLP(d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class NanoGPT(nn.Module):
    """nanoGPT's GPT (bias=False, dropout 0): the loss is computed inside forward."""

    def __init__(self, s: Setup) -> None:
        super().__init__()
        self.transformer = nn.ModuleDict(
            {
                "wte": nn.Embedding(s.vocab_size, s.d_model),
                "wpe": nn.Embedding(s.block_size, s.d_model),
                "h": nn.ModuleList(Block(s.d_model, s.n_heads) for _ in range(s.n_layers)),
                "ln_f": nn.LayerNorm(s.d_model, bias=False),
            }
        )
        self.lm_head = nn.Linear(s.d_model, s.vocab_size, bias=False)
        self.transformer.wte.weight = self.lm_head.weight  # tied
        self.apply(self._init_weights)
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * s.n_layers))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear | nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        T = idx.size(1)
        pos = torch.arange(T, device=idx.device)
        x = self.transformer.wte(idx) + self.transformer.wpe(pos)  # (B, T, C)
        for block in self.transformer.h:
            x = block(x)
        logits = self.lm_head(self.transformer.ln_f(x))  # (B, T, V)
        return F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1), ignore_index=-1)

    def configure_optimizers(
        self, weight_decay: float, lr: float, fused: bool
    ) -> torch.optim.AdamW:
        params = [p for p in self.parameters() if p.requires_grad]
        groups = [
            {"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
            {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
        ]
        return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.95), eps=1e-8, fused=fused)


def cosine_lr(step: int, s: Setup) -> float:
    """nanoGPT's get_lr: linear warm-up, cosine to lr / 10."""
    if step < s.warmup:
        return s.lr * (step + 1) / (s.warmup + 1)
    ratio = (step - s.warmup) / max(1, s.total_steps - s.warmup)
    return s.lr / 10 + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (s.lr - s.lr / 10)


def run_nanogpt_loop(setup: Setup, out_dir: Path) -> dict[str, Any]:
    """Path c: nanoGPT's train.py loop (without gradient accumulation) on the same batches."""
    from attnlab.models.parameters import training_flops

    datamodule, _ = build_attnlab(setup, out_dir, compile=False)  # the data only
    torch.manual_seed(0)
    model = NanoGPT(setup).to(setup.device)
    optimizer = model.configure_optimizers(0.1, setup.lr, fused=setup.device == "cuda")
    step_model = torch.compile(model) if setup.compile else model
    clock = Clock(setup)
    data = batches(datamodule.train_dataloader(), setup.device)
    for step in range(1, setup.total_steps + 1):
        for group in optimizer.param_groups:
            group["lr"] = cosine_lr(step - 1, setup)
        batch = next(data)
        with autocast(setup):
            loss = step_model(batch["input_ids"], batch["labels"])
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        clock.tick(step)
    # attnlab's estimate: N = the matmul weights (all but the position table; the tied head once)
    params = sum(p.numel() for p in model.parameters())
    matmul_params = params - model.transformer.wpe.weight.numel()
    return {
        "windows": clock.tokens_per_s(),
        "flops_per_token": training_flops(
            matmul_params, setup.n_layers, setup.d_model, setup.block_size
        ),
        "params": params,
    }


# ---------------------------------------------------------------- generation, flash, peak


def generation(setup: Setup, out_dir: Path) -> dict[str, Any]:
    """Cached vs uncached generation tokens/s of the (uncompiled) attnlab network."""
    _, module = build_attnlab(setup, out_dir, compile=False)
    network = module.network.to(setup.device).eval()
    gen = torch.Generator(device=setup.device).manual_seed(0)
    prompt = torch.randint(
        setup.vocab_size, (setup.gen_batch, setup.gen_prompt), device=setup.device, generator=gen
    )
    out: dict[str, Any] = {"batch": setup.gen_batch, "prompt": setup.gen_prompt}
    for name, use_cache in (("cached", True), ("uncached", False)):
        with autocast(setup):
            network.generate(prompt, 4, use_cache=use_cache, generator=gen)  # warm-up
            sync(setup.device)
            start = time.perf_counter()
            ids = network.generate(prompt, setup.gen_new, use_cache=use_cache, generator=gen)
            sync(setup.device)
        new = ids.size(1) - setup.gen_prompt
        out[f"{name}_tokens_per_s"] = setup.gen_batch * new / (time.perf_counter() - start)
    out["new_tokens"] = setup.gen_new
    out["speedup"] = out["cached_tokens_per_s"] / out["uncached_tokens_per_s"]
    return out


SDPA_OPS = {
    "flash": ("_scaled_dot_product_flash_attention",),
    "cudnn": ("_scaled_dot_product_cudnn_attention",),
    "efficient": ("_scaled_dot_product_efficient_attention",),
    "math": ("_scaled_dot_product_attention_math",),
}


def sdpa_backends(step: Callable[[], None]) -> list[str]:
    """The SDPA backends whose aten ops a forward + backward runs (torch.profiler)."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU]
    if torch.cuda.is_available():
        activities.append(ProfilerActivity.CUDA)
    with profile(activities=activities) as prof:
        step()
    names = {event.key for event in prof.key_averages()}
    return sorted(b for b, ops in SDPA_OPS.items() if any(op in n for n in names for op in ops))


def flash_check(setup: Setup, out_dir: Path) -> dict[str, Any]:
    """Which SDPA backend each network runs by default, and whether a flash-only forward and
    backward works (it fails when a mask or dtype rules flash out)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    _, module = build_attnlab(setup, out_dir, compile=False)
    torch.manual_seed(0)
    networks = {"attnlab": module.network, "nanogpt": NanoGPT(setup)}
    idx = torch.randint(setup.vocab_size, (2, setup.block_size), device=setup.device)
    out: dict[str, Any] = {}
    for name, network in networks.items():
        network.to(setup.device).train()

        def step(network: nn.Module = network) -> None:
            with autocast(setup):
                if isinstance(network, NanoGPT):
                    loss = network(idx, idx)
                else:
                    loss = network(idx).float().logsumexp(-1).mean()
            loss.backward()
            sync(setup.device)

        out[f"{name}_backends"] = sdpa_backends(step)
        try:
            with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
                step()
            out[f"{name}_flash_only"] = "ok"
        except RuntimeError as error:
            out[f"{name}_flash_only"] = "fails: " + str(error).strip().splitlines()[0][:200]
        network.cpu()
    return out


def peak_flops(device: str) -> tuple[float | None, str]:
    """Dense bf16 peak FLOP/s of the device, and the device's name."""
    if device != "cuda":
        return None, "cpu"
    name = torch.cuda.get_device_name()
    for key, value in PEAK_BF16_FLOPS:
        if key in name:
            return value, name
    try:
        from lightning.fabric.utilities.throughput import get_available_flops

        value = get_available_flops(torch.device("cuda"), torch.bfloat16)
    except Exception:  # an old Lightning or an unknown device
        value = None
    return (float(value) if value else None), name


# ---------------------------------------------------------------- report


def fmt(value: float | None, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def report(results: dict[str, Any]) -> str:
    lines = [
        f"device: {results['device']}, torch {results['torch']}, "
        f"peak {fmt(results['peak_flops'], '.3g')} FLOP/s (bf16 dense)",
        "| path | tokens/s (median) | MFU | windows (tokens/s) | params | FLOPs/token |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for key, row in results["paths"].items():
        windows = ", ".join(f"{w:,.0f}" for w in row["windows"])
        lines.append(
            f"| {key}: {PATHS[key]} | {row['tokens_per_s']:,.0f} | {fmt(row['mfu'], '.1%')} | "
            f"{windows} | {row['params']:,} | {row['flops_per_token']:,} |"
        )
    for name, value in results["ratios"].items():
        lines.append(f"| ratio {name} | {value:.3f} | | | | |")
    gen = results.get("generation")
    if gen:
        lines.append(
            f"generation (batch {gen['batch']}, prompt {gen['prompt']}, {gen['new_tokens']} new): "
            f"cached {gen['cached_tokens_per_s']:,.0f} tokens/s, uncached "
            f"{gen['uncached_tokens_per_s']:,.0f} tokens/s ({gen['speedup']:.1f}x)"
        )
    flash = results.get("flash")
    if flash:
        for name in ("attnlab", "nanogpt"):
            lines.append(
                f"SDPA {name}: backends {flash[f'{name}_backends'] or 'none seen'}, "
                f"flash only: {flash[f'{name}_flash_only']}"
            )
    lines.append(f"wall time {results['wall_s']:.0f} s")
    return "\n".join(lines)


RUNNERS = {"a": run_attnlab_trainer, "b": run_hand_loop, "c": run_nanogpt_loop}


def run(setup: Setup, only: str, peak: float | None, extras: bool) -> dict[str, Any]:
    start = time.perf_counter()
    if setup.device == "cuda":
        torch.set_float32_matmul_precision("high")  # TF32 for what autocast leaves in fp32
    device_peak, device_name = peak_flops(setup.device)
    peak = peak or device_peak
    results: dict[str, Any] = {
        "device": device_name,
        "torch": torch.__version__,
        "setup": asdict(setup),
        "peak_flops": peak,
        "paths": {},
        "ratios": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        for key in only:
            row = RUNNERS[key](setup, Path(tmp) / key)
            row["tokens_per_s"] = statistics.median(row["windows"])
            row["mfu"] = row["flops_per_token"] * row["tokens_per_s"] / peak if peak else None
            results["paths"][key] = row
            print(f"{key} ({PATHS[key]}): {row['tokens_per_s']:,.0f} tokens/s", flush=True)
            gc.collect()
            if setup.device == "cuda":
                torch.cuda.empty_cache()
            torch._dynamo.reset()  # each path compiles from scratch
        paths = results["paths"]
        for other in ("b", "c"):
            if "a" in paths and other in paths:
                ratio = paths["a"]["tokens_per_s"] / paths[other]["tokens_per_s"]
                results["ratios"][f"a/{other}"] = ratio
        if extras:
            results["generation"] = generation(setup, Path(tmp) / "gen")
            results["flash"] = flash_check(setup, Path(tmp) / "flash")
    results["wall_s"] = time.perf_counter() - start
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, help="timed steps per path (default 40)")
    parser.add_argument("--warmup", type=int, help="untimed steps first (default 10)")
    parser.add_argument("--windows", type=int, help="timed windows; the median is reported")
    parser.add_argument("--batch-size", type=int, help="sequences per step (default 16)")
    parser.add_argument("--no-compile", action="store_true", help="eager, for all paths")
    parser.add_argument("--only", default="a,b,c", help="paths to run, e.g. a,c")
    parser.add_argument("--no-extras", action="store_true", help="skip generation and SDPA check")
    parser.add_argument("--peak-flops", type=float, help="override the device's peak FLOP/s")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--smoke", action="store_true", help="CPU, tiny sizes, fp32, no compile")
    args = parser.parse_args(argv)

    only = [key.strip() for key in args.only.split(",") if key.strip()]
    if not only or set(only) - set(RUNNERS):
        parser.error(f"--only={args.only!r}: choose from a, b, c (comma-separated)")
    setup = Setup(**SMOKE) if args.smoke else Setup()
    if args.smoke:  # tiny matmuls: more threads only contend (CI machines are small)
        torch.set_num_threads(1)
    if not args.smoke and not torch.cuda.is_available():
        parser.error("no CUDA device: run with --smoke for the CPU check")
    for field in ("steps", "warmup", "windows", "batch_size"):
        if getattr(args, field) is not None:
            setattr(setup, field, getattr(args, field))
    if args.no_compile:
        setup.compile = False

    results = run(setup, "".join(only), args.peak_flops, extras=not args.no_extras)
    print()
    print(report(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
