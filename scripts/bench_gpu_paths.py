"""The training paths that scripts/bench_gpu.py times, each run in a fresh process by it.

  a  attnlab-train's path: the config composed with overrides, attnlab.run.train.train (the
     Trainer, callbacks and LightningModule that `attnlab-train` builds);
  b  a hand-written loop on the same attnlab network, optimiser and schedule (task.step);
  c  a nanoGPT-equivalent loop: the GPT of nanoGPT's model.py, written below (fused c_attn,
     SDPA is_causal, GELU MLP, tied head, fused AdamW, loss inside the compiled forward).

Also the extras (generation tokens/s, SDPA backends) and the time-to-loss runs (`to_loss`).
"""

from __future__ import annotations

import importlib.util
import itertools
import math
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
PATHS = {
    "a": "attnlab Trainer",
    "b": "hand loop, attnlab network",
    "c": "nanoGPT loop",
    "d": "attnlab Trainer, tuned",  # path a with the --tuned-* options (bench_gpu.py)
}

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
    batch_size: int = 32
    warmup: int = 10
    window_steps: int = 20  # steps per timed window
    windows: int = 10  # timed windows, after warm-up
    compile: bool = True
    compile_mode: str = "default"
    loss_impl: str = "dense"  # task.loss_impl of paths a and b
    optimizer: str = "adamw"  # paths a and b: adamw | muon
    fp8: bool = False  # paths a and b: fp8=true (torchao float8, H100-class GPUs)
    muon_lr: float = 0.02
    data: str = "toy_lm"  # toy_lm (synthetic tokens) | shakespeare_char (time to loss)
    device: str = "cuda"
    lr: float = 6e-4
    betas: tuple[float, float] = (0.9, 0.95)
    min_lr: float | None = None  # None: lr / 10
    max_steps: int | None = None  # the schedule's length (None: the timed run's)
    gen_batch: int = 8
    gen_prompt: int = 32
    gen_new: int = 128

    @property
    def bf16(self) -> bool:
        return self.device == "cuda"

    def __post_init__(self) -> None:
        self.betas = tuple(self.betas)  # a list from JSON

    @property
    def window(self) -> int:
        return self.window_steps

    @property
    def marks(self) -> list[int]:
        """Steps (counted from 1) at whose end the clock is read."""
        return [self.warmup + k * self.window for k in range(self.windows + 1)]

    @property
    def total_steps(self) -> int:
        return self.max_steps or self.marks[-1]


SMOKE = {
    "n_layers": 2,
    "n_heads": 4,
    "d_model": 64,
    "block_size": 64,
    "vocab_size": 256,
    "batch_size": 4,
    "warmup": 1,
    "window_steps": 2,
    "windows": 3,
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

    def done(self) -> bool:
        return len(self.times) == len(self.setup.marks)


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
    data = [
        f"data={s.data}",
        f"data.block_size={s.block_size}",
        f"data.batch_size={s.batch_size}",
        f"data.train_samples_per_epoch={s.batch_size * (s.total_steps + 1)}",
        f"++data.pin_memory={str(s.device == 'cuda').lower()}",
    ]
    if s.data == "toy_lm":
        data += [
            f"data.vocab_size={s.vocab_size}",
            f"data.num_train_tokens={max(200_000, 4 * s.block_size)}",
            f"data.num_val_tokens={2 * s.block_size + 1}",
            f"data.num_test_tokens={2 * s.block_size + 1}",
        ]
    overrides = [
        *data,
        "model=gpt",
        "scheduler=cosine",
        f"optimizer={s.optimizer}",
        f"trainer={'gpu' if s.device == 'cuda' else 'cpu'}",
        f"trainer.precision={'bf16-mixed' if s.bf16 else '32-true'}",
        f"model.n_layers={s.n_layers}",
        f"model.n_heads={s.n_heads}",
        f"model.d_model={s.d_model}",
        "model.dropout=0.0",
        "model.bias=false",
        f"task.loss_impl={s.loss_impl}",
        f"optimizer.lr={s.lr}",
        f"optimizer.betas=[{s.betas[0]},{s.betas[1]}]",
        "optimizer.eps=1e-8",
        "optimizer.weight_decay=0.1",
        f"scheduler.warmup_steps={s.warmup}",
        f"scheduler.min_lr={s.min_lr if s.min_lr is not None else s.lr / 10}",
        f"trainer.max_steps={s.total_steps}",
        "trainer.max_epochs=-1",
        "trainer.limit_val_batches=0",
        "++trainer.num_sanity_val_steps=0",
        "trainer.gradient_clip_val=1.0",
        "++trainer.enable_checkpointing=false",
        "~callbacks.model_checkpoint",  # no validation: nothing to rank
        f"compile={str(s.compile).lower()}",
        f"compile_mode={s.compile_mode}",
        f"fp8={str(s.fp8).lower()}",
        "test=false",
        "print_config=false",
        "seed=0",
    ]
    if s.optimizer == "muon":
        overrides.append(f"optimizer.muon_lr={s.muon_lr}")
    elif s.device == "cuda":
        overrides.append("++optimizer.fused=true")
    if importlib.util.find_spec("rich") is None:  # the default progress bar needs rich
        overrides.append("~callbacks.rich_progress_bar")
    return overrides


def compose_run(setup: Setup, out_dir: Path, extra: list[str] | None = None) -> Any:
    """The run config `attnlab-train <overrides>` would get, with out_dir as its folder."""
    return compose_overrides([*attnlab_overrides(setup), *(extra or [])], out_dir)


def compose_overrides(overrides: list[str], out_dir: Path) -> Any:
    """The train config of these overrides as a Hydra job in `out_dir` sees it (HydraConfig set:
    the run names its choices); bench_overhead.py uses it too."""
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    use_repo_config_package()
    GlobalHydra.instance().clear()
    with initialize_config_module("attnlab.conf", version_base="1.3"):
        cfg = compose("train", overrides=overrides, return_hydra_config=True)
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
        "matmul_params": _matmul_params(result["flops_per_token"], setup),
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
    per_token = task.flops_per_token(network, setup.block_size)
    return {
        "windows": clock.tokens_per_s(),
        "flops_per_token": per_token,
        "params": sum(p.numel() for p in network.parameters()),
        "matmul_params": _matmul_params(per_token, setup),
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
        self.betas = s.betas
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
        return torch.optim.AdamW(groups, lr=lr, betas=self.betas, eps=1e-8, fused=fused)


def nanogpt_step(
    step: int,
    model: nn.Module,
    step_model: Any,
    optimizer: torch.optim.Optimizer,
    batch: dict[str, torch.Tensor],
    setup: Setup,
) -> None:
    """One step of nanoGPT's train.py loop: cosine LR, forward under autocast, clip, update."""
    for group in optimizer.param_groups:
        group["lr"] = cosine_lr(step - 1, setup)
    with autocast(setup):
        loss = step_model(batch["input_ids"], batch["labels"])
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def cosine_lr(step: int, s: Setup) -> float:
    """nanoGPT's get_lr: linear warm-up, cosine to min_lr (lr / 10)."""
    low = s.min_lr if s.min_lr is not None else s.lr / 10
    if step < s.warmup:
        return s.lr * (step + 1) / (s.warmup + 1)
    ratio = (step - s.warmup) / max(1, s.total_steps - s.warmup)
    return low + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (s.lr - low)


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
        nanogpt_step(step, model, step_model, optimizer, next(data), setup)
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
        "matmul_params": matmul_params,
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


def _matmul_params(flops_per_token: int, s: Setup) -> int:
    """N of 6 N + 12 L d T, back from attnlab's FLOPs per token."""
    return (flops_per_token - 12 * s.n_layers * s.d_model * s.block_size) // 6


def hardware_flops_per_token(matmul_params: int, s: Setup) -> int:
    """The FLOPs a causal step executes: causal attention computes about half the scores and
    weighted sums of full attention ((T + 1) / 2 keys per query on average; fused kernels skip
    the masked blocks), where nanoGPT's MFU counts all T."""
    return 6 * matmul_params + 12 * s.n_layers * s.d_model * (s.block_size + 1) // 2


RUNNERS: dict[str, Callable[[Setup, Path], dict[str, Any]]] = {
    "a": run_attnlab_trainer,
    "b": run_hand_loop,
    "c": run_nanogpt_loop,
    "d": run_attnlab_trainer,  # with its own Setup: bench_gpu.py's --tuned-* options
}
